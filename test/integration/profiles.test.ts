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

  it('the US Core search parameters come with the pack', async () => {
    const cs = (await usCore.server.http.inject({ method: 'GET', url: '/fhir/metadata' })).json();
    const patientParams = cs.rest[0].resource.find((r: { type: string }) => r.type === 'Patient').searchParam.map((p: { definition: string }) => p.definition);
    expect(patientParams.some((d: string) => d.includes('us/core'))).toBe(true);
  });
});
