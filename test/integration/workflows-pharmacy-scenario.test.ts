import type { DetectedIssue, Medication, MedicationDispense, MedicationRequest, Practitioner } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OVERRIDE_EXTENSION } from '../../src/workflows/prescribing.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';
import { batchesTaken, create, dispenseBody, inDays, pdfText, postDispense, read, receive, stock } from './workflows-pharmacy-helpers.js';

/**
 * From prescription to dispense (issue 13 "how it is checked"): a prescription with an allergy
 * conflict, overridden by the prescriber (issue 13 §3), then dispensed by a pharmacist across two
 * batches (FR-PH-002), with its receipt.
 */

const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
const SNOMED = 'http://snomed.info/sct';

let t: TestApp;
let doctor: string;
let pharmacist: string;
let doctorToken: string;
let pharmacistToken: string;

beforeAll(async () => {
  t = await startTestApp();
  doctor = (await create<Practitioner>(t, { resourceType: 'Practitioner', name: [{ family: 'Hoang', given: ['Duc'] }] })).id!;
  pharmacist = (await create<Practitioner>(t, { resourceType: 'Practitioner', name: [{ family: 'Ngo', given: ['Anh'] }] })).id!;
  doctorToken = (await signInAs(t, 'DOCTOR', `Practitioner/${doctor}`)).token;
  pharmacistToken = (await signInAs(t, 'PHARMACIST', `Practitioner/${pharmacist}`)).token;
}, 120_000);

afterAll(async () => {
  await t?.close();
});

describe('prescription with an allergy conflict, override, dispense across two batches', () => {
  it('FR-PM-003 / FR-PH-003 / FR-PH-002: the prescriber overrides the allergy alert; the pharmacist dispenses FIFO from two batches and prints the receipt', async () => {
    const amoxicillin = { coding: [{ system: RXNORM, code: '308182', display: 'Amoxicillin 250 MG Oral Capsule' }], text: 'Amoxicillin 250 MG Oral Capsule' };
    const product = (await create<Medication>(t, { resourceType: 'Medication', status: 'active', code: amoxicillin })).id!;
    await receive(t, product, 'AMOX-LATE', inDays(500), 20);
    await receive(t, product, 'AMOX-SOON', inDays(150), 9);
    const patient = (await create<{ id?: string }>(t, { resourceType: 'Patient', name: [{ family: 'Pham', given: ['Thu'] }], birthDate: '1980-05-01' })).id!;
    await create(t, {
      resourceType: 'AllergyIntolerance',
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code: 'confirmed' }] },
      criticality: 'high',
      code: { coding: [{ system: SNOMED, code: '91936005', display: 'Allergy to penicillin' }] },
      patient: { reference: `Patient/${patient}` },
    });
    const order = {
      resourceType: 'MedicationRequest',
      status: 'active',
      intent: 'order',
      medicationCodeableConcept: amoxicillin,
      subject: { reference: `Patient/${patient}` },
      requester: { reference: `Practitioner/${doctor}` },
      dosageInstruction: [{ text: 'One capsule three times a day', timing: { repeat: { frequency: 3, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: 1 } }] }],
      dispenseRequest: { quantity: { value: 21, unit: 'capsule' } },
    };
    const refused = await t.request({ method: 'POST', url: '/fhir/MedicationRequest', payload: order, headers: { authorization: `Bearer ${doctorToken}` } });
    expect(refused.statusCode, refused.body).toBe(409);
    const overridden = await t.request({
      method: 'POST',
      url: '/fhir/MedicationRequest',
      payload: { ...order, extension: [{ url: OVERRIDE_EXTENSION, valueString: 'Tolerated amoxicillin in 2024 under observation' }] },
      headers: { authorization: `Bearer ${doctorToken}`, prefer: 'return=representation' },
    });
    expect(overridden.statusCode, overridden.body).toBe(201);
    const request = overridden.json() as MedicationRequest;
    const issue = await read<DetectedIssue>(t, request.detectedIssue![0]!.reference!.split('/')[0]!, request.detectedIssue![0]!.reference!.split('/')[1]!);
    expect(issue.severity).toBe('high');
    expect(issue.mitigation?.[0]?.author?.reference).toBe(`Practitioner/${doctor}`);

    // The prescriber's acknowledged alert does not block the pharmacist; stock goes FIFO by expiry.
    const res = await postDispense(t, pharmacistToken, dispenseBody(patient, product, request.id, 12, { quantity: { value: 12, unit: 'capsule' } }));
    expect(res.statusCode, res.body).toBe(201);
    const dispense = res.json() as MedicationDispense;
    expect(batchesTaken(dispense).map((b) => [b.lot, b.quantity])).toEqual([
      ['AMOX-SOON', 9],
      ['AMOX-LATE', 3],
    ]);
    expect((await stock(t, product)).total).toBe(17);
    // Partial: 9 capsules are left on the prescription.
    const rest = await postDispense(t, pharmacistToken, dispenseBody(patient, product, request.id, 10, { quantity: { value: 10, unit: 'capsule' } }));
    expect(rest.statusCode).toBe(409);

    const receipt = await t.request({ method: 'GET', url: `/fhir/MedicationDispense/${dispense.id}/$receipt`, headers: { authorization: `Bearer ${pharmacistToken}` } });
    expect(receipt.statusCode).toBe(200);
    const text = pdfText(receipt.rawPayload);
    for (const expected of ['Thu Pham', 'Amoxicillin 250 MG Oral Capsule', '12 capsule', 'AMOX-SOON', 'AMOX-LATE', 'Anh Ngo']) expect(text).toContain(expected);
  });
});
