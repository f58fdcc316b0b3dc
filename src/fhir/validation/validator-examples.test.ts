import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ResourceValidator } from './index.js';
import { KNOWN_INVALID_SPEC_EXAMPLES } from './known-invalid-examples.js';

const dir = path.resolve(process.cwd(), '../shared/data/fhir-examples');

/**
 * Where each known-invalid example (see known-invalid-examples.ts for the reasons) must be
 * rejected: every error location we expect, so the list cannot silently cover other problems.
 */
const EXPECTED_ERRORS: Record<string, (string | RegExp)[]> = {
  'DeviceMetric-example.json': ['DeviceMetric.parent.reference'],
  'DeviceUseStatement-example.json': ['DeviceUseStatement.reasonReference[0].reference'],
  'MedicationRequest-medrx0301.json': ['MedicationRequest.dispenseRequest.performer.reference'],
  'Questionnaire-qs1.json': [/^Questionnaire\.item\[0\](\.item\[\d+\])+\.linkId$/],
  'ActivityDefinition-blood-tubes-supply.json': ['ActivityDefinition.text.div'],
  'ActivityDefinition-heart-valve-replacement.json': ['ActivityDefinition.text.div'],
  'EventDefinition-example.json': ['EventDefinition.text.div'],
  'Questionnaire-zika-virus-exposure-assessment.json': ['Questionnaire.text.div'],
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
      if (file in KNOWN_INVALID_SPEC_EXAMPLES) continue;
      for (const i of errorsOf(file)) failures.push(`${file}: ${i.expression?.[0]}: ${i.diagnostics}`);
    }
    expect(failures).toEqual([]);
  });

  it('lists a reason and the expected error locations for each known-invalid example', () => {
    expect(Object.keys(EXPECTED_ERRORS).sort()).toEqual(Object.keys(KNOWN_INVALID_SPEC_EXAMPLES).sort());
    for (const file of Object.keys(KNOWN_INVALID_SPEC_EXAMPLES)) expect(files).toContain(file);
  });

  it.each(Object.entries(EXPECTED_ERRORS))('rejects %s exactly where the spec is violated', (file, expected) => {
    const where = errorsOf(file).map((i) => i.expression?.[0] ?? '');
    expect(where.length).toBeGreaterThan(0);
    // Every expected location is reported, and every reported location is an expected one.
    const matches = (w: string, e: string | RegExp) => (typeof e === 'string' ? w === e : e.test(w));
    for (const e of expected) expect(where.some((w) => matches(w, e))).toBe(true);
    for (const w of where) expect(expected.some((e) => matches(w, e))).toBe(true);
  });
});
