import type { Bundle, OperationOutcome, Parameters, Patient } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MATCH_GRADE_URL } from '../../src/workflows/patient-registration-match.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Patient registration (seed 004 FR-PM-001, issue 12 §1; src/workflows/patient-registration.ts):
 * the server-assigned patient number PT-YYYYMMDD-XXXX, unique national ids and patient
 * numbers, duplicate detection with Patient/$match.
 */

const NUMBER = 'https://fhir.hospital.example.org/sid/patient-number';
const NATIONAL = 'https://fhir.hospital.example.org/sid/national-id';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

function registration(family: string, extra: Partial<Patient> = {}): Patient {
  return { resourceType: 'Patient', identifier: [{ system: NUMBER }], name: [{ family, given: ['Ann'] }], gender: 'female', ...extra };
}

async function post(resource: Patient, app: TestApp = t): Promise<{ statusCode: number; body: string }> {
  return app.request({ method: 'POST', url: '/fhir/Patient', payload: resource });
}

function numberOf(body: string): string | undefined {
  return (JSON.parse(body) as Patient).identifier?.find((i) => i.system === NUMBER)?.value;
}

function expectBusinessRule(res: { statusCode: number; body: string }, status: number, text: RegExp): void {
  expect(res.statusCode, res.body).toBe(status);
  const outcome = JSON.parse(res.body) as OperationOutcome;
  expect(outcome.issue[0]?.code).toBe('business-rule');
  expect(outcome.issue[0]?.diagnostics).toMatch(text);
}

describe('patient number (FR-PM-001)', () => {
  it('FR-PM-001 registration assigns PT-YYYYMMDD-XXXX from a per-day sequence', async () => {
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    const first = await post(registration('Number'));
    expect(first.statusCode, first.body).toBe(201);
    const second = await post(registration('Number'));
    const a = numberOf(first.body)!;
    const b = numberOf(second.body)!;
    expect(a).toMatch(new RegExp(`^PT-${today}-\\d{4}$`));
    expect(Number(b.slice(-4))).toBe(Number(a.slice(-4)) + 1);
    const stored = JSON.parse(first.body) as Patient;
    expect(stored.identifier?.[0]?.type?.coding?.[0]?.code).toBe('MR');
    const found = await t.request({ method: 'GET', url: `/fhir/Patient?patient-number=${a}` });
    expect((found.json() as Bundle).entry?.map((e) => e.resource?.id)).toEqual([stored.id]);
  });

  it('FR-PM-001 a registration claiming the hospital Patient profile gets its number before validation', async () => {
    const profile = 'https://fhir.hospital.example.org/StructureDefinition/hospital-patient';
    const res = await post({ ...registration('Profiled'), meta: { profile: [profile] } });
    expect(res.statusCode, res.body).toBe(201);
    expect(numberOf(res.body)).toMatch(/^PT-\d{8}-\d{4}$/);
    const malformed = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', identifier: { system: NUMBER } } });
    expect(malformed.statusCode, malformed.body).toBe(422);
    const numeric = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', identifier: [{ system: NUMBER, value: 12 }] } });
    expect(numeric.statusCode, numeric.body).toBe(422);
  });

  it('FR-PM-001 concurrent registrations never share a number', async () => {
    const results = await Promise.all(Array.from({ length: 15 }, () => post(registration('Rush'))));
    for (const r of results) expect(r.statusCode, r.body).toBe(201);
    const numbers = results.map((r) => numberOf(r.body));
    expect(new Set(numbers).size).toBe(15);
  });

  it.runIf(process.env.DATABASE_URL)('FR-PM-001 two server processes on one database never hand out the same number', async () => {
    const second = await startTestApp({ DATABASE_SCHEMA: t.config.databaseSchema! });
    try {
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) => post(registration('TwoProcs'), i % 2 === 0 ? t : second)));
      for (const r of results) expect(r.statusCode, r.body).toBe(201);
      expect(new Set(results.map((r) => numberOf(r.body))).size).toBe(16);
    } finally {
      await second.server.close();
    }
  });

  it('FR-PM-001 the number is the server’s: an update may not change or drop it, a made-up one is refused', async () => {
    const created = JSON.parse((await post(registration('Keep'))).body) as Patient;
    const kept = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, gender: 'other' } });
    expect(kept.statusCode, kept.body).toBe(200);
    const dropped = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, identifier: [{ system: 'http://example.org/other', value: '1' }] } });
    expectBusinessRule(dropped, 409, /cannot be changed or removed/);
    const changed = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, identifier: [{ system: NUMBER, value: 'PT-20000101-0001' }] } });
    expectBusinessRule(changed, 409, /cannot be changed or removed/);
    expectBusinessRule(await post(registration('Bad', { identifier: [{ system: NUMBER, value: 'X-1' }] })), 422, /not a patient number/);
  });

  it('FR-PM-001 external data without the hospital number is stored as sent', async () => {
    const external: Patient = { resourceType: 'Patient', identifier: [{ system: 'http://hl7.org/fhir/sid/us-ssn', value: '999-11-2222' }], name: [{ family: 'Outside' }] };
    const res = await post(external);
    expect(res.statusCode, res.body).toBe(201);
    expect((JSON.parse(res.body) as Patient).identifier).toEqual(external.identifier);
    expect((await post(external)).statusCode).toBe(201);
  });
});

