import type { Bundle, DetectedIssue, MedicationRequest, OperationOutcome, Task } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OVERRIDE_EXTENSION } from '../../src/workflows/prescribing.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/**
 * Prescribing safety (seed 004 FR-EMR-003, FR-PH-003; issue 13 §3; src/workflows/prescribing.ts):
 * drug–allergy, drug–drug, dose range, duplicates as DetectedIssues; critical findings refused
 * unless a signed-in practitioner overrides with a reason; refills through Task.
 */

const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
const SNOMED = 'http://snomed.info/sct';

let t: TestApp;
let doctor: string;
let doctorToken: string;

type Json = Record<string, unknown>;

async function as(token: string | undefined, method: 'POST' | 'PUT' | 'GET', url: string, payload?: unknown, headers: Record<string, string> = {}) {
  const auth = token ? { authorization: `Bearer ${token}` } : {};
  return t.request({ method, url, ...(payload === undefined ? {} : { payload: payload as Json }), headers: { ...auth, ...headers } });
}

async function create<T>(resource: Json): Promise<T & { id: string }> {
  const res = await as(undefined, 'POST', `/fhir/${String(resource.resourceType)}`, resource);
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T & { id: string };
}

async function newPatient(birthDate = '1970-01-01', weightKg?: number): Promise<string> {
  const p = await create<Json>({ resourceType: 'Patient', name: [{ family: 'Rx', given: ['Test'] }], birthDate });
  if (weightKg !== undefined) {
    await create({
      resourceType: 'Observation',
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '29463-7', display: 'Body Weight' }] },
      subject: { reference: `Patient/${p.id}` },
      effectiveDateTime: '2026-01-01T10:00:00Z',
      valueQuantity: { value: weightKg, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
    });
  }
  return p.id;
}

async function allergy(patient: string, code: string, display: string, criticality: 'high' | 'low' | undefined = 'high'): Promise<string> {
  const a = await create<Json>({
    resourceType: 'AllergyIntolerance',
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
    verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code: 'confirmed' }] },
    ...(criticality ? { criticality } : {}),
    code: { coding: [{ system: SNOMED, code, display }] },
    patient: { reference: `Patient/${patient}` },
  });
  return a.id;
}

/** A MedicationRequest of `units` units `perDay` times a day. */
function prescription(patient: string, code: string, display: string, units = 1, perDay = 1, extra: Json = {}): Json {
  return {
    resourceType: 'MedicationRequest',
    status: 'active',
    intent: 'order',
    medicationCodeableConcept: { coding: [{ system: RXNORM, code, display }], text: display },
    subject: { reference: `Patient/${patient}` },
    requester: { reference: `Practitioner/${doctor}` },
    dosageInstruction: [{ timing: { repeat: { frequency: perDay, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: units } }] }],
    ...extra,
  };
}

const override = (reason: string) => ({ extension: [{ url: OVERRIDE_EXTENSION, valueString: reason }] });

async function detectedIssues(request: MedicationRequest): Promise<DetectedIssue[]> {
  const out: DetectedIssue[] = [];
  for (const ref of request.detectedIssue ?? []) {
    const res = await as(undefined, 'GET', `/fhir/${ref.reference}`);
    expect(res.statusCode).toBe(200);
    out.push(res.json() as DetectedIssue);
  }
  return out;
}

const codeOf = (d: DetectedIssue) => d.code?.coding?.[0]?.code;

beforeAll(async () => {
  t = await startTestApp();
  doctor = (await create<Json>({ resourceType: 'Practitioner', name: [{ family: 'Prescriber' }] })).id;
  doctorToken = (await signInAs(t, 'DOCTOR', `Practitioner/${doctor}`)).token;
});

afterAll(async () => {
  await t?.close();
});

