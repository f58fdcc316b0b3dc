import type { Bundle, MedicationRequest, OperationOutcome, Patient } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_ABSENT_REASON, MASKED_LABEL } from '../../src/workflows/patient-masking.js';
import { signInAs } from './smart-helpers.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Role-based masking of national id, phone and address (seed 004 FR-PM-002, issue 12 §1;
 * src/workflows/patient-masking.ts, `mask` lists in conformance/smart-roles.json) on every path a
 * Patient leaves the server.
 */

const NATIONAL_ID = 'https://fhir.hospital.example.org/sid/national-id';
let t: TestApp;
let patientId: string;
let prescriptionId: string;
const tokens: Record<string, string> = {};

const PATIENT: Patient = {
  resourceType: 'Patient',
  name: [{ family: 'Masked', given: ['Mia'] }],
  identifier: [
    { system: NATIONAL_ID, value: '079123456789' },
    { system: 'https://other.example.org/mrn', value: 'MRN-1' },
  ],
  telecom: [
    { system: 'phone', value: '+84 90 123 4567', use: 'mobile' },
    { system: 'email', value: 'mia@example.org' },
  ],
  address: [{ use: 'home', line: ['12 Hidden Street'], city: 'Hanoi', postalCode: '100000' }],
  birthDate: '1990-02-03',
};

async function as(role: string, url: string, method: 'GET' | 'POST' = 'GET', payload?: unknown) {
  return t.server.http.inject({ method, url, headers: { authorization: `Bearer ${tokens[role]}`, ...(payload ? { 'content-type': 'application/fhir+json' } : {}) }, ...(payload ? { payload: JSON.stringify(payload) } : {}) });
}

function patientsIn(value: unknown, found: Patient[] = []): Patient[] {
  if (Array.isArray(value)) value.forEach((v) => patientsIn(v, found));
  else if (value && typeof value === 'object') {
    if ((value as { resourceType?: string }).resourceType === 'Patient') found.push(value as Patient);
    Object.values(value).forEach((v) => patientsIn(v, found));
  }
  return found;
}

function expectMasked(p: Patient): void {
  const text = JSON.stringify(p);
  expect(text).not.toContain('079123456789');
  expect(text).not.toContain('123 4567');
  expect(text).not.toContain('Hidden Street');
  expect(text).not.toContain('Hanoi');
  const national = p.identifier!.find((i) => i.system === NATIONAL_ID)!;
  expect(national.value).toBeUndefined();
  expect((national as { _value?: { extension?: Array<{ url: string; valueCode?: string }> } })._value?.extension?.[0]).toEqual({ url: DATA_ABSENT_REASON, valueCode: 'masked' });
  // What the role may see stays: other identifiers, e-mail, name, birth date.
  expect(p.identifier!.find((i) => i.system !== NATIONAL_ID)!.value).toBe('MRN-1');
  expect(p.telecom!.find((c) => c.system === 'email')!.value).toBe('mia@example.org');
  expect(p.telecom!.find((c) => c.system === 'phone')!.value).toBeUndefined();
  expect(p.address![0]).toEqual({ use: 'home', extension: [{ url: DATA_ABSENT_REASON, valueCode: 'masked' }] });
  expect(p.birthDate).toBe('1990-02-03');
  expect(p.meta?.security).toContainEqual(MASKED_LABEL);
}

function expectClear(p: Patient): void {
  const text = JSON.stringify(p);
  expect(text).toContain('079123456789');
  expect(text).toContain('+84 90 123 4567');
  expect(text).toContain('Hidden Street');
  expect(p.meta?.security ?? []).not.toContainEqual(MASKED_LABEL);
}

