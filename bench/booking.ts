import type { Bundle } from 'fhir/r4.js';
import type { ServerApp } from '../src/app.js';
import { compare, measure, type Comparison } from './harness.js';

/**
 * Booking under contention (issue 12 §3, seed 004 FR-AS-002): `contenders` callers at a time
 * POST an Appointment for the same free Slot, slot after slot — one booking wins (201, the
 * Slot marked busy in its transaction), the others get 409. Compared with the same number of
 * uncontended bookings (one per slot) and with plain Appointment creates without a slot (no
 * rule runs), all through fastify inject in the same run.
 */
export interface BookingBenchReport {
  slots: number;
  contenders: number;
  /** Successful bookings per second while `contenders` callers race for each slot. */
  bookingsPerSecond: number;
  /** Booking attempts (201 + 409) per second under contention. */
  attemptsPerSecond: number;
  comparisons: Comparison[];
}

async function createSlots(app: ServerApp, headers: Record<string, string>, schedule: string, count: number, offsetHours: number): Promise<string[]> {
  const entry = Array.from({ length: count }, (_, i) => {
    const start = new Date(Date.now() + (offsetHours + i) * 3600_000).toISOString();
    const end = new Date(Date.parse(start) + 1800_000).toISOString();
    return { resource: { resourceType: 'Slot', schedule: { reference: `Schedule/${schedule}` }, status: 'free', start, end }, request: { method: 'POST', url: 'Slot' } };
  });
  const res = await app.http.inject({ method: 'POST', url: '/fhir', headers: { ...headers, 'content-type': 'application/fhir+json' }, payload: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }) });
  if (res.statusCode !== 200) throw new Error(`slots not created: ${res.statusCode} ${res.body.slice(0, 300)}`);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.response!.location!.split('/')[1]!);
}

export async function benchBooking(o: { app: ServerApp; token: string; slots: number; contenders: number }): Promise<BookingBenchReport> {
  const headers = { authorization: `Bearer ${o.token}` };
  const post = (type: string, body: unknown) =>
    o.app.http.inject({ method: 'POST', url: `/fhir/${type}`, headers: { ...headers, 'content-type': 'application/fhir+json' }, payload: JSON.stringify(body) });
  const practitioner = (await post('Practitioner', { resourceType: 'Practitioner', name: [{ family: 'Bench' }] })).json() as { id: string };
  const patient = (await post('Patient', { resourceType: 'Patient', name: [{ family: 'Bench' }] })).json() as { id: string };
  const schedule = (await post('Schedule', { resourceType: 'Schedule', actor: [{ reference: `Practitioner/${practitioner.id}` }] })).json() as { id: string };
  const appointment = (slot: string | undefined, i: number) => {
    const start = new Date(Date.now() + (48 + i) * 3600_000).toISOString();
    return {
      resourceType: 'Appointment',
      status: 'booked',
      start,
      end: new Date(Date.parse(start) + 1800_000).toISOString(),
      ...(slot ? { slot: [{ reference: `Slot/${slot}` }] } : {}),
      participant: [{ actor: { reference: `Patient/${patient.id}` }, status: 'accepted' }],
    };
  };
  const contended = await createSlots(o.app, headers, schedule.id, o.slots, 48);
  const single = await createSlots(o.app, headers, schedule.id, o.slots * o.contenders, 48 + o.slots);
  let won = 0;
  let refused = 0;
  // Callers work through the slots in order: at any time about `contenders` of them race for one slot.
  const race = await measure('booking, contended', o.slots * o.contenders, o.contenders, async (i) => {
    const res = await post('Appointment', appointment(contended[Math.floor(i / o.contenders)], i));
    if (res.statusCode === 201) won++;
    else if (res.statusCode === 409) refused++;
    else throw new Error(`booking failed: ${res.statusCode} ${res.body.slice(0, 200)}`);
  });
  if (won !== o.slots) throw new Error(`${won} bookings won for ${o.slots} slots (${refused} refused): double booking or lost booking`);
  const uncontended = await measure('booking, one caller per slot', single.length, o.contenders, async (i) => {
    const res = await post('Appointment', appointment(single[i], i));
    if (res.statusCode !== 201) throw new Error(`booking failed: ${res.statusCode} ${res.body.slice(0, 200)}`);
  });
  const plain = await measure('Appointment create without slot', single.length, o.contenders, async (i) => {
    const res = await post('Appointment', appointment(undefined, i));
    if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode}`);
  });
  return {
    slots: o.slots,
    contenders: o.contenders,
    bookingsPerSecond: won / race.seconds,
    attemptsPerSecond: race.perSecond,
    comparisons: [
      compare('booking attempts under contention vs plain create', race, plain, { text: 'attempts ≥ 0.3 × plain create', met: (c) => c.throughputRatio >= 0.3 }),
      // A booking is four round trips (BEGIN, SELECT … FOR UPDATE of the slot, one write statement for
      // appointment and slot, COMMIT) where a plain create is one statement.
      compare('uncontended booking vs plain create', uncontended, plain, { text: 'throughput ≥ 0.3 × plain create', met: (c) => c.throughputRatio >= 0.3 }),
    ],
  };
}
