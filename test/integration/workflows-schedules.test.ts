import type { Appointment, Bundle, Communication, OperationOutcome, Parameters, PractitionerRole, Schedule, Slot, Task } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMERGENCY, localInstant, reserveIndexes, SLOT_LENGTH_URL } from '../../src/workflows/schedules.js';
import { generatedSlotId, SLOT_QUEUE } from '../../src/workflows/schedules-generate.js';
import { RESCHEDULE_TASK } from '../../src/workflows/schedules-leave.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { notificationsTo } from './notifications-helpers.js';

/**
 * Recurring schedules, the emergency reserve and leave (seed 004 FR-AS-001, issue 12 §2;
 * src/workflows/schedules*.ts): weekly availability on PractitionerRole generates Slots ahead of
 * time (job and $generate-slots, idempotent), 20 % of each day's slots are kept for
 * emergencies, and a leave blocks slots and asks for booked appointments to be rescheduled.
 */

const HORIZON = 3;
let t: TestApp;
let patient: string;

const DAY = 86_400_000;
const tomorrow = new Date(Date.now() + DAY).toISOString().slice(0, 10);
const at = (day: string, hhmm: string) => new Date(`${day}T${hhmm}:00.000Z`).toISOString();

async function create<T>(resource: { resourceType: string; [key: string]: unknown }): Promise<T> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T;
}

async function search<T>(url: string): Promise<T[]> {
  const res = await t.request({ method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.resource as T);
}

/** A practitioner with a role open every day 09:00–11:00 UTC (four 30-minute slots a day) and a Schedule of 30-minute slots. */
async function practitionerWithSchedule(family: string, actor: 'role' | 'practitioner' = 'role'): Promise<{ practitioner: string; role: PractitionerRole; schedule: string }> {
  const practitioner = (await create<{ id: string }>({ resourceType: 'Practitioner', name: [{ family }] })).id;
  const role = await create<PractitionerRole>({
    resourceType: 'PractitionerRole',
    active: true,
    practitioner: { reference: `Practitioner/${practitioner}` },
    availableTime: [{ daysOfWeek: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], availableStartTime: '09:00:00', availableEndTime: '11:00:00' }],
  });
  const schedule = await create<Schedule>({
    resourceType: 'Schedule',
    active: true,
    actor: [{ reference: actor === 'role' ? `PractitionerRole/${role.id}` : `Practitioner/${practitioner}` }],
    extension: [{ url: SLOT_LENGTH_URL, valueDuration: { value: 30, unit: 'min', system: 'http://unitsofmeasure.org', code: 'min' } }],
  });
  return { practitioner, role, schedule: schedule.id! };
}

async function generate(schedule: string): Promise<Record<string, number>> {
  const res = await t.request({ method: 'POST', url: `/fhir/Schedule/${schedule}/$generate-slots` });
  expect(res.statusCode, res.body).toBe(200);
  return Object.fromEntries(((res.json() as Parameters).parameter ?? []).map((p) => [p.name, p.valueInteger!]));
}

async function slotsOf(schedule: string): Promise<Slot[]> {
  return search<Slot>(`/fhir/Slot?schedule=Schedule/${schedule}&_count=100&_sort=start`);
}

function booking(slot: Slot, practitioner: string, emergency = false): Appointment {
  return {
    resourceType: 'Appointment',
    status: 'booked',
    start: slot.start,
    end: slot.end,
    slot: [{ reference: `Slot/${slot.id}` }],
    ...(emergency ? { appointmentType: { coding: [EMERGENCY] } } : {}),
    participant: [
      { actor: { reference: `Patient/${patient}` }, status: 'accepted' },
      { actor: { reference: `Practitioner/${practitioner}` }, status: 'accepted' },
    ],
  };
}

beforeAll(async () => {
  // Notifications on: the leave test follows APPOINTMENT_RESCHEDULE_NEEDED to the patient (in-app).
  t = await startTestApp({ SLOT_GENERATION_HORIZON_DAYS: String(HORIZON), SLOT_GENERATION_INTERVAL_MINUTES: '0', SCHEDULE_TIME_ZONE: 'UTC', NOTIFICATIONS: 'on' });
  patient = (await create<{ id: string }>({ resourceType: 'Patient', name: [{ family: 'Scheduled' }] })).id;
});

afterAll(async () => {
  await t?.close();
});

