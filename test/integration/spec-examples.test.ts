import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OperationOutcome, Resource } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KNOWN_INVALID_SPEC_EXAMPLES } from '../../src/fhir/validation/known-invalid-examples.js';
import { SHARED_DATA, startTestApp, type TestApp } from '../support/test-app.js';
import { withoutServerFlags } from './vital-signs-helpers.js';

const EXAMPLES = join(SHARED_DATA, 'fhir-examples');
const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

function withoutMetaAndId(resource: Resource): Record<string, unknown> {
  const { meta: _meta, id: _id, ...rest } = resource as Resource & Record<string, unknown>;
  if (resource.resourceType === 'Subscription') {
    // The server owns a Subscription's status and error (R4 3.3.1): both examples end in 2021, so
    // they are stored 'off' whatever the client sent. Every other element must read back equal.
    const { status: _status, error: _error, ...clientOwned } = rest;
    return clientOwned;
  }
  return rest;
}

describe('official R4 examples (hl7.fhir.r4.examples 4.0.1)', () => {
  it('has the examples on disk', () => {
    expect(files.length).toBeGreaterThan(600);
  });

  it('every valid example is accepted by create, reads back equal, and passes $validate', async () => {
    const failures: string[] = [];
    let accepted = 0;
    let serverOnly = 0;
    for (const file of files) {
      const example = JSON.parse(readFileSync(join(EXAMPLES, file), 'utf8')) as Resource;
      const knownInvalid = KNOWN_INVALID_SPEC_EXAMPLES[file];
      const created = await t.request({ method: 'POST', url: `/fhir/${example.resourceType}`, payload: example });
      if (example.resourceType === 'AuditEvent') {
        // The audit trail is written by the server only: refused to every client, yet valid.
        serverOnly++;
        if (created.statusCode !== 403) failures.push(`${file}: AuditEvent create gave ${created.statusCode}, not 403`);
        const checked = await t.request({ method: 'POST', url: '/fhir/AuditEvent/$validate', payload: example });
        if (!knownInvalid && (checked.json() as OperationOutcome).issue.some((i) => i.severity === 'error' || i.severity === 'fatal')) failures.push(`${file}: $validate found errors`);
        continue;
      }
      if (knownInvalid) {
        if (created.statusCode !== 422) failures.push(`${file}: listed as invalid (${knownInvalid}) but create gave ${created.statusCode}`);
        continue;
      }
      if (created.statusCode !== 201) {
        failures.push(`${file}: create ${created.statusCode} ${created.body.slice(0, 300)}`);
        continue;
      }
      accepted++;
      const id = (created.json() as Resource).id;
      // FHIR JSON asked for: a Binary read without it answers its content (binary-content.test.ts).
      const read = await t.request({ method: 'GET', url: `/fhir/${example.resourceType}/${id}`, headers: { accept: 'application/fhir+json' } });
      if (read.statusCode !== 200) {
        failures.push(`${file}: read ${read.statusCode}`);
        continue;
      }
      const stored = withoutServerFlags(read.json() as Resource, example);
      try {
        expect(withoutMetaAndId(stored)).toEqual(withoutMetaAndId(example));
      } catch {
        failures.push(`${file}: read back differs from the example`);
      }
      const validate = await t.request({ method: 'POST', url: `/fhir/${example.resourceType}/$validate`, payload: example });
      const errors = (validate.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal');
      if (validate.statusCode !== 200 || errors.length > 0) {
        failures.push(`${file}: $validate ${validate.statusCode} ${JSON.stringify(errors).slice(0, 300)}`);
      }
    }
    expect(failures).toEqual([]);
    expect(serverOnly).toBeGreaterThan(0);
    expect(accepted).toBe(files.length - serverOnly - Object.keys(KNOWN_INVALID_SPEC_EXAMPLES).filter((f) => files.includes(f) && !f.startsWith('AuditEvent-')).length);
  }, 600_000);
});
