import type { Appointment, Period, PractitionerRole, PractitionerRoleNotAvailable, Slot, Task } from 'fhir/r4.js';
import { referencing } from '../storage/front-desk-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import { slotsOverlapping } from '../storage/schedule-store.js';
import { referenceTo, replacedVersion } from './scheduling-rules.js';
import { HOLDING } from './scheduling.js';
import { LEAVE_COMMENT, overlaps } from './schedules.js';

/**
 * Leave blocks slots (seed 004 FR-AS-001 "handle doctor leave/unavailability with appointment
 * rescheduling"; issue 12 §2). A leave is a `PractitionerRole.notAvailable` entry (description,
 * during). When one is added, in the same transaction:
 *
 * - every Slot in the period of the Schedules whose actor is that PractitionerRole or its
 *   Practitioner becomes `busy-unavailable` (comment "Unavailable (leave): …"); free ones can no
 *   longer be booked, and a booked one stays blocked once its appointment moves away;
 * - every appointment holding such a slot (pending, booked, arrived, checked-in) gets a Task
 *   "reschedule-appointment" (CodeSystem task-code; status requested, focus the Appointment, for
 *   its patient, reasonCode the leave): the front desk works through
 *   `GET /fhir/Task?code=https://fhir.hospital.example.org/CodeSystem/task-code|reschedule-appointment&status=requested`.
 *   The Appointment itself is not changed (the 24-hour window and the patient's choice of a
 *   new time stay with the front desk). One open Task per appointment.
 *
 * When a leave is withdrawn (its entry removed from `notAvailable`), the slots it blocked — and
 * that no remaining leave covers — are given back in the same transaction: `busy` when an open
 * appointment still holds the slot (its reschedule Task is cancelled: the appointment can stay),
 * `free` otherwise. Slots blocked by hand (other comments) are left alone.
 */

export const TASK_CODE_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/task-code';
export const RESCHEDULE_TASK = { system: TASK_CODE_SYSTEM, code: 'reschedule-appointment', display: 'Reschedule appointment' };

/** Task statuses of a reschedule request still to be worked. */
const OPEN_TASK = new Set(['requested', 'received', 'accepted', 'ready', 'in-progress', 'on-hold', 'draft']);

/** Appointment statuses in which a leave makes the appointment need a new time. */
const OPEN = new Set(['pending', 'booked', 'arrived', 'checked-in', 'proposed', 'waitlist']);

function periodKey(p: Period | undefined): string {
  return `${p?.start ?? ''}|${p?.end ?? ''}`;
}

export const leaveHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'PractitionerRole' || !change.resource) return;
  const after = change.resource as PractitionerRole;
  const before = await replacedVersion<PractitionerRole>(tx, change);
  if (!after.notAvailable?.length && !before?.notAvailable?.length) return;
  const known = new Set((before?.notAvailable ?? []).map((n) => periodKey(n.during)));
  const kept = new Set((after.notAvailable ?? []).map((n) => periodKey(n.during)));
  const added = (after.notAvailable ?? []).filter((n) => n.during && !known.has(periodKey(n.during)));
  const withdrawn = (before?.notAvailable ?? []).filter((n) => n.during && !kept.has(periodKey(n.during)));
  if (added.length === 0 && withdrawn.length === 0) return;
  const db = await tx.executor();
  const schedules = new Set<string>();
  for (const row of await referencing(db, 'Schedule', 'actor', 'PractitionerRole', change.id)) schedules.add(row.id);
  const practitioner = referenceTo('Practitioner', after.practitioner?.reference);
  if (practitioner) for (const row of await referencing(db, 'Schedule', 'actor', 'Practitioner', practitioner)) schedules.add(row.id);
  for (const leave of added) await blockSlots(tx, [...schedules].sort(), leave);
  for (const leave of withdrawn) await unblockSlots(tx, [...schedules].sort(), leave, after.notAvailable ?? []);
};