describe('FR-AS-001 recurring schedules', () => {
  it('FR-AS-001: local opening hours are read in SCHEDULE_TIME_ZONE (offsets and daylight saving)', () => {
    expect(new Date(localInstant('2026-12-05', 9 * 60, 'Asia/Ho_Chi_Minh')).toISOString()).toBe('2026-12-05T02:00:00.000Z');
    expect(new Date(localInstant('2026-03-29', 9 * 60, 'Europe/Berlin')).toISOString()).toBe('2026-03-29T07:00:00.000Z');
    expect(new Date(localInstant('2026-03-28', 9 * 60, 'Europe/Berlin')).toISOString()).toBe('2026-03-28T08:00:00.000Z');
  });

  it('FR-AS-001: $generate-slots writes the weekly pattern through the horizon, once (idempotent)', async () => {
    const { schedule } = await practitionerWithSchedule('Pattern');
    const first = await generate(schedule);
    // Today's slots that already started are not written; the next days have four each.
    expect(first.planned).toBeGreaterThanOrEqual(4 * (HORIZON - 1));
    expect(first.planned).toBeLessThanOrEqual(4 * HORIZON);
    expect(first.created).toBe(first.planned);
    expect(first.horizonDays).toBe(HORIZON);
    const slots = await slotsOf(schedule);
    expect(slots.length).toBe(first.planned);
    const ofTomorrow = slots.filter((s) => s.start!.startsWith(tomorrow));
    expect(ofTomorrow.map((s) => s.start)).toEqual(['09:00', '09:30', '10:00', '10:30'].map((h) => at(tomorrow, h)));
    expect(ofTomorrow.every((s) => s.status === 'free' && Date.parse(s.end!) - Date.parse(s.start!) === 30 * 60_000)).toBe(true);
    // Running again writes nothing.
    const again = await generate(schedule);
    expect(again).toMatchObject({ planned: first.planned, created: 0 });
    expect((await slotsOf(schedule)).length).toBe(first.planned);
  });

  it('FR-AS-001: two generations at once (two processes) write every slot once', async () => {
    const { schedule } = await practitionerWithSchedule('Racing', 'practitioner');
    const [a, b] = await Promise.all([generate(schedule), generate(schedule)]);
    expect(a.created + b.created).toBe(a.planned);
    const slots = await slotsOf(schedule);
    expect(slots.length).toBe(a.planned);
    expect(new Set(slots.map((s) => s.start)).size).toBe(slots.length);
  });

  it('FR-AS-001: the slot-generation job generates the same slots (job runner)', async () => {
    const { schedule } = await practitionerWithSchedule('Job');
    await t.server.jobs.enqueue(SLOT_QUEUE, { jobId: `schedule_${schedule}` });
    let slots: Slot[] = [];
    for (let i = 0; i < 100 && slots.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      slots = await slotsOf(schedule);
    }
    const ofTomorrow = slots.filter((s) => s.start!.startsWith(tomorrow));
    expect(ofTomorrow.length).toBe(4);
    expect(ofTomorrow[0]!.id).toBe(generatedSlotId(schedule, Date.parse(at(tomorrow, '09:00'))));
    expect((await generate(schedule)).created).toBe(0);
  });

  it('FR-AS-001: $generate-slots is declared in the CapabilityStatement; unknown Schedule 404; patient tokens 403', async () => {
    const metadata = await t.request({ method: 'GET', url: '/fhir/metadata' });
    const schedule = (metadata.json() as { rest: Array<{ resource: Array<{ type: string; operation?: Array<{ name: string }> }> }> }).rest[0]!.resource.find((r) => r.type === 'Schedule');
    expect(schedule?.operation?.map((o) => o.name)).toContain('generate-slots');
    expect((await t.request({ method: 'POST', url: '/fhir/Schedule/nope/$generate-slots' })).statusCode).toBe(404);
    const token = await t.tokenFor('system/Schedule.rs');
    const res = await t.server.http.inject({ method: 'POST', url: '/fhir/Schedule/nope/$generate-slots', headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode).toBe(403);
  });
});

describe('FR-AS-001 emergency reserve', () => {
  it('FR-AS-001: 20 % of each day (rounded up) is reserved, spread over the day', async () => {
    expect([...reserveIndexes(4, 20)]).toEqual([2]);
    expect([...reserveIndexes(10, 20)]).toEqual([2, 7]);
    expect([...reserveIndexes(16, 20)]).toEqual([2, 6, 10, 14]);
    const { schedule } = await practitionerWithSchedule('Reserve');
    const result = await generate(schedule);
    const slots = await slotsOf(schedule);
    const ofTomorrow = slots.filter((s) => s.start!.startsWith(tomorrow));
    const reserved = ofTomorrow.filter((s) => s.appointmentType?.coding?.some((c) => c.system === EMERGENCY.system && c.code === EMERGENCY.code));
    expect(reserved.map((s) => s.start)).toEqual([at(tomorrow, '10:00')]);
    expect(result.emergency).toBe(slots.filter((s) => s.appointmentType).length);
    // Ordinary front-desk lists can leave the reserve out.
    const open = await search<Slot>(`/fhir/Slot?schedule=Schedule/${schedule}&status=free&appointment-type:not=${EMERGENCY.system}|EMERGENCY&_count=100`);
    expect(open.length).toBe(slots.length - result.emergency);
  });

  it('FR-AS-001: an ordinary booking of a reserved slot is refused (409); an EMERGENCY appointment takes it', async () => {
    const { schedule, practitioner } = await practitionerWithSchedule('Emergency');
    await generate(schedule);
    const reserved = (await slotsOf(schedule)).find((s) => s.start === at(tomorrow, '10:00'))!;
    const refused = await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(reserved, practitioner) });
    expect(refused.statusCode, refused.body).toBe(409);
    const outcome = refused.json() as OperationOutcome;
    expect(outcome.issue[0]?.code).toBe('business-rule');
    expect(outcome.issue[0]?.diagnostics).toMatch(/reserved for emergencies/);
    const emergency = await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(reserved, practitioner, true) });
    expect(emergency.statusCode, emergency.body).toBe(201);
    const slot = await t.request({ method: 'GET', url: `/fhir/Slot/${reserved.id}` });
    expect((slot.json() as Slot).status).toBe('busy');
    // An ordinary slot books as before.
    const ordinary = (await slotsOf(schedule)).find((s) => s.start === at(tomorrow, '09:30'))!;
    expect((await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(ordinary, practitioner) })).statusCode).toBe(201);
  });
});