beforeAll(async () => {
  t = await startTestApp();
  const created = await t.request({ method: 'POST', url: '/fhir/Patient', payload: PATIENT });
  expect(created.statusCode, created.body).toBe(201);
  patientId = (created.json() as Patient).id!;
  // A second version, for history and vread.
  const updated = await t.request({ method: 'PUT', url: `/fhir/Patient/${patientId}`, payload: { ...PATIENT, id: patientId, gender: 'female' } });
  expect(updated.statusCode, updated.body).toBe(200);
  const rx: MedicationRequest = { resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${patientId}` }, medicationCodeableConcept: { text: 'Paracetamol 500 mg' } };
  const rxRes = await t.request({ method: 'POST', url: '/fhir/MedicationRequest', payload: rx });
  expect(rxRes.statusCode, rxRes.body).toBe(201);
  prescriptionId = (rxRes.json() as MedicationRequest).id!;
  for (const role of ['PHARMACIST', 'LAB_TECHNICIAN', 'DOCTOR', 'RECEPTIONIST']) tokens[role] = (await signInAs(t, role, 'Practitioner/p-' + role.toLowerCase().replace('_', '-'))).token;
  tokens.PATIENT = (await signInAs(t, 'PATIENT', `Patient/${patientId}`)).token;
});

afterAll(async () => {
  await t?.close();
});

describe('FR-PM-002 role-based masking of national id, phone and address', () => {
  it('FR-PM-002: a PHARMACIST and a LAB_TECHNICIAN read the Patient masked (read and vread)', async () => {
    for (const role of ['PHARMACIST', 'LAB_TECHNICIAN']) {
      const read = await as(role, `/fhir/Patient/${patientId}`);
      expect(read.statusCode, read.body).toBe(200);
      expectMasked(read.json() as Patient);
      const vread = await as(role, `/fhir/Patient/${patientId}/_history/1`);
      expect(vread.statusCode, vread.body).toBe(200);
      expectMasked(vread.json() as Patient);
      // _elements / _summary reshape the masked resource, never the clear one.
      const elements = await as(role, `/fhir/Patient/${patientId}?_elements=telecom,address`);
      expect(elements.body).not.toContain('123 4567');
      expect(elements.body).not.toContain('Hidden Street');
    }
  });

  it('FR-PM-002: DOCTOR, RECEPTIONIST and the patient themselves see the values', async () => {
    for (const role of ['DOCTOR', 'RECEPTIONIST', 'PATIENT']) {
      const read = await as(role, `/fhir/Patient/${patientId}`);
      expect(read.statusCode, read.body).toBe(200);
      expectClear(read.json() as Patient);
    }
  });

  it('FR-PM-002: searches, _include, history, Bundle responses, $everything, $fuzzy-search and $match are masked for a PHARMACIST', async () => {
    const urls = [
      `/fhir/Patient?_id=${patientId}`,
      `/fhir/MedicationRequest?_id=${prescriptionId}&_include=MedicationRequest:subject`,
      `/fhir/Patient?_id=${patientId}&_revinclude=MedicationRequest:subject`,
      `/fhir/Patient/${patientId}/_history`,
      `/fhir/Patient/_history`,
      `/fhir/Patient/${patientId}/$everything`,
      `/fhir/Patient/$fuzzy-search?name=Maskd`,
    ];
    for (const url of urls) {
      const res = await as('PHARMACIST', url);
      expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
      const patients = patientsIn(res.json());
      expect(patients.length, url).toBeGreaterThan(0);
      patients.forEach(expectMasked);
    }
    const match = await as('PHARMACIST', '/fhir/Patient/$match', 'POST', { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', name: [{ family: 'Masked', given: ['Mia'] }], birthDate: '1990-02-03' } }] });
    expect(match.statusCode, match.body).toBe(200);
    expect(patientsIn(match.json()).filter((p) => p.id === patientId).length).toBe(1);
    patientsIn(match.json()).filter((p) => p.id === patientId).forEach(expectMasked);
    const batch: Bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [{ request: { method: 'GET', url: `Patient/${patientId}` } }, { request: { method: 'GET', url: `Patient?_id=${patientId}` } }],
    };
    const res = await as('PHARMACIST', '/fhir', 'POST', batch);
    expect(res.statusCode, res.body).toBe(200);
    const patients = patientsIn(res.json());
    expect(patients.length).toBe(2);
    patients.forEach(expectMasked);
  });

  it('FR-PM-002: bulk export (files are not masked) is refused to a masked role', async () => {
    const res = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient/$export', headers: { authorization: `Bearer ${tokens.PHARMACIST}`, prefer: 'respond-async', accept: 'application/fhir+json' } });
    expect(res.statusCode, res.body).toBe(403);
    expect((res.json() as OperationOutcome).issue[0]?.diagnostics).toMatch(/masked/);
  });

  it('FR-PM-002: the same searches are clear for a DOCTOR', async () => {
    const res = await as('DOCTOR', `/fhir/MedicationRequest?_id=${prescriptionId}&_include=MedicationRequest:subject`);
    expect(res.statusCode, res.body).toBe(200);
    const patients = patientsIn(res.json());
    expect(patients.length).toBe(1);
    expectClear(patients[0]!);
  });

  it('FR-PM-002: a masked copy written back is refused, so masking never destroys data', async () => {
    const masked = (await as('PHARMACIST', `/fhir/Patient/${patientId}`)).json() as Patient;
    const res = await t.request({ method: 'PUT', url: `/fhir/Patient/${patientId}`, payload: masked });
    expect(res.statusCode, res.body).toBe(422);
    expect((res.json() as OperationOutcome).issue[0]?.code).toBe('business-rule');
    const still = (await t.request({ method: 'GET', url: `/fhir/Patient/${patientId}` })).json() as Patient;
    expectClear(still);
  });
});
