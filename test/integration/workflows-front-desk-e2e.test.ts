import type { Appointment, Bundle, Encounter, FhirResource, Location, Parameters, Patient, Slot } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 12 "How it is checked": registration to discharge through the REST API only, as a
 * front-desk app runs it (seed 004 FR-PM-001, FR-AS-002, FR-IP-001..003).
 */

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

const PHYSICAL = 'http://terminology.hl7.org/CodeSystem/location-physical-type';

async function send<T>(method: 'POST' | 'PUT' | 'GET', url: string, payload?: unknown, expected = method === 'POST' && !url.includes('$') ? 201 : 200): Promise<T> {
  const res = await t.request({ method, url, ...(payload ? { payload: payload as FhirResource } : {}) });
  expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(expected);
  return res.json() as T;
}

describe('front desk end to end (REST only)', () => {
  it('FR-PM-001 FR-AS-002 FR-IP-002 FR-IP-003 registration, booking, visit, admission, transfer, discharge', async () => {
    // Registration: the server numbers the patient; $match finds them again.
    const patient = await send<Patient>('POST', '/fhir/Patient', {
      resourceType: 'Patient',
      identifier: [{ system: 'https://fhir.hospital.example.org/sid/patient-number' }, { system: 'https://fhir.hospital.example.org/sid/national-id', value: `E2E-${Date.now()}` }],
      name: [{ family: 'Fernández', given: ['Lucía'] }],
      gender: 'female',
      birthDate: '1975-06-15',
      telecom: [{ system: 'phone', value: '+34 600 111 222' }],
    });
    expect(patient.identifier?.[0]?.value).toMatch(/^PT-\d{8}-\d{4}$/);
    const match = await send<Bundle>('POST', '/fhir/Patient/$match', {
      resourceType: 'Parameters',
      parameter: [{ name: 'resource', resource: { resourceType: 'Patient', name: [{ family: 'Fernandez', given: ['Lucia'] }], birthDate: '1975-06-15', telecom: [{ system: 'phone', value: '600111222' }] } }],
    });
    expect(match.entry?.[0]?.resource?.id).toBe(patient.id);

    // Booking: the free slot is offered, booked, no longer offered.
    const doctor = await send<{ id: string }>('POST', '/fhir/Practitioner', { resourceType: 'Practitioner', name: [{ family: 'García' }] });
    const schedule = await send<{ id: string }>('POST', '/fhir/Schedule', { resourceType: 'Schedule', actor: [{ reference: `Practitioner/${doctor.id}` }] });
    const start = new Date(Date.now() + 3 * 3600_000).toISOString();
    const end = new Date(Date.now() + 3.5 * 3600_000).toISOString();
    const slot = await send<Slot>('POST', '/fhir/Slot', { resourceType: 'Slot', schedule: { reference: `Schedule/${schedule.id}` }, status: 'free', start, end });
    const offered = await send<Bundle>('GET', `/fhir/Slot?status=free&schedule.actor=Practitioner/${doctor.id}`);
    expect(offered.entry?.map((e) => e.resource?.id)).toEqual([slot.id]);
    let visit = await send<Appointment>('POST', '/fhir/Appointment', {
      resourceType: 'Appointment',
      status: 'booked',
      start,
      end,
      slot: [{ reference: `Slot/${slot.id}` }],
      participant: [
        { actor: { reference: `Patient/${patient.id}` }, status: 'accepted' },
        { actor: { reference: `Practitioner/${doctor.id}` }, status: 'accepted' },
      ],
    });
    expect((await send<Bundle>('GET', `/fhir/Slot?status=free&schedule.actor=Practitioner/${doctor.id}`)).entry ?? []).toEqual([]);
    // Same day: too late to cancel, the visit happens.
    expect((await t.request({ method: 'PUT', url: `/fhir/Appointment/${visit.id}`, payload: { ...visit, status: 'cancelled' } })).statusCode).toBe(409);
    for (const status of ['checked-in', 'arrived', 'fulfilled'] as const) visit = await send<Appointment>('PUT', `/fhir/Appointment/${visit.id}`, { ...visit, status });

    // Admission to a ward: the server allocates the bed.
    const ward = await send<Location>('POST', '/fhir/Location', { resourceType: 'Location', status: 'active', name: 'Cardiology', physicalType: { coding: [{ system: PHYSICAL, code: 'wa' }] } });
    const bedOf = (name: string) =>
      send<Location>('POST', '/fhir/Location', { resourceType: 'Location', status: 'active', name, physicalType: { coding: [{ system: PHYSICAL, code: 'bd' }] }, partOf: { reference: `Location/${ward.id}` } });
    const bed1 = await bedOf('C-01');
    const bed2 = await bedOf('C-02');
    let stay = await send<Encounter>('POST', '/fhir/Encounter', {
      resourceType: 'Encounter',
      status: 'in-progress',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
      subject: { reference: `Patient/${patient.id}` },
      location: [{ location: { reference: `Location/${ward.id}` }, status: 'active' }],
    });
    expect(stay.location?.map((l) => l.location.reference)).toEqual([`Location/${ward.id}`, `Location/${bed1.id}`]);
    const occupancy = async () => (await send<Parameters>('GET', `/fhir/Location/${ward.id}/$occupancy`)).parameter?.find((p) => p.name === 'occupied')?.valueInteger;
    expect(await occupancy()).toBe(1);

    // Transfer to the other bed.
    stay = await send<Encounter>('PUT', `/fhir/Encounter/${stay.id}`, {
      ...stay,
      location: [stay.location![0]!, { location: { reference: `Location/${bed2.id}` }, status: 'active' }],
    });
    expect(stay.location?.find((l) => l.location.reference === `Location/${bed1.id}`)?.status).toBe('completed');
    expect((await send<Location>('GET', `/fhir/Location/${bed1.id}`)).operationalStatus?.code).toBe('U');
    expect((await send<Location>('GET', `/fhir/Location/${bed2.id}`)).operationalStatus?.code).toBe('O');

    // Discharge: refused without the summary, then done; the bed is free again.
    expect((await t.request({ method: 'PUT', url: `/fhir/Encounter/${stay.id}`, payload: { ...stay, status: 'finished' } })).statusCode).toBe(422);
    await send('POST', '/fhir/Composition', {
      resourceType: 'Composition',
      status: 'final',
      type: { coding: [{ system: 'http://loinc.org', code: '18842-5' }] },
      subject: { reference: `Patient/${patient.id}` },
      encounter: { reference: `Encounter/${stay.id}` },
      date: new Date().toISOString(),
      author: [{ reference: `Practitioner/${doctor.id}` }],
      title: 'Discharge summary',
    });
    await send('POST', '/fhir/List', {
      resourceType: 'List',
      status: 'current',
      mode: 'snapshot',
      code: { coding: [{ system: 'http://loinc.org', code: '10183-2', display: 'Hospital discharge medications' }] },
      subject: { reference: `Patient/${patient.id}` },
      encounter: { reference: `Encounter/${stay.id}` },
      entry: [{ item: { display: 'Aspirin 81 mg daily' } }],
    });
    stay = await send<Encounter>('PUT', `/fhir/Encounter/${stay.id}`, { ...stay, status: 'finished' });
    expect(stay.location?.every((l) => l.location.reference === `Location/${ward.id}` || l.status === 'completed')).toBe(true);
    expect(await occupancy()).toBe(0);
    // FR-IP-003: the follow-up visit is proposed for the front desk to book.
    const followUps = (await send<Bundle>('GET', `/fhir/Appointment?patient=Patient/${patient.id}&status=proposed`)).entry ?? [];
    expect(followUps.length).toBe(1);
  });
});