/** Gives back the slots a withdrawn leave blocked (see the module comment). */
async function unblockSlots(tx: StoreTransaction, schedules: string[], leave: PractitionerRoleNotAvailable, remaining: readonly PractitionerRoleNotAvailable[]): Promise<void> {
  const ids = await slotsOverlapping(await tx.executor(), schedules, leave.during?.start ?? null, leave.during?.end ?? null);
  if (ids.length === 0) return;
  await tx.prefetchForUpdate(ids.map((id) => ({ resourceType: 'Slot', id })));
  for (const id of ids) {
    const current = await tx.readForUpdate('Slot', id);
    if (!current?.json || current.deleted) continue;
    const slot = JSON.parse(current.json) as Slot;
    if (slot.status !== 'busy-unavailable' || !slot.comment?.startsWith(LEAVE_COMMENT)) continue;
    const start = slot.start ? Date.parse(slot.start) : NaN;
    const end = slot.end ? Date.parse(slot.end) : NaN;
    if (remaining.some((n) => overlaps(start, end, n.during))) continue;
    const db = await tx.executor();
    const holders = (await referencing(db, 'Appointment', 'slot', 'Slot', id)).filter(({ json }) => HOLDING.has((JSON.parse(json) as Appointment).status));
    const { comment: _blocked, ...rest } = slot;
    const givenBack: Slot = { ...rest, status: holders.length > 0 ? 'busy' : 'free' };
    await tx.update(givenBack, current, 'PUT');
    for (const holder of holders) await cancelRescheduleTasks(tx, holder.id, leave);
  }
}

async function cancelRescheduleTasks(tx: StoreTransaction, appointmentId: string, leave: PractitionerRoleNotAvailable): Promise<void> {
  for (const row of await referencing(await tx.executor(), 'Task', 'focus', 'Appointment', appointmentId)) {
    const task = JSON.parse(row.json) as Task;
    if (!isOpenRescheduleTask(task)) continue;
    const current = await tx.readForUpdate('Task', row.id);
    if (!current?.json || current.deleted) continue;
    const cancelled: Task = { ...task, status: 'cancelled', statusReason: { text: `The leave was withdrawn (${leave.description}): the appointment can stay.`.slice(0, 500) } };
    await tx.update(cancelled, current, 'PUT');
  }
}

function isOpenRescheduleTask(task: Task): boolean {
  return OPEN_TASK.has(task.status) && (task.code?.coding ?? []).some((c) => c.system === TASK_CODE_SYSTEM && c.code === RESCHEDULE_TASK.code);
}

async function blockSlots(tx: StoreTransaction, schedules: string[], leave: PractitionerRoleNotAvailable): Promise<void> {
  const ids = await slotsOverlapping(await tx.executor(), schedules, leave.during?.start ?? null, leave.during?.end ?? null);
  if (ids.length === 0) return;
  // Locked in id order, as bookings lock them: a booking racing the leave either wins first
  // (its appointment then gets a Task) or sees the slot blocked.
  await tx.prefetchForUpdate(ids.map((id) => ({ resourceType: 'Slot', id })));
  const comment = `${LEAVE_COMMENT}: ${leave.description}`.slice(0, 500);
  for (const id of ids) {
    const current = await tx.readForUpdate('Slot', id);
    if (!current?.json || current.deleted) continue;
    const slot = JSON.parse(current.json) as Slot;
    if (slot.status === 'busy-unavailable' || slot.status === 'entered-in-error') continue;
    const wasBooked = slot.status !== 'free';
    const blocked: Slot = { ...slot, status: 'busy-unavailable', comment };
    await tx.update(blocked, current, 'PUT');
    if (wasBooked) await askForReschedule(tx, id, slot, leave);
  }
}

async function askForReschedule(tx: StoreTransaction, slotId: string, slot: Slot, leave: PractitionerRoleNotAvailable): Promise<void> {
  const db = await tx.executor();
  for (const row of await referencing(db, 'Appointment', 'slot', 'Slot', slotId)) {
    const appointment = JSON.parse(row.json) as Appointment;
    if (!OPEN.has(appointment.status)) continue;
    const tasks = await referencing(db, 'Task', 'focus', 'Appointment', row.id);
    const open = tasks.some(({ json }) => isOpenRescheduleTask(JSON.parse(json) as Task));
    if (open) continue;
    const patient = appointment.participant?.find((p) => referenceTo('Patient', p.actor?.reference))?.actor?.reference;
    const task: Task = {
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      priority: 'urgent',
      code: { coding: [RESCHEDULE_TASK], text: 'Reschedule appointment' },
      description: `The practitioner is not available (${leave.description}) at ${slot.start ?? 'the booked time'}: offer the patient another time.`.slice(0, 1000),
      focus: { reference: `Appointment/${row.id}` },
      ...(patient ? { for: { reference: patient } } : {}),
      authoredOn: new Date().toISOString(),
      reasonCode: { text: leave.description },
      ...(leave.during ? { restriction: { period: leave.during } } : {}),
    };
    await tx.create(task, 'POST');
  }
}
