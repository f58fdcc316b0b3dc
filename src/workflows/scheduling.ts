import type { Appointment, Flag, Slot } from 'fhir/r4.js';
import { latestAppointmentOutcomes, referencing } from '../storage/front-desk-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import type { ResourceChange } from '../storage/types.js';
import { businessRule, referenceTo, replacedVersion } from './scheduling-rules.js';
import { isEmergencySlot } from './schedules.js';

/**
 * Booking rules (seed 004 FR-AS-001 / FR-AS-002, issue 12 §3), run before commit on every
 * write path (REST, transaction / batch entries, HL7 v2):
 *
 * - An Appointment that holds a Slot (status pending, booked, arrived, checked-in, fulfilled,
 *   noshow) marks it busy in the same transaction; a Slot that is not free cannot be taken
 *   (409). The Slot row is locked (SELECT … FOR UPDATE) before it is read, so of concurrent
 *   bookings of one slot exactly one wins; the others then see it busy.
 * - Cancelling (or deleting, marking entered-in-error, or any change that stops holding)
 *   frees the Slot; rescheduling (new start, end or slot) frees the old and takes the new one.
 * - Cancel and reschedule are refused less than `changeWindowHours` before the start.
 * - Status changes follow the appointment life cycle (booked → checked-in / arrived →
 *   fulfilled; booked → noshow once the start has passed; …).
 * - The third consecutive no-show of a patient raises a Flag on the patient.
 *
 * External data keeps loading: the rules act only on what is there — an Appointment without
 * a slot, or naming a Slot this server does not hold, books nothing; a new Appointment may
 * come in any status (history from another system); only changes of stored appointments that
 * name a Slot (bookings) are checked against the life cycle and the window.
 */

export interface SchedulingOptions {
  /** Cancel and reschedule are allowed until this many hours before the start (seed: 24). */
  changeWindowHours: number;
  /** Consecutive no-shows that flag the patient (seed: 3). */
  noShowThreshold?: number;
  /**
   * An emergency-reserve slot still free this many hours before its start is released: any
   * appointment may take it, so the reserve does not go to waste (0: never released).
   */
  emergencyReleaseHours?: number;
}

export const NO_SHOW_FLAG = {
  system: 'https://fhir.hospital.example.org/CodeSystem/patient-flag',
  code: 'repeated-no-show',
  display: 'Repeated missed appointments',
};

/** Statuses in which an appointment occupies its slots. */
export const HOLDING = new Set(['pending', 'booked', 'arrived', 'checked-in', 'fulfilled', 'noshow']);
/** Statuses that close an appointment: it is not rescheduled any more. */
const OUTCOMES = ['fulfilled', 'noshow'];
const EMERGENCY_CODE = 'http://terminology.hl7.org/CodeSystem/v2-0276|EMERGENCY';

/** Allowed status changes of a stored appointment (R4 Appointment.status life cycle). */
const NEXT_STATUS: Record<string, readonly string[]> = {
  proposed: ['pending', 'booked', 'waitlist', 'cancelled', 'entered-in-error'],
  pending: ['proposed', 'booked', 'waitlist', 'cancelled', 'entered-in-error'],
  waitlist: ['proposed', 'pending', 'booked', 'cancelled', 'entered-in-error'],
  booked: ['checked-in', 'arrived', 'fulfilled', 'noshow', 'cancelled', 'entered-in-error'],
  'checked-in': ['arrived', 'fulfilled', 'noshow', 'entered-in-error'],
  arrived: ['fulfilled', 'entered-in-error'],
  fulfilled: ['entered-in-error'],
  noshow: ['entered-in-error'],
  cancelled: ['entered-in-error'],
  'entered-in-error': [],
};

function heldSlots(appointment: Appointment | undefined): string[] {
  if (!appointment || !HOLDING.has(appointment.status)) return [];
  const ids = (appointment.slot ?? []).map((s) => referenceTo('Slot', s.reference)).filter((id): id is string => id !== undefined);
  return [...new Set(ids)].sort();
}

function patientOf(appointment: Appointment): string | undefined {
  for (const p of appointment.participant ?? []) {
    const id = referenceTo('Patient', p.actor?.reference);
    if (id) return id;
  }
  return undefined;
}