describe('FR-AS-001 emergency reserve release', () => {
  it('FR-AS-001: a reserved slot still free within SLOT_EMERGENCY_RELEASE_HOURS (default 2) of its start opens to ordinary bookings', async () => {
    const { schedule, practitioner } = await practitionerWithSchedule('Release');
    const reservedAt = async (fromNowMs: number) =>
      create<Slot>({
        resourceType: 'Slot',
        schedule: { reference: `Schedule/${schedule}` },
        status: 'free',
        appointmentType: { coding: [EMERGENCY], text: 'Reserved for emergencies' },
        start: new Date(Date.now() + fromNowMs).toISOString(),
        end: new Date(Date.now() + fromNowMs + 30 * 60_000).toISOString(),
      });
    const soon = await reservedAt(60 * 60_000);
    const later = await reservedAt(5 * 3600_000);
    const taken = await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(soon, practitioner) });
    expect(taken.statusCode, taken.body).toBe(201);
    expect(((await t.request({ method: 'GET', url: `/fhir/Slot/${soon.id}` })).json() as Slot).status).toBe('busy');
    const refused = await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(later, practitioner) });
    expect(refused.statusCode, refused.body).toBe(409);
    expect((refused.json() as OperationOutcome).issue[0]?.diagnostics).toMatch(/reserved for emergencies.*opens to all bookings at/);
  });
});

