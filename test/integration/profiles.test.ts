import type { OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

const US_CORE_PATIENT = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient';
const UNKNOWN_PROFILE = 'http://hospital.example/StructureDefinition/not-known-here';

describe('profiles (R4 validation, profile packs)', () => {
  let plain: TestApp;
  let strict: TestApp;
  let usCore: TestApp;
  beforeAll(async () => {
    [plain, strict, usCore] = await Promise.all([
      startTestApp(),
      startTestApp({ FHIR_STRICT_PROFILES: 'true' }),
      startTestApp({ FHIR_PROFILE_PACKS: 'us-core' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([plain?.close(), strict?.close(), usCore?.close()]);
  });

  const patient = (profile: string, extra: Record<string, unknown> = {}) => ({
    resourceType: 'Patient',
    meta: { profile: [profile] },
    name: [{ family: 'Profiled' }],
    ...extra,
  });

  it('an unknown profile is a warning: the write succeeds and the warning is reported', async () => {
    const res = await plain.request({ method: 'POST', url: '/fhir/Patient', payload: patient(UNKNOWN_PROFILE), headers: { prefer: 'return=OperationOutcome' } });
    expect(res.statusCode).toBe(201);
    const oo = res.json() as OperationOutcome;
    expect(oo.issue.some((i) => i.severity === 'warning' && (i.diagnostics ?? '').includes(UNKNOWN_PROFILE))).toBe(true);
  });

  it('under strict profile checking an unknown profile is refused with 422', async () => {
    const res = await strict.request({ method: 'POST', url: '/fhir/Patient', payload: patient(UNKNOWN_PROFILE) });
    expect(res.statusCode).toBe(422);
  });

  it('the US Core pack, when switched on, enforces US Core Patient', async () => {
    // US Core Patient requires identifier and gender; without the pack the profile is only unknown.
    const withoutPack = await plain.request({ method: 'POST', url: '/fhir/Patient', payload: patient(US_CORE_PATIENT) });
    expect(withoutPack.statusCode).toBe(201);
    const refused = await usCore.request({ method: 'POST', url: '/fhir/Patient', payload: patient(US_CORE_PATIENT) });
    expect(refused.statusCode).toBe(422);
    const expressions = (refused.json() as OperationOutcome).issue.flatMap((i) => i.expression ?? []);
    expect(expressions.some((e) => e.includes('identifier'))).toBe(true);
    const accepted = await usCore.request({
      method: 'POST',
      url: '/fhir/Patient',
      payload: patient(US_CORE_PATIENT, { identifier: [{ system: 'http://hospital.example/mrn', value: '1' }], gender: 'female' }),
    });
    expect(accepted.statusCode).toBe(201);
  });

  it('invariants a profile adds are enforced on writes and reported by $validate (vital signs, the hospital’s own profile)', async () => {
    const weight = {
      resourceType: 'Observation',
      meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] },
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }] },
      subject: { reference: 'Patient/example' },
      effectiveDateTime: '2024-05-01',
    };
    const refused = await plain.request({ method: 'POST', url: '/fhir/Observation', payload: weight });
    expect(refused.statusCode).toBe(422);
    expect((refused.json() as OperationOutcome).issue).toContainEqual(expect.objectContaining({ code: 'invariant', diagnostics: expect.stringMatching(/^vs-2: /), expression: ['Observation'] }));
    const measured = { ...weight, valueQuantity: { value: 72, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' } };
    expect((await plain.request({ method: 'POST', url: '/fhir/Observation', payload: measured })).statusCode).toBe(201);

    // The hospital's own profile (profiles/): invariant hosp-pn-1 on the patient number's format.
    const hospitalPatient = 'https://fhir.hospital.example.org/StructureDefinition/hospital-patient';
    const numbered = (value: string) => ({
      resourceType: 'Patient',
      meta: { profile: [hospitalPatient] },
      identifier: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] }, system: 'https://fhir.hospital.example.org/sid/patient-number', value }],
      name: [{ family: 'Numbered' }],
      gender: 'female',
    });
    const malformed = await plain.request({ method: 'POST', url: '/fhir/Patient/$validate', payload: numbered('PT-2024-1') });
    expect(malformed.statusCode).toBe(200);
    expect((malformed.json() as OperationOutcome).issue).toContainEqual(
      expect.objectContaining({ severity: 'error', code: 'invariant', expression: ['Patient.identifier[0].value'], diagnostics: `hosp-pn-1: A patient number is PT-YYYYMMDD-XXXX (profile ${hospitalPatient})` }),
    );
    const wellFormed = await plain.request({ method: 'POST', url: '/fhir/Patient/$validate', payload: numbered('PT-20240501-0007') });
    expect((wellFormed.json() as OperationOutcome).issue.filter((i) => i.severity === 'error')).toEqual([]);
  });

  it('the US Core search parameters come with the pack', async () => {
    const cs = (await usCore.server.http.inject({ method: 'GET', url: '/fhir/metadata' })).json();
    const patientParams = cs.rest[0].resource.find((r: { type: string }) => r.type === 'Patient').searchParam.map((p: { definition: string }) => p.definition);
    expect(patientParams.some((d: string) => d.includes('us/core'))).toBe(true);
  });
});