/** Whether a reserved slot is close enough to its start to be open to any booking. */
function released(slot: Slot, releaseMs: number): boolean {
  if (releaseMs <= 0 || !slot.start) return false;
  return Date.parse(slot.start) - Date.now() <= releaseMs;
}

function when(instant: string | undefined): string {
  return instant ? new Date(instant).toISOString().replace(/:\d\d\.\d{3}Z$/, ' UTC').replace('T', ' ') : 'an unknown time';
}

export function schedulingHook(options: SchedulingOptions): BeforeWriteHook {
  const windowMs = options.changeWindowHours * 3600_000;
  const threshold = options.noShowThreshold ?? 3;
  const releaseMs = (options.emergencyReleaseHours ?? 2) * 3600_000;
  return async (tx, change) => {
    if (change.resourceType === 'Slot') return guardBookedSlot(tx, change);
    if (change.resourceType !== 'Appointment') return;
    const before = await replacedVersion<Appointment>(tx, change);
    const after = change.resource as Appointment | undefined;
    // Life cycle and window govern bookings of this server's slots. An appointment that names
    // no Slot is another system's (e.g. an HL7 v2 SIU feed from the scheduling system of
    // record, whose messages may arrive out of order): its source decides.
    if (before && after && (before.slot?.length || after.slot?.length)) checkChange(before, after, windowMs, options.changeWindowHours);
    await moveSlots(tx, heldSlots(before), heldSlots(after), after !== undefined && isEmergencySlot(after), releaseMs);
    if (after?.status === 'noshow' && before?.status !== 'noshow') await flagRepeatedNoShows(tx, change, after, threshold);
  };
}

/** Life cycle and cancel / reschedule window of a stored appointment (FR-AS-002). */
function checkChange(before: Appointment, after: Appointment, windowMs: number, windowHours: number): void {
  const from = before.status;
  const to = after.status;
  if (from !== to && !(NEXT_STATUS[from] ?? []).includes(to)) {
    throw businessRule('conflict', `This appointment is ${from}; it cannot be changed to ${to}.`, ['Appointment.status']);
  }
  const start = before.start ? Date.parse(before.start) : NaN;
  const now = Date.now();
  if (to === 'noshow' && from !== 'noshow' && after.start && Date.parse(after.start) > now) {
    throw businessRule('conflict', `A no-show can be recorded only once the appointment has started (${when(after.start)}).`, ['Appointment.status']);
  }
  const active = from === 'booked' || from === 'pending' || from === 'proposed' || from === 'waitlist';
  const cancelled = to === 'cancelled' && from !== 'cancelled';
  const moved =
    HOLDING.has(to) && !OUTCOMES.includes(to) && (before.start !== after.start || before.end !== after.end || heldSlots(before).join() !== heldSlots({ ...after, status: before.status }).join());
  if (active && (cancelled || moved) && !Number.isNaN(start) && start - now < windowMs) {
    const what = cancelled ? 'cancelled' : 'rescheduled';
    throw businessRule(
      'conflict',
      `This appointment (starting ${when(before.start)}) can no longer be ${what}: changes are allowed only until ${windowHours} hours before the start.`,
      [cancelled ? 'Appointment.status' : 'Appointment.start'],
    );
  }
}

/**
 * Frees the slots no longer held and takes the newly held ones, all locked first in one
 * statement in id order (two bookings that take several slots cannot deadlock).
 */
