import type { Appointment, Bundle, Encounter, EpisodeOfCare, Location, OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BED_STATUS_SYSTEM, PHYSICAL_TYPE_SYSTEM } from '../../src/workflows/inpatient.js';
import { DISCHARGE_MEDICATIONS } from '../../src/workflows/inpatient-discharge.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * The rest of an inpatient stay (seed 004 FR-IP-002 / FR-IP-003, issue 12 §4;
 * src/workflows/inpatient-discharge.ts): admission links an EpisodeOfCare, discharge needs the
 * discharge medication list and proposes a follow-up appointment.
 */

const FOLLOW_UP_DAYS = 10;
const DAY = 86_400_000;
let t: TestApp;
let ward: string;
let doctor: string;

async function create<T>(resource: { resourceType: string; [key: string]: unknown }): Promise<T> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T;
}

async function read<T>(reference: string): Promise<T> {
  const res = await t.request({ method: 'GET', url: `/fhir/${reference}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

async function newPatient(family: string): Promise<string> {
  return (await create<{ id: string }>({ resourceType: 'Patient', name: [{ family }] })).id;
}

async function newBed(name: string): Promise<string> {
  const bed = await create<Location>({
    resourceType: 'Location',
    status: 'active',
    name,
    physicalType: { coding: [{ system: PHYSICAL_TYPE_SYSTEM, code: 'bd' }] },
    partOf: { reference: `Location/${ward}` },
    operationalStatus: { system: BED_STATUS_SYSTEM, code: 'U' },
  });
  return bed.id!;
}

async function admit(patient: string, bed: string): Promise<Encounter> {
  return create<Encounter>({
    resourceType: 'Encounter',
    status: 'in-progress',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
    subject: { reference: `Patient/${patient}` },
    participant: [
      { individual: { reference: `Practitioner/${doctor}` }, type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'ATND' }] }] },
    ],
    period: { start: new Date().toISOString() },
    location: [{ location: { reference: `Location/${bed}` }, status: 'active' }],
  });
}

async function dischargeSummary(patient: string, encounter: string): Promise<void> {
  await create({
    resourceType: 'Composition',
    status: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '18842-5' }] },
    subject: { reference: `Patient/${patient}` },
    encounter: { reference: `Encounter/${encounter}` },
    date: new Date().toISOString(),
    author: [{ reference: `Practitioner/${doctor}` }],
    title: 'Discharge summary',
  });
}

async function discharge(encounter: Encounter): Promise<{ statusCode: number; body: string; json(): unknown }> {
  const current = await read<Encounter>(`Encounter/${encounter.id}`);
  return t.request({ method: 'PUT', url: `/fhir/Encounter/${encounter.id}`, payload: { ...current, status: 'finished', period: { ...current.period, end: new Date().toISOString() } } });
}

async function search<T>(url: string): Promise<T[]> {
  const res = await t.request({ method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.resource as T);
}

beforeAll(async () => {
  t = await startTestApp({ DISCHARGE_FOLLOW_UP_DAYS: String(FOLLOW_UP_DAYS) });
  ward = (await create<Location>({ resourceType: 'Location', status: 'active', name: 'Ward S', physicalType: { coding: [{ system: PHYSICAL_TYPE_SYSTEM, code: 'wa' }] } })).id!;
  doctor = (await create<{ id: string }>({ resourceType: 'Practitioner', name: [{ family: 'Attending' }] })).id;
});

afterAll(async () => {
  await t?.close();
});

describe('FR-IP-002 / FR-IP-003 inpatient stay', () => {
  it('FR-IP-002: admission links the patient\'s inpatient EpisodeOfCare, created once and reused', async () => {
    const patient = await newPatient('Episode');
    const first = await admit(patient, await newBed('S1'));
    expect(first.episodeOfCare?.length).toBe(1);
    const episode = await read<EpisodeOfCare>(first.episodeOfCare![0]!.reference!);
    expect(episode.status).toBe('active');
    expect(episode.patient.reference).toBe(`Patient/${patient}`);
    // A second admission while the stay is open (another bed) joins the same episode.
    const second = await admit(patient, await newBed('S2'));
    expect(second.episodeOfCare?.[0]?.reference).toBe(first.episodeOfCare![0]!.reference);
    expect((await search<EpisodeOfCare>(`/fhir/EpisodeOfCare?patient=Patient/${patient}`)).length).toBe(1);
  });

  it('FR-IP-003: discharge without the discharge medication list is refused (422); with it the stay ends and a follow-up is proposed', async () => {
    const patient = await newPatient('Discharged');
    const bed = await newBed('S3');
    const stay = await admit(patient, bed);
    await dischargeSummary(patient, stay.id!);
    const refused = await discharge(stay);
    expect(refused.statusCode, refused.body).toBe(422);
    const outcome = refused.json() as OperationOutcome;
    expect(outcome.issue[0]?.code).toBe('business-rule');
    expect(outcome.issue[0]?.diagnostics).toMatch(/discharge medication list/);
    expect((await read<Location>(`Location/${bed}`)).operationalStatus?.code).toBe('O');
    expect(await search<Appointment>(`/fhir/Appointment?patient=Patient/${patient}`)).toEqual([]);

    await create({
      resourceType: 'List',
      status: 'current',
      mode: 'snapshot',
      code: { coding: [DISCHARGE_MEDICATIONS] },
      subject: { reference: `Patient/${patient}` },
      encounter: { reference: `Encounter/${stay.id}` },
      entry: [{ item: { display: 'Metoprolol 50 mg twice daily' } }],
    });
    const done = await discharge(stay);
    expect(done.statusCode, done.body).toBe(200);
    expect((await read<Location>(`Location/${bed}`)).operationalStatus?.code).toBe('U');

    const followUps = await search<Appointment>(`/fhir/Appointment?patient=Patient/${patient}`);
    expect(followUps.length).toBe(1);
    const followUp = followUps[0]!;
    expect(followUp.status).toBe('proposed');
    expect(followUp.appointmentType?.coding?.[0]?.code).toBe('FOLLOWUP');
    expect(followUp.participant.map((p) => p.actor?.reference).sort()).toEqual([`Patient/${patient}`, `Practitioner/${doctor}`].sort());
    expect(followUp.supportingInformation?.[0]?.reference).toBe(`Encounter/${stay.id}`);
    const due = Date.parse(followUp.requestedPeriod![0]!.start!) - Date.now();
    expect(Math.abs(due - FOLLOW_UP_DAYS * DAY)).toBeLessThan(DAY);
    // The stay's episode is over.
    expect((await read<EpisodeOfCare>(stay.episodeOfCare![0]!.reference!)).status).toBe('finished');
    // A new admission opens a new episode.
    const again = await admit(patient, await newBed('S4'));
    expect(again.episodeOfCare?.[0]?.reference).not.toBe(stay.episodeOfCare![0]!.reference);
  });

  it('FR-IP-003: a MedicationStatement of the encounter categorised 10183-2 counts as the discharge medication list', async () => {
    const patient = await newPatient('Statement');
    const stay = await admit(patient, await newBed('S5'));
    await dischargeSummary(patient, stay.id!);
    await create({
      resourceType: 'MedicationStatement',
      status: 'intended',
      category: { coding: [DISCHARGE_MEDICATIONS] },
      medicationCodeableConcept: { text: 'Paracetamol 500 mg as needed' },
      subject: { reference: `Patient/${patient}` },
      context: { reference: `Encounter/${stay.id}` },
    });
    const done = await discharge(stay);
    expect(done.statusCode, done.body).toBe(200);
    expect((await search<Appointment>(`/fhir/Appointment?patient=Patient/${patient}&status=proposed`)).length).toBe(1);
  });
});