describe('FR-AS-001 leave blocks slots', () => {
  it('FR-AS-001: withdrawing a leave gives its slots back (free, or busy with the appointment kept) and cancels the reschedule Task', async () => {
    const { schedule, practitioner, role } = await practitionerWithSchedule('Withdrawn');
    await generate(schedule);
    const slots = (await slotsOf(schedule)).filter((s) => s.start!.startsWith(tomorrow));
    const booked = await create<Appointment>(booking(slots[0]!, practitioner) as unknown as { resourceType: string });
    const leave = { description: 'Course', during: { start: at(tomorrow, '09:00'), end: at(tomorrow, '10:00') } };
    const other = { description: 'Meeting', during: { start: at(tomorrow, '10:30'), end: at(tomorrow, '11:00') } };
    const blocked = await t.request({ method: 'PUT', url: `/fhir/PractitionerRole/${role.id}`, payload: { ...role, notAvailable: [leave, other] } });
    expect(blocked.statusCode, blocked.body).toBe(200);
    expect((await search<Task>(`/fhir/Task?focus=Appointment/${booked.id}&status=requested`)).length).toBe(1);
    // The course is called off; the meeting stays.
    const withdrawn = await t.request({ method: 'PUT', url: `/fhir/PractitionerRole/${role.id}`, payload: { ...(blocked.json() as PractitionerRole), notAvailable: [other] } });
    expect(withdrawn.statusCode, withdrawn.body).toBe(200);
    const byStart = new Map((await slotsOf(schedule)).map((s) => [s.start, s]));
    expect(byStart.get(at(tomorrow, '09:00'))!.status).toBe('busy');
    expect(byStart.get(at(tomorrow, '09:00'))!.comment).toBeUndefined();
    expect(byStart.get(at(tomorrow, '09:30'))!.status).toBe('free');
    expect(byStart.get(at(tomorrow, '10:30'))!.status).toBe('busy-unavailable');
    const tasks = await search<Task>(`/fhir/Task?focus=Appointment/${booked.id}`);
    expect(tasks.map((task) => task.status)).toEqual(['cancelled']);
    expect(tasks[0]!.statusReason?.text).toMatch(/withdrawn/);
    // The freed slot books again; the kept appointment still holds its own.
    expect((await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(byStart.get(at(tomorrow, '09:30'))!, practitioner) })).statusCode).toBe(201);
    expect((await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(byStart.get(at(tomorrow, '09:00'))!, practitioner) })).statusCode).toBe(409);
  });


  it('FR-AS-001: a leave (PractitionerRole.notAvailable) blocks its slots and asks for booked appointments to be rescheduled', async () => {
    const { schedule, practitioner, role } = await practitionerWithSchedule('Leave');
    await generate(schedule);
    const slots = (await slotsOf(schedule)).filter((s) => s.start!.startsWith(tomorrow));
    const booked = await create<Appointment>(booking(slots[0]!, practitioner) as unknown as { resourceType: string });
    const leave = { description: 'Conference', during: { start: at(tomorrow, '09:00'), end: at(tomorrow, '10:00') } };
    const res = await t.request({ method: 'PUT', url: `/fhir/PractitionerRole/${role.id}`, payload: { ...role, notAvailable: [leave] } });
    expect(res.statusCode, res.body).toBe(200);
    const after = await slotsOf(schedule);
    const byStart = new Map(after.map((s) => [s.start, s]));
    expect(byStart.get(at(tomorrow, '09:00'))!.status).toBe('busy-unavailable');
    expect(byStart.get(at(tomorrow, '09:30'))!.status).toBe('busy-unavailable');
    expect(byStart.get(at(tomorrow, '09:30'))!.comment).toMatch(/leave.*Conference/);
    expect(byStart.get(at(tomorrow, '10:30'))!.status).toBe('free');
    // The booked appointment is listed for the front desk, once.
    const tasks = await search<Task>(`/fhir/Task?focus=Appointment/${booked.id}&code=${RESCHEDULE_TASK.system}|${RESCHEDULE_TASK.code}&status=requested`);
    expect(tasks.length).toBe(1);
    expect(tasks[0]!.for?.reference).toBe(`Patient/${patient}`);
    expect(tasks[0]!.description).toMatch(/Conference/);
    // …and the patient is told (APPOINTMENT_RESCHEDULE_NEEDED through the notification machinery).
    // (The patient is shared by this file's tests: other leaves told them about other Tasks.)
    const aboutThisTask = (c: Communication) => new RegExp(`^Task/${tasks[0]!.id}/_history/`).test(c.about?.[0]?.reference ?? '');
    let told: Communication[] = [];
    for (let i = 0; i < 100 && told.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      told = (await notificationsTo(t, `Patient/${patient}`, 'APPOINTMENT_RESCHEDULE_NEEDED_PATIENT')).filter(aboutThisTask);
    }
    expect(told.length).toBeGreaterThan(0);
    // A blocked slot cannot be booked.
    const refused = await t.request({ method: 'POST', url: '/fhir/Appointment', payload: booking(byStart.get(at(tomorrow, '09:30'))!, practitioner) });
    expect(refused.statusCode, refused.body).toBe(409);
    // Writing the role again (same leave) asks nothing twice.
    const stored = (await t.request({ method: 'GET', url: `/fhir/PractitionerRole/${role.id}` })).json() as PractitionerRole;
    expect((await t.request({ method: 'PUT', url: `/fhir/PractitionerRole/${role.id}`, payload: { ...stored, active: true } })).statusCode).toBe(200);
    expect((await search<Task>(`/fhir/Task?focus=Appointment/${booked.id}`)).length).toBe(1);
  });

  it('FR-AS-001: slots are not generated during a recorded leave', async () => {
    const { schedule, role } = await practitionerWithSchedule('Away');
    const leave = { description: 'Holiday', during: { start: at(tomorrow, '00:00'), end: at(tomorrow, '23:59') } };
    expect((await t.request({ method: 'PUT', url: `/fhir/PractitionerRole/${role.id}`, payload: { ...role, notAvailable: [leave] } })).statusCode).toBe(200);
    await generate(schedule);
    const slots = await slotsOf(schedule);
    expect(slots.filter((s) => s.start!.startsWith(tomorrow)).length).toBe(0);
    expect(slots.length).toBeGreaterThan(0);
  });
});
