import { copyFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { OperationOutcome, Parameters, ParametersParameter } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countByType } from '../../src/storage/import-checks.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { BATCH_FILES, importFixture, ndjsonLines, PATIENT_FILES, SYNTHEA } from './import-helpers.js';

const fixture = importFixture(PATIENT_FILES.slice(3, 4));
for (const f of BATCH_FILES) copyFileSync(join(SYNTHEA, f), join(fixture.dir, f));
symlinkSync('/etc', join(fixture.dir, 'escape'));

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ FHIR_IMPORT_DIR: fixture.dir });
});
afterAll(async () => {
  await t?.close();
  rmSync(fixture.dir, { recursive: true, force: true });
});

const input = (part: { name: string; valueUrl?: string; valueString?: string }) => ({ name: 'input', part: [part] });
const params = (...parameter: ParametersParameter[]): Parameters => ({ resourceType: 'Parameters', parameter });

async function kickOff(body: Parameters, app = t) {
  return app.request({ method: 'POST', url: '/fhir/$import', payload: body });
}

/** Polls the status URL until the import is finished. */
async function finished(statusUrl: string, app = t) {
  const path = new URL(statusUrl).pathname;
  for (let i = 0; i < 600; i++) {
    const res = await app.request({ method: 'GET', url: path });
    if (res.statusCode !== 202) return res;
    expect(res.headers['x-progress']).toBeDefined();
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('import did not finish');
}

async function tokenWithScope(scope: string): Promise<string> {
  const res = await t.server.http.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` },
    payload: `grant_type=client_credentials&scope=${encodeURIComponent(scope)}`,
  });
  return (res.json() as { access_token: string }).access_token;
}

describe('POST /fhir/$import (asynchronous)', () => {
  it('imports files of the import directory and inline NDJSON; the status URL reports progress, then the outcome', { timeout: 180_000 }, async () => {
    const inline = ndjsonLines(PATIENT_FILES[4]).slice(0, 1).join('\n'); // the Patient of another file
    const res = await kickOff(
      params(
        input({ name: 'url', valueUrl: 'patients.ndjson.gz' }),
        input({ name: 'url', valueUrl: `file://${join(fixture.dir, 'collection.json')}` }),
        ...BATCH_FILES.map((f) => input({ name: 'url', valueUrl: f })),
        input({ name: 'ndjson', valueString: inline }),
      ),
    );
    expect(res.statusCode, res.body).toBe(202);
    const statusUrl = res.headers['content-location'] as string;
    expect(statusUrl).toMatch(/\/fhir\/\$import-status\/[0-9a-f-]{36}$/);
    const done = await finished(statusUrl);
    expect(done.statusCode, done.body).toBe(200);
    const report = done.json() as OperationOutcome;
    expect(report.resourceType).toBe('OperationOutcome');
    // the three bad lines of the fixture are reported with their line numbers
    const errors = report.issue.filter((i) => i.severity === 'error').map((i) => i.diagnostics);
    expect(errors).toHaveLength(3);
    for (const line of fixture.badLines) expect(errors.some((d) => d?.includes(`line ${line}:`))).toBe(true);
    const stored = await countByType(t.server.database.db);
    const expected = new Map(fixture.expected);
    expected.set('Patient', (expected.get('Patient') ?? 0) + 1);
    expect(Object.fromEntries([...stored].sort())).toEqual(Object.fromEntries([...expected].sort()));
    expect(report.issue[0].diagnostics).toContain(`${[...expected.values()].reduce((a, b) => a + b, 0)} resources written`);
  });

  it('refuses files outside the import directory and URLs it would have to fetch', async () => {
    for (const url of ['/etc/passwd', '../../../../etc/passwd', 'file:///etc/passwd', 'escape/passwd', 'http://127.0.0.1:5432/x.ndjson', 'missing.ndjson']) {
      const res = await kickOff(params(input({ name: 'url', valueUrl: url })));
      expect(res.statusCode, url).toBe(400);
      expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
    expect((await kickOff(params())).statusCode).toBe(400);
    expect((await kickOff({ resourceType: 'Parameters', parameter: [{ name: 'input', part: [{ name: 'url', valueUrl: 'collection.json' }, { name: 'ndjson', valueString: '{}' }] }] })).statusCode).toBe(400);
  });

  it('needs a system scope that allows writing every type', async () => {
    const token = await tokenWithScope('system/*.read');
    const res = await t.server.http.inject({
      method: 'POST',
      url: '/fhir/$import',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      payload: JSON.stringify(params(input({ name: 'ndjson', valueString: '' }))),
    });
    expect(res.statusCode).toBe(403);
    expect((await t.server.http.inject({ method: 'POST', url: '/fhir/$import', payload: '{}', headers: { 'content-type': 'application/fhir+json' } })).statusCode).toBe(401);
  });

  it('a cancelled import is gone from its status URL', async () => {
    await t.server.jobs.pause();
    try {
      const res = await kickOff(params(input({ name: 'ndjson', valueString: JSON.stringify({ resourceType: 'Patient', id: 'never-imported' }) })));
      expect(res.statusCode).toBe(202);
      const path = new URL(res.headers['content-location'] as string).pathname;
      expect((await t.request({ method: 'GET', url: path })).statusCode).toBe(202);
      expect((await t.request({ method: 'DELETE', url: path })).statusCode).toBe(202);
      expect((await t.request({ method: 'GET', url: path })).statusCode).toBe(404);
    } finally {
      await t.server.jobs.resume();
    }
    expect((await t.request({ method: 'GET', url: '/fhir/$import-status/00000000-0000-4000-8000-000000000000' })).statusCode).toBe(404);
  });

  it('without FHIR_IMPORT_DIR only inline NDJSON is accepted', { timeout: 60_000 }, async () => {
    const other = await startTestApp();
    try {
      const refused = await kickOff(params(input({ name: 'url', valueUrl: 'file:///tmp/x.ndjson' })), other);
      expect(refused.statusCode).toBe(400);
      expect(refused.body).toContain('FHIR_IMPORT_DIR');
      const ok = await kickOff(params(input({ name: 'ndjson', valueString: JSON.stringify({ resourceType: 'Patient', id: 'inline-1', active: true }) })), other);
      expect(ok.statusCode).toBe(202);
      const done = await finished(ok.headers['content-location'] as string, other);
      expect(done.statusCode).toBe(200);
      expect((await other.request({ method: 'GET', url: '/fhir/Patient/inline-1' })).statusCode).toBe(200);
    } finally {
      await other.close();
    }
  });
});
