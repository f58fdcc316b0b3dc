import type { FhirResource, Appointment, Bundle, Flag, OperationOutcome, Slot } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_SHOW_FLAG } from '../../src/workflows/scheduling.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Booking rules (seed 004 FR-AS-001 / FR-AS-002, issue 12 §3; src/workflows/scheduling.ts):
 * slots taken and freed in the booking's transaction, one winner among concurrent bookings,
 * the 24-hour cancel / reschedule window, the appointment life cycle and the no-show flag.
 */

let t: TestApp;
let doctor: string;
let otherDoctor: string;
let patient: string;
let schedule: string;

const HOUR = 3600_000;
const at = (hoursFromNow: number) => new Date(Math.floor((Date.now() + hoursFromNow * HOUR) / 60_000) * 60_000).toISOString();

async function create<T extends { id?: string }>(resource: { resourceType: string; [key: string]: unknown } | FhirResource): Promise<T> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T;
}

async function read<T>(type: string, id: string): Promise<T> {
  const res = await t.request({ method: 'GET', url: `/fhir/${type}/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

async function newSlot(hoursFromNow: number, scheduleId = schedule, status: Slot['status'] = 'free'): Promise<string> {
  const slot = await create<Slot>({ resourceType: 'Slot', schedule: { reference: `Schedule/${scheduleId}` }, status, start: at(hoursFromNow), end: at(hoursFromNow + 0.5) });
  return slot.id!;
}

function appointment(slotId: string | undefined, hoursFromNow: number, status: Appointment['status'] = 'booked', patientId = patient): Appointment {
  return {
    resourceType: 'Appointment',
    status,
    start: at(hoursFromNow),
    end: at(hoursFromNow + 0.5),
    ...(slotId ? { slot: [{ reference: `Slot/${slotId}` }] } : {}),
    participant: [
      { actor: { reference: `Patient/${patientId}` }, status: 'accepted' },
      { actor: { reference: `Practitioner/${doctor}` }, status: 'accepted' },
    ],
  };
}

function expectBusinessRule(res: { statusCode: number; body: string }, status: number, text: RegExp): void {
  expect(res.statusCode, res.body).toBe(status);
  const outcome = JSON.parse(res.body) as OperationOutcome;
  expect(outcome.resourceType).toBe('OperationOutcome');
  expect(outcome.issue[0]?.code).toBe('business-rule');
  expect(outcome.issue[0]?.diagnostics).toMatch(text);
}

async function put(resource: Appointment): Promise<{ statusCode: number; body: string }> {
  return t.request({ method: 'PUT', url: `/fhir/Appointment/${resource.id}`, payload: resource });
}

async function slotStatus(id: string): Promise<string> {
  return (await read<Slot>('Slot', id)).status;
}

async function ids(url: string): Promise<string[]> {
  const res = await t.request({ method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.resource!.id!).sort();
}

beforeAll(async () => {
  t = await startTestApp();
  doctor = (await create({ resourceType: 'Practitioner', name: [{ family: 'Booker' }] })).id!;
  otherDoctor = (await create({ resourceType: 'Practitioner', name: [{ family: 'Other' }] })).id!;
  patient = (await create({ resourceType: 'Patient', name: [{ family: 'Waiting' }] })).id!;
  schedule = (await create({ resourceType: 'Schedule', active: true, actor: [{ reference: `Practitioner/${doctor}` }] })).id!;
});
afterAll(async () => {
  await t?.close();
});

describe('booking (FR-AS-001, FR-AS-002)', () => {
  it('FR-AS-002 only free slots are offered: Slot?status=free&schedule.actor=Practitioner/x', async () => {
    const otherSchedule = (await create({ resourceType: 'Schedule', active: true, actor: [{ reference: `Practitioner/${otherDoctor}` }] })).id!;
    const free1 = await newSlot(50);
    const free2 = await newSlot(51);
    await newSlot(52, schedule, 'busy-unavailable');
    await newSlot(53, otherSchedule);
    const offered = await ids(`/fhir/Slot?status=free&schedule.actor=Practitioner/${doctor}&_count=100`);
    expect(offered).toEqual(expect.arrayContaining([free1, free2]));
    for (const id of offered) {
      const slot = await read<Slot>('Slot', id);
      expect(slot.status).toBe('free');
      expect(slot.schedule.reference).toBe(`Schedule/${schedule}`);
    }
    await create(appointment(free1, 50));
    const after = await ids(`/fhir/Slot?status=free&schedule.actor=Practitioner/${doctor}&_count=100`);
    expect(after).not.toContain(free1);
    expect(after).toContain(free2);
  });

  it('FR-AS-002 booking an Appointment marks its Slot busy in the same transaction', async () => {
    const slot = await newSlot(60);
    const booked = await create<Appointment>(appointment(slot, 60));
    expect(booked.status).toBe('booked');
    expect(await slotStatus(slot)).toBe('busy');
  });

  it('FR-AS-001 a busy slot cannot be booked again: 409 business-rule, nothing written', async () => {
    const slot = await newSlot(61);
    await create(appointment(slot, 61));
    const second = await t.request({ method: 'POST', url: '/fhir/Appointment', payload: appointment(slot, 61) });
    expectBusinessRule(second, 409, /already booked/);
    expect(await ids(`/fhir/Appointment?slot=Slot/${slot}`)).toHaveLength(1);
    const blocked = await newSlot(62, schedule, 'busy-unavailable');
    expectBusinessRule(await t.request({ method: 'POST', url: '/fhir/Appointment', payload: appointment(blocked, 62) }), 409, /not available/);
  });

  it('FR-AS-002 a transaction Bundle that books a busy slot is refused whole (nothing half-written)', async () => {
    const slot = await newSlot(63);
    await create(appointment(slot, 63));
    const family = `Rollback${Date.now()}`;
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:9a0c0000-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: appointment(slot, 63, 'booked', patient), request: { method: 'POST', url: 'Appointment' } },
      ],
    };
    const res = await t.request({ method: 'POST', url: '/fhir', payload: bundle });
    expectBusinessRule(res, 409, /already booked/);
    expect(await ids(`/fhir/Patient?family=${family}`)).toEqual([]);
    expect(await ids(`/fhir/Appointment?slot=Slot/${slot}`)).toHaveLength(1);
  });

  it('FR-AS-002 20 concurrent bookings of one slot: exactly one 201, the others 409', async () => {
    const slot = await newSlot(70);
    const results = await Promise.all(Array.from({ length: 20 }, () => t.request({ method: 'POST', url: '/fhir/Appointment', payload: appointment(slot, 70) })));
    const statuses = results.map((r) => r.statusCode).sort();
    expect(statuses.filter((s) => s === 201), JSON.stringify(results.filter((r) => r.statusCode !== 201 && r.statusCode !== 409).map((r) => r.body))).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    for (const r of results.filter((x) => x.statusCode === 409)) expect((JSON.parse(r.body) as OperationOutcome).issue[0]?.code).toBe('business-rule');
    expect(await ids(`/fhir/Appointment?slot=Slot/${slot}`)).toHaveLength(1);
    expect(await slotStatus(slot)).toBe('busy');
  });

  it('FR-AS-002 cancelling more than 24 h ahead frees the slot, which can then be booked again', async () => {
    const slot = await newSlot(72);
    const booked = await create<Appointment>(appointment(slot, 72));
    const cancelled = await put({ ...booked, status: 'cancelled' });
    expect(cancelled.statusCode, cancelled.body).toBe(200);
    expect(await slotStatus(slot)).toBe('free');
    await create(appointment(slot, 72));
    expect(await slotStatus(slot)).toBe('busy');
  });

  it('FR-AS-002 rescheduling more than 24 h ahead frees the old slot and takes the new one', async () => {
    const first = await newSlot(80);
    const second = await newSlot(81);
    const booked = await create<Appointment>(appointment(first, 80));
    const moved = await put({ ...booked, slot: [{ reference: `Slot/${second}` }], start: at(81), end: at(81.5) });
    expect(moved.statusCode, moved.body).toBe(200);
    expect(await slotStatus(first)).toBe('free');
    expect(await slotStatus(second)).toBe('busy');
    const taken = await newSlot(82);
    await create(appointment(taken, 82));
    const booked2 = await create<Appointment>(appointment(await newSlot(83), 83));
    expectBusinessRule(await put({ ...booked2, slot: [{ reference: `Slot/${taken}` }], start: at(82), end: at(82.5) }), 409, /already booked/);
  });

  it('FR-AS-002 cancel and reschedule are refused less than 24 h before the start; the slot stays booked', async () => {
    const slot = await newSlot(2);
    const booked = await create<Appointment>(appointment(slot, 2));
    expectBusinessRule(await put({ ...booked, status: 'cancelled' }), 409, /can no longer be cancelled.*24 hours/);
    const later = await newSlot(90);
    expectBusinessRule(await put({ ...booked, slot: [{ reference: `Slot/${later}` }], start: at(90), end: at(90.5) }), 409, /can no longer be rescheduled/);
    expect(await slotStatus(slot)).toBe('busy');
    expect(await slotStatus(later)).toBe('free');
    expect((await read<Appointment>('Appointment', booked.id!)).status).toBe('booked');
    // Not a booking of this server's slots (another system's appointment, e.g. HL7 v2 SIU): its source decides.
    const external = await create<Appointment>(appointment(undefined, 2));
    expect((await put({ ...external, status: 'cancelled' })).statusCode).toBe(200);
    expect((await put({ ...external, status: 'booked' })).statusCode).toBe(200);
  });

  it('FR-AS-002 same-day booking is allowed', async () => {
    const slot = await newSlot(1);
    await create(appointment(slot, 1));
    expect(await slotStatus(slot)).toBe('busy');
  });

  it('FR-AS-002 check-in, arrived, fulfilled follow the life cycle; a closed appointment cannot be reopened', async () => {
    const slot = await newSlot(-1);
    let current = await create<Appointment>(appointment(slot, -1));
    for (const status of ['checked-in', 'arrived', 'fulfilled'] as const) {
      const res = await put({ ...current, status });
      expect(res.statusCode, res.body).toBe(200);
      current = JSON.parse(res.body) as Appointment;
    }
    expect(await slotStatus(slot)).toBe('busy');
    expectBusinessRule(await put({ ...current, status: 'booked' }), 409, /fulfilled; it cannot be changed to booked/);
  });

  it('FR-AS-002 a no-show is recorded only after the start', async () => {
    const upcoming = await create<Appointment>(appointment(await newSlot(30), 30));
    expectBusinessRule(await put({ ...upcoming, status: 'noshow' }), 409, /only once the appointment has started/);
  });

  it('FR-AS-002 three consecutive no-shows flag the patient (one Flag), a kept appointment in between does not', async () => {
    const flagged = (await create({ resourceType: 'Patient', name: [{ family: 'Absent' }] })).id!;
    const kept = (await create({ resourceType: 'Patient', name: [{ family: 'Sometimes' }] })).id!;
    const flags = async (p: string) =>
      ((await t.request({ method: 'GET', url: `/fhir/Flag?subject=Patient/${p}` })).json() as Bundle).entry?.map((e) => e.resource as Flag) ?? [];
    const past = async (p: string, hoursAgo: number, outcome: Appointment['status']) => {
      const a = await create<Appointment>(appointment(await newSlot(-hoursAgo), -hoursAgo, 'booked', p));
      const res = await put({ ...a, status: outcome });
      expect(res.statusCode, res.body).toBe(200);
    };
    await past(flagged, 72, 'noshow');
    await past(flagged, 48, 'noshow');
    expect(await flags(flagged)).toEqual([]);
    await past(flagged, 24, 'noshow');
    const raised = await flags(flagged);
    expect(raised).toHaveLength(1);
    expect(raised[0]!.status).toBe('active');
    expect(raised[0]!.code.coding?.[0]).toMatchObject({ system: NO_SHOW_FLAG.system, code: NO_SHOW_FLAG.code });
    await past(flagged, 12, 'noshow');
    expect(await flags(flagged)).toHaveLength(1);

    await past(kept, 72, 'noshow');
    await past(kept, 48, 'fulfilled');
    await past(kept, 24, 'noshow');
    await past(kept, 12, 'noshow');
    expect(await flags(kept)).toEqual([]);
  });

  it('FR-AS-002 external data: appointments without a slot or naming an unknown slot are stored as sent', async () => {
    const noSlot = await create<Appointment>(appointment(undefined, 5));
    expect(noSlot.slot).toBeUndefined();
    const unknown = await create<Appointment>({ ...appointment(undefined, 5), slot: [{ reference: 'Slot/not-here' }] });
    expect(unknown.slot?.[0]?.reference).toBe('Slot/not-here');
    const history = await create<Appointment>({ ...appointment(await newSlot(-200), -200), status: 'cancelled' });
    expect(history.status).toBe('cancelled');
  });

  it('FR-AS-001 a booked slot cannot be freed or deleted behind its appointment (409); an unbooked busy slot can', async () => {
    const slot = await newSlot(110);
    const booked = await create<Appointment>(appointment(slot, 110));
    const current = await read<Slot>('Slot', slot);
    expectBusinessRule(await t.request({ method: 'PUT', url: `/fhir/Slot/${slot}`, payload: { ...current, status: 'free' } }), 409, new RegExp(`booked by Appointment/${booked.id}`));
    expectBusinessRule(await t.request({ method: 'DELETE', url: `/fhir/Slot/${slot}` }), 409, /cancel or reschedule/);
    expect(await slotStatus(slot)).toBe('busy');
    const loose = await newSlot(111, schedule, 'busy');
    const res = await t.request({ method: 'PUT', url: `/fhir/Slot/${loose}`, payload: { ...(await read<Slot>('Slot', loose)), status: 'free' } });
    expect(res.statusCode, res.body).toBe(200);
  });

  it('FR-AS-002 deleting a booked appointment frees its slot', async () => {
    const slot = await newSlot(100);
    const booked = await create<Appointment>(appointment(slot, 100));
    expect(await slotStatus(slot)).toBe('busy');
    const res = await t.request({ method: 'DELETE', url: `/fhir/Appointment/${booked.id}` });
    expect([200, 204]).toContain(res.statusCode);
    expect(await slotStatus(slot)).toBe('free');
  });
});
