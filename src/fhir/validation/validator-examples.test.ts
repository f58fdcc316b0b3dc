import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ResourceValidator } from './index.js';

const dir = path.resolve(process.cwd(), '../shared/data/fhir-examples');

/**
 * Examples that ship with R4 4.0.1 but do not conform to R4's own definitions, checked by reading
 * the definitions in profiles-resources.json. Each entry lists every error location we expect, so
 * the list cannot silently cover other problems.
 */
const KNOWN_INVALID: Record<string, { reason: string; errors: (string | RegExp)[] }> = {
  'DeviceMetric-example.json': {
    reason: 'DeviceMetric.parent is Reference(Device); the example refers to DeviceDefinition/dc102',
    errors: ['DeviceMetric.parent.reference'],
  },
  'DeviceUseStatement-example.json': {
    reason:
      'DeviceUseStatement.reasonReference allows Condition|Observation|DiagnosticReport|DocumentReference|Media; ' +
      'the example refers to Procedure/example',
    errors: ['DeviceUseStatement.reasonReference[0].reference'],
  },
  'MedicationRequest-medrx0301.json': {
    reason: 'MedicationRequest.dispenseRequest.performer is Reference(Organization); the example refers to Practitioner/f001',
    errors: ['MedicationRequest.dispenseRequest.performer.reference'],
  },
  'Questionnaire-qs1.json': {
    reason:
      'Questionnaire.item.linkId is 1..1, also for nested items (Questionnaire.item.item → #Questionnaire.item); ' +
      'only the top-level item of this example has a linkId',
    errors: [/^Questionnaire\.item\[0\](\.item\[\d+\])+\.linkId$/],
  },
};

describe('official R4 examples', () => {
  let validator: ResourceValidator;
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

  beforeAll(() => {
    validator = new ResourceValidator();
  });

  const errorsOf = (file: string) =>
    validator
      .validate(JSON.parse(readFileSync(path.join(dir, file), 'utf8')))
      .filter((i) => i.severity === 'error');

  it('has the examples to check', () => {
    expect(files.length).toBe(625);
  });

  it('accepts every example except the known-invalid ones', () => {
    const failures: string[] = [];
    for (const file of files) {
      if (file in KNOWN_INVALID) continue;
      for (const i of errorsOf(file)) failures.push(`${file}: ${i.expression?.[0]}: ${i.diagnostics}`);
    }
    expect(failures).toEqual([]);
  });

  it.each(Object.entries(KNOWN_INVALID))('rejects %s exactly where the spec is violated', (file, known) => {
    const where = errorsOf(file).map((i) => i.expression?.[0] ?? '');
    expect(where.length).toBeGreaterThan(0);
    // Every expected location is reported, and every reported location is an expected one.
    for (const e of known.errors) expect(where.some((w) => (typeof e === 'string' ? w === e : e.test(w)))).toBe(true);
    for (const w of where) expect(known.errors.some((e) => (typeof e === 'string' ? w === e : e.test(w)))).toBe(true);
  });
});