async function moveSlots(tx: StoreTransaction, before: readonly string[], after: readonly string[], emergency: boolean, releaseMs: number): Promise<void> {
  const release = before.filter((id) => !after.includes(id));
  const take = after.filter((id) => !before.includes(id));
  if (release.length === 0 && take.length === 0) return;
  await tx.prefetchForUpdate([...release, ...take].map((id) => ({ resourceType: 'Slot', id })));
  for (const id of take) {
    const current = await tx.readForUpdate('Slot', id);
    // A Slot this server does not hold (external data): nothing to book.
    if (!current?.json || current.deleted) continue;
    const slot = JSON.parse(current.json) as Slot;
    if (slot.status !== 'free') {
      const why = slot.status === 'busy' || slot.status === 'busy-tentative' ? 'is already booked' : 'is not available for booking';
      throw businessRule('conflict', `The time slot ${when(slot.start)} ${why}. Please choose another slot.`, ['Appointment.slot']);
    }
    // FR-AS-001 emergency reserve (schedules.ts): only an emergency appointment takes a reserved
    // slot, until the slot is released `releaseMs` before its start.
    if (isEmergencySlot(slot) && !emergency && !released(slot, releaseMs)) {
      const opens = releaseMs > 0 && slot.start ? ` It opens to all bookings at ${when(new Date(Date.parse(slot.start) - releaseMs).toISOString())}.` : '';
      throw businessRule(
        'conflict',
        `The time slot ${when(slot.start)} is reserved for emergencies. Please choose another slot, or book it as an emergency (appointmentType ${EMERGENCY_CODE}).${opens}`,
        ['Appointment.slot'],
      );
    }
    const booked: Slot = { ...slot, status: 'busy' };
    await tx.update(booked, current, 'PUT');
  }
  for (const id of release) {
    const current = await tx.readForUpdate('Slot', id);
    if (!current?.json || current.deleted) continue;
    const slot = JSON.parse(current.json) as Slot;
    // Only a booking's mark is undone: a slot blocked (busy-unavailable) stays blocked.
    if (slot.status !== 'busy' && slot.status !== 'busy-tentative') continue;
    const freed: Slot = { ...slot, status: 'free' };
    const own = releasing.get(tx) ?? new Set<string>();
    releasing.set(tx, own.add(id));
    await tx.update(freed, current, 'PUT');
    own.delete(id);
  }
}

/** Slots this transaction is freeing itself (an appointment let go of them): not guarded. */
const releasing = new WeakMap<StoreTransaction, Set<string>>();

/**
 * FR-AS-001 "prevent double-booking": a booked Slot is not made free (or deleted) behind its
 * appointment's back — that would let a second booking in. Cancel or move the appointment.
 */
async function guardBookedSlot(tx: StoreTransaction, change: ResourceChange): Promise<void> {
  if (change.method === 'POST' || releasing.get(tx)?.has(change.id)) return;
  const after = change.resource as Slot | undefined;
  if (after && after.status !== 'free') return;
  const before = await replacedVersion<Slot>(tx, change);
  if (!before || (before.status !== 'busy' && before.status !== 'busy-tentative')) return;
  const holders = await referencing(await tx.executor(), 'Appointment', 'slot', 'Slot', change.id);
  const holder = holders.find(({ json }) => HOLDING.has((JSON.parse(json) as Appointment).status));
  if (holder) {
    throw businessRule('conflict', `This time slot is booked by Appointment/${holder.id}; cancel or reschedule that appointment to free it.`, ['Slot.status']);
  }
}

/**
 * FR-AS-002 "auto-flag after 3 consecutive no-shows": when this no-show and the patient's
 * latest earlier outcomes (fulfilled or no-show) are all no-shows, an active Flag is put on
 * the patient, once (the lock keeps two concurrent no-shows from raising two flags).
 */
async function flagRepeatedNoShows(tx: StoreTransaction, change: ResourceChange, appointment: Appointment, threshold: number): Promise<void> {
  const patient = patientOf(appointment);
  if (!patient || !appointment.start) return;
  const db = await tx.executor();
  const earlier = await latestAppointmentOutcomes(db, patient, appointment.start, change.id, OUTCOMES, threshold - 1);
  if (earlier.length < threshold - 1 || earlier.some((a) => a.status !== 'noshow')) return;
  await tx.lockCondition(`no-show-flag/Patient/${patient}`);
  const flags = await referencing(await tx.executor(), 'Flag', 'subject', 'Patient', patient);
  const flagged = flags.some(({ json }) => {
    const flag = JSON.parse(json) as Flag;
    return flag.status === 'active' && (flag.code.coding ?? []).some((c) => c.system === NO_SHOW_FLAG.system && c.code === NO_SHOW_FLAG.code);
  });
  if (flagged) return;
  const flag: Flag = {
    resourceType: 'Flag',
    status: 'active',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/flag-category', code: 'admin', display: 'Administrative' }] }],
    code: { coding: [NO_SHOW_FLAG], text: `Missed ${threshold} consecutive appointments` },
    subject: { reference: `Patient/${patient}` },
    period: { start: new Date().toISOString() },
  };
  await tx.create(flag, 'POST');
}