describe('prescribing safety (FR-EMR-003, FR-PH-003)', () => {
  it('FR-EMR-003 / FR-PH-003: a drug–allergy conflict of high criticality is refused with 409 business-rule naming the finding and how to override; nothing is written', async () => {
    const patient = await newPatient();
    await allergy(patient, '91936005', 'Allergy to penicillin', 'high');
    const res = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(patient, '308182', 'Amoxicillin 250 MG Oral Capsule', 1, 3));
    expect(res.statusCode, res.body).toBe(409);
    const oo = res.json() as OperationOutcome;
    expect(oo.issue[0]).toMatchObject({ severity: 'error', code: 'business-rule', details: { coding: [{ code: 'ALGY' }], text: 'SEVERE' } });
    expect(oo.issue[0]!.diagnostics).toMatch(/Allergy to penicillin/);
    expect(oo.issue.at(-1)!.diagnostics).toContain(OVERRIDE_EXTENSION);
    const written = (await as(undefined, 'GET', `/fhir/MedicationRequest?subject=Patient/${patient}`)).json() as Bundle;
    const issues = (await as(undefined, 'GET', `/fhir/DetectedIssue?patient=Patient/${patient}`)).json() as Bundle;
    expect(written.total ?? written.entry?.length ?? 0).toBe(0);
    expect(issues.entry ?? []).toHaveLength(0);
  });

  it('FR-PH-003: an override with a reason is recorded on the DetectedIssue as a mitigation by the token\'s practitioner (not the body), and the extension is not stored', async () => {
    const patient = await newPatient();
    const allergyId = await allergy(patient, '91936005', 'Allergy to penicillin', 'high');
    const body = { ...prescription(patient, '308182', 'Amoxicillin 250 MG Oral Capsule', 1, 3), ...override('No alternative; tolerated amoxicillin in 2024 under observation') };
    const res = await as(doctorToken, 'POST', '/fhir/MedicationRequest', body, { prefer: 'return=representation' });
    expect(res.statusCode, res.body).toBe(201);
    const stored = res.json() as MedicationRequest;
    expect(stored.extension).toBeUndefined();
    const [issue] = await detectedIssues(stored);
    expect(issue).toMatchObject({ status: 'final', severity: 'high', patient: { reference: `Patient/${patient}` } });
    expect(codeOf(issue!)).toBe('ALGY');
    expect(issue!.implicated?.map((i) => i.reference)).toEqual([`MedicationRequest/${stored.id}`, `AllergyIntolerance/${allergyId}`]);
    expect(issue!.mitigation).toHaveLength(1);
    expect(issue!.mitigation![0]).toMatchObject({ author: { reference: `Practitioner/${doctor}` }, action: { text: 'No alternative; tolerated amoxicillin in 2024 under observation' } });
    expect(issue!.mitigation![0]!.date).toBeTruthy();

    // An update that leaves medication and dosage alone is not re-checked; a dosage change keeps the acknowledged finding.
    const note = await as(doctorToken, 'PUT', `/fhir/MedicationRequest/${stored.id}`, { ...stored, note: [{ text: 'with food' }] });
    expect(note.statusCode, note.body).toBe(200);
    const changed = await as(doctorToken, 'PUT', `/fhir/MedicationRequest/${stored.id}`, { ...stored, dosageInstruction: [{ timing: { repeat: { frequency: 2, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: 1 } }] }] });
    expect(changed.statusCode, changed.body).toBe(200);
    expect((changed.json() as MedicationRequest).detectedIssue).toEqual(stored.detectedIssue);
  });

  it('FR-PH-003: an override needs a signed-in practitioner — a client token without fhirUser is refused', async () => {
    const patient = await newPatient();
    await allergy(patient, '91936005', 'Allergy to penicillin', 'high');
    const res = await as(undefined, 'POST', '/fhir/MedicationRequest', { ...prescription(patient, '834061', 'Penicillin V Potassium 250 MG Oral Tablet'), ...override('because') });
    expect(res.statusCode, res.body).toBe(422);
    expect((res.json() as OperationOutcome).issue[0]!.diagnostics).toMatch(/signed-in practitioner/);
  });

  it('FR-EMR-003: a low-criticality allergy and cross-reactivity are graded lower and written as warnings, not refused', async () => {
    const patient = await newPatient();
    await allergy(patient, '91936005', 'Allergy to penicillin', 'low');
    // Cefuroxime is a cephalosporin: cross-reactive with penicillin, one grade below moderate.
    const res = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(patient, '309097', 'Cefuroxime 250 MG Oral Tablet', 1, 2), { prefer: 'return=OperationOutcome' });
    expect(res.statusCode, res.body).toBe(201);
    const oo = res.json() as OperationOutcome;
    expect(oo.issue[0]).toMatchObject({ severity: 'warning', code: 'business-rule', details: { coding: [{ code: 'ALGY' }], text: 'MINOR' } });
    expect(oo.issue[0]!.diagnostics).toMatch(/cross-reactivity/);
  });

  it('FR-EMR-003 / FR-PH-003: a drug–drug interaction with an active prescription is found (moderate: a warning with a DetectedIssue; severe: refused)', async () => {
    const patient = await newPatient();
    const simva = await create<MedicationRequest>(prescription(patient, '314231', 'Simvastatin 10 MG Oral Tablet'));
    const res = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(patient, '197361', 'Amlodipine 5 MG Oral Tablet'), { prefer: 'return=representation' });
    expect(res.statusCode, res.body).toBe(201);
    const [issue] = await detectedIssues(res.json() as MedicationRequest);
    expect(codeOf(issue!)).toBe('DRG');
    expect(issue!.severity).toBe('moderate');
    expect(issue!.implicated?.[1]?.reference).toBe(`MedicationRequest/${simva.id}`);
    expect(issue!.detail).toMatch(/simvastatin/i);

    const warfarin = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(patient, '855332', 'Warfarin Sodium 5 MG Oral Tablet'));
    expect(warfarin.statusCode).toBe(201);
    const ibuprofen = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(patient, '310965', 'Ibuprofen 200 MG Oral Tablet', 1, 3));
    expect(ibuprofen.statusCode, ibuprofen.body).toBe(409);
    expect((ibuprofen.json() as OperationOutcome).issue[0]).toMatchObject({ details: { coding: [{ code: 'DRG' }], text: 'SEVERE' } });
    expect((ibuprofen.json() as OperationOutcome).issue[0]!.diagnostics).toMatch(/bleeding/);
  });

  it('FR-EMR-003: a dose above the range for age and weight is refused (DOSEH); mg/kg/day needs the latest body weight', async () => {
    // A 20 kg child: acetaminophen limit 75 mg/kg/day = 1500 mg/day; 2 × 325 mg four times a day = 2600 mg.
    const child = await newPatient(new Date(Date.now() - 6 * 365.25 * 86400_000).toISOString().slice(0, 10), 20);
    const high = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(child, '313782', 'Acetaminophen 325 MG Oral Tablet', 2, 4));
    expect(high.statusCode, high.body).toBe(409);
    const issue = (high.json() as OperationOutcome).issue[0]!;
    expect(issue.details?.coding?.[0]?.code).toBe('DOSEH');
    expect(issue.diagnostics).toMatch(/2600 mg.*75 mg\/kg\/day × 20 kg = 1500 mg\/day/);
    // 1 tablet three times a day (975 mg) is within range.
    expect((await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(child, '313782', 'Acetaminophen 325 MG Oral Tablet', 1, 3))).statusCode).toBe(201);
    // An adult: 4000 mg/day; 4 × 500 mg (mass unit) four times a day = 8000 mg.
    const adult = await newPatient('1980-05-05', 80);
    const body = prescription(adult, '313782', 'Acetaminophen 325 MG Oral Tablet');
    body.dosageInstruction = [{ timing: { repeat: { frequency: 4, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: 2000, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' } }] }];
    const res = await as(doctorToken, 'POST', '/fhir/MedicationRequest', body);
    expect(res.statusCode).toBe(409);
    expect((res.json() as OperationOutcome).issue[0]!.diagnostics).toMatch(/daily dose 8000 mg is above the maximum 4000 mg\/day/);
  });

  it('FR-EMR-003: correcting an overridden dose re-checks the prescription and marks the DOSEH DetectedIssue that no longer arises mitigated', async () => {
    const adult = await newPatient('1975-02-02', 70);
    const body = { ...prescription(adult, '206905', 'Ibuprofen 400 MG Oral Tablet [Ibu]', 3, 4), ...override('Short course, specialist advice') };
    const res = await as(doctorToken, 'POST', '/fhir/MedicationRequest', body, { prefer: 'return=representation' });
    expect(res.statusCode, res.body).toBe(201);
    const stored = res.json() as MedicationRequest;
    const [dose] = await detectedIssues(stored);
    expect(codeOf(dose!)).toBe('DOSEH');
    expect(dose!.detail).toMatch(/4800 mg is above the maximum 3200 mg\/day/);
    const fixed = await as(doctorToken, 'PUT', `/fhir/MedicationRequest/${stored.id}`, { ...stored, dosageInstruction: [{ timing: { repeat: { frequency: 3, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: 1 } }] }] });
    expect(fixed.statusCode, fixed.body).toBe(200);
    expect((fixed.json() as MedicationRequest).detectedIssue).toBeUndefined();
    const after = (await as(undefined, 'GET', `/fhir/DetectedIssue/${dose!.id}`)).json() as DetectedIssue;
    expect(after.status).toBe('mitigated');
    expect(after.mitigation?.at(-1)).toMatchObject({ action: { text: expect.stringMatching(/no longer arises/) }, author: { reference: `Practitioner/${doctor}` } });
  });

  it('FR-EMR-003: a duplicate active prescription of the same drug is flagged (DUPTHPY, moderate) and returned as a warning', async () => {
    const patient = await newPatient();
    const first = await create<MedicationRequest>(prescription(patient, '314076', 'lisinopril 10 MG Oral Tablet'));
    const res = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(patient, '314076', 'lisinopril 10 MG Oral Tablet'), { prefer: 'return=OperationOutcome' });
    expect(res.statusCode, res.body).toBe(201);
    const oo = res.json() as OperationOutcome;
    expect(oo.issue.find((i) => i.details?.coding?.[0]?.code === 'DUPTHPY')?.diagnostics).toContain(`MedicationRequest/${first.id}`);
    const issues = (await as(undefined, 'GET', `/fhir/DetectedIssue?patient=Patient/${patient}&code=DUPTHPY`)).json() as Bundle<DetectedIssue>;
    expect(issues.entry?.map((e) => e.resource!.severity)).toEqual(['moderate']);
    // A stopped prescription is no duplicate.
    await as(undefined, 'PUT', `/fhir/MedicationRequest/${first.id}`, { ...first, status: 'stopped' });
    const again = await as(doctorToken, 'POST', '/fhir/MedicationRequest', prescription(patient, '314076', 'lisinopril 10 MG Oral Tablet'), { prefer: 'return=representation' });
    // The second prescription is still active: the third duplicates it, not the stopped one.
    const dups = await detectedIssues(again.json() as MedicationRequest);
    expect(dups.map((d) => d.implicated?.[1]?.reference)).not.toContain(`MedicationRequest/${first.id}`);
  });

  it('FR-EMR-003: the rules hold in a transaction Bundle — a refused entry rolls back the whole Bundle; an override in an entry is recorded', async () => {
    const patient = await newPatient();
    const entry = (resource: Json, fullUrl: string) => ({ fullUrl, resource, request: { method: 'POST', url: String(resource.resourceType) } });
    const allergyEntry = entry(
      {
        resourceType: 'AllergyIntolerance',
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
        criticality: 'high',
        code: { coding: [{ system: SNOMED, code: '91936005', display: 'Allergy to penicillin' }] },
        patient: { reference: `Patient/${patient}` },
      },
      'urn:uuid:7a1d2c50-0000-4000-8000-000000000001',
    );
    const rx = prescription(patient, '834061', 'Penicillin V Potassium 250 MG Oral Tablet');
    const refused = await as(doctorToken, 'POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [allergyEntry, entry(rx, 'urn:uuid:7a1d2c50-0000-4000-8000-000000000002')] });
    expect(refused.statusCode, refused.body).toBe(409);
    expect(((await as(undefined, 'GET', `/fhir/AllergyIntolerance?patient=Patient/${patient}`)).json() as Bundle).entry ?? []).toHaveLength(0);

    const ok = await as(doctorToken, 'POST', '/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [allergyEntry, entry({ ...rx, ...override('Desensitised 2025') }, 'urn:uuid:7a1d2c50-0000-4000-8000-000000000002')],
    });
    expect(ok.statusCode, ok.body).toBe(200);
    const location = (ok.json() as Bundle).entry![1]!.response!.location!;
    const stored = (await as(undefined, 'GET', `/fhir/${location.split('/_history')[0]}`)).json() as MedicationRequest;
    const [issue] = await detectedIssues(stored);
    expect(issue!.mitigation?.[0]).toMatchObject({ author: { reference: `Practitioner/${doctor}` }, action: { text: 'Desensitised 2025' } });
  });

  it('FR-EMR-003: a write with no API caller (bulk import, MLLP feed) brings orders checked where they were written: stored as sent', async () => {
    const patient = await newPatient();
    await allergy(patient, '91936005', 'Allergy to penicillin', 'high');
    const rx = prescription(patient, '834061', 'Penicillin V Potassium 250 MG Oral Tablet') as unknown as MedicationRequest;
    const change = await t.server.store.transaction((tx) => tx.create(rx));
    const stored = JSON.parse(change.json!) as MedicationRequest;
    expect(stored.detectedIssue).toBeUndefined();
    const issues = await t.request({ method: 'GET', url: `/fhir/DetectedIssue?implicated=MedicationRequest/${stored.id}` });
    expect((issues.json() as Bundle).entry ?? []).toHaveLength(0);
  });
});