describe('national id (FR-PM-001)', () => {
  it('FR-PM-001 a national id already registered is refused with 409 business-rule', async () => {
    const nid = { system: NATIONAL, value: `NID-${Date.now()}` };
    const first = await post(registration('National', { identifier: [{ system: NUMBER }, nid] }));
    expect(first.statusCode, first.body).toBe(201);
    const stored = JSON.parse(first.body) as Patient;
    expectBusinessRule(await post(registration('Again', { identifier: [{ system: NUMBER }, nid] })), 409, /already registered with this national id/);
    const update = await t.request({ method: 'PUT', url: `/fhir/Patient/${stored.id}`, payload: { ...stored, birthDate: '1970-01-01' } });
    expect(update.statusCode, update.body).toBe(200);
    const other = JSON.parse((await post(registration('Other'))).body) as Patient;
    const steal = await t.request({ method: 'PUT', url: `/fhir/Patient/${other.id}`, payload: { ...other, identifier: [...(other.identifier ?? []), nid] } });
    expectBusinessRule(steal, 409, /national id/);
  });

  it('FR-PM-001 concurrent registrations of one national id: exactly one succeeds', async () => {
    const nid = { system: NATIONAL, value: `RACE-${Date.now()}` };
    const results = await Promise.all(Array.from({ length: 10 }, () => post({ resourceType: 'Patient', identifier: [nid], name: [{ family: 'Race' }] })));
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(1);
    expect(results.filter((r) => r.statusCode === 409)).toHaveLength(9);
  });
});

describe('Patient/$match (FR-PM-001 duplicate detection)', () => {
  it('FR-PM-001 scores candidates on name, birth date and phone; misspellings and accents still match', async () => {
    const exact = JSON.parse((await post({ resourceType: 'Patient', name: [{ family: 'Álvarez', given: ['José'] }], birthDate: '1980-02-03', telecom: [{ system: 'phone', value: '+1 555 010 1234' }] })).body) as Patient;
    const typo = JSON.parse((await post({ resourceType: 'Patient', name: [{ family: 'Alvares', given: ['Jose'] }], birthDate: '1980-02-03' })).body) as Patient;
    await post({ resourceType: 'Patient', name: [{ family: 'Lopez', given: ['Maria'] }], birthDate: '1980-02-03' });
    const input: Parameters = {
      resourceType: 'Parameters',
      parameter: [{ name: 'resource', resource: { resourceType: 'Patient', name: [{ family: 'Alvarez', given: ['Jose'] }], birthDate: '1980-02-03', telecom: [{ system: 'phone', value: '555-010-1234' }] } }],
    };
    const res = await t.request({ method: 'POST', url: '/fhir/Patient/$match', payload: input });
    expect(res.statusCode, res.body).toBe(200);
    const bundle = res.json() as Bundle;
    expect(bundle.type).toBe('searchset');
    const entries = bundle.entry ?? [];
    expect(entries.map((e) => e.resource?.id)).toEqual([exact.id, typo.id]);
    expect(entries[0]!.search).toMatchObject({ mode: 'match', score: 1, extension: [{ url: MATCH_GRADE_URL, valueCode: 'certain' }] });
    expect(entries[1]!.search?.score).toBeGreaterThan(0.7);
    expect(entries[1]!.search?.score).toBeLessThan(0.95);
    expect(entries[1]!.search?.extension?.[0]?.valueCode).toBe('probable');

    const certain = await t.request({ method: 'POST', url: '/fhir/Patient/$match', payload: { ...input, parameter: [...input.parameter!, { name: 'onlyCertainMatches', valueBoolean: true }] } });
    expect(((certain.json() as Bundle).entry ?? []).map((e) => e.resource?.id)).toEqual([exact.id]);
  });

  it('FR-PM-001 $match by national id is certain; bad input is a 400', async () => {
    const nid = { system: NATIONAL, value: `MATCH-${Date.now()}` };
    const p = JSON.parse((await post({ resourceType: 'Patient', identifier: [nid], name: [{ family: 'Unrelated' }] })).body) as Patient;
    const res = await t.request({ method: 'POST', url: '/fhir/Patient/$match', payload: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', identifier: [nid] } }] } });
    const entry = (res.json() as Bundle).entry?.[0];
    expect(entry?.resource?.id).toBe(p.id);
    expect(entry?.search?.extension?.[0]?.valueCode).toBe('certain');
    expect((await t.request({ method: 'POST', url: '/fhir/Patient/$match', payload: { resourceType: 'Parameters', parameter: [] } })).statusCode).toBe(400);
    expect((await t.request({ method: 'POST', url: '/fhir/Patient/$match', payload: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient' } }] } })).statusCode).toBe(400);
  });
});