describe('refills (dispenseRequest.numberOfRepeatsAllowed, Task fulfill)', () => {
  const refill = (mr: string): Task => ({
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
    focus: { reference: `MedicationRequest/${mr}` },
  });

  it('FR-PH-002: a refill Task is accepted while repeats are left and refused with 422 beyond numberOfRepeatsAllowed', async () => {
    const patient = await newPatient();
    const mr = await create<MedicationRequest>(prescription(patient, '314076', 'lisinopril 10 MG Oral Tablet', 1, 1, { dispenseRequest: { numberOfRepeatsAllowed: 1, quantity: { value: 30 } } }));
    await create({ resourceType: 'MedicationDispense', status: 'completed', medicationCodeableConcept: mr.medicationCodeableConcept, subject: { reference: `Patient/${patient}` }, authorizingPrescription: [{ reference: `MedicationRequest/${mr.id}` }], quantity: { value: 30 } });
    const first = await as(undefined, 'POST', '/fhir/Task', refill(mr.id));
    expect(first.statusCode, first.body).toBe(201);
    const second = await as(undefined, 'POST', '/fhir/Task', refill(mr.id));
    expect(second.statusCode, second.body).toBe(422);
    expect((second.json() as OperationOutcome).issue[0]).toMatchObject({ code: 'business-rule' });
    expect((second.json() as OperationOutcome).issue[0]!.diagnostics).toMatch(/No refills left.*1 repeat allowed, 1 used/);
  });

  it('FR-PH-002: a prescription without repeats, or not active, cannot be refilled', async () => {
    const patient = await newPatient();
    const none = await create<MedicationRequest>(prescription(patient, '314076', 'lisinopril 10 MG Oral Tablet'));
    expect((await as(undefined, 'POST', '/fhir/Task', refill(none.id))).statusCode).toBe(422);
    const stopped = await create<MedicationRequest>({ ...prescription(patient, '310798', 'Hydrochlorothiazide 25 MG Oral Tablet'), status: 'stopped', dispenseRequest: { numberOfRepeatsAllowed: 3 } });
    const res = await as(undefined, 'POST', '/fhir/Task', refill(stopped.id));
    expect(res.statusCode).toBe(422);
    expect((res.json() as OperationOutcome).issue[0]!.diagnostics).toMatch(/stopped/);
  });
});
