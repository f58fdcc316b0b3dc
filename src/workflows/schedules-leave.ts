import type { Appointment, Period, PractitionerRole, PractitionerRoleNotAvailable, Slot, Task } from 'fhir/r4.js';
import { referencing } from '../storage/front-desk-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import { slotsOverlapping } from '../storage/schedule-store.js';
import { referenceTo, replacedVersion } from './scheduling-rules.js';
import { LEAVE_COMMENT } from './schedules.js';

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
 * Removing a leave does not free the slots again (someone may have been told): set them free
 * by hand, or let the generator recreate slots that were never written.
 */

export const TASK_CODE_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/task-code';
export const RESCHEDULE_TASK = { system: TASK_CODE_SYSTEM, code: 'reschedule-appointment', display: 'Reschedule appointment' };

/** Appointment statuses in which a leave makes the appointment need a new time. */
const OPEN = new Set(['pending', 'booked', 'arrived', 'checked-in', 'proposed', 'waitlist']);

function periodKey(p: Period | undefined): string {
  return `${p?.start ?? ''}|${p?.end ?? ''}`;
}

export const leaveHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'PractitionerRole' || !change.resource) return;
  const after = change.resource as PractitionerRole;
  if (!after.notAvailable?.length) return;
  const before = await replacedVersion<PractitionerRole>(tx, change);
  const known = new Set((before?.notAvailable ?? []).map((n) => periodKey(n.during)));
  const added = after.notAvailable.filter((n) => n.during && !known.has(periodKey(n.during)));
  if (added.length === 0) return;
  const db = await tx.executor();
  const schedules = new Set<string>();
  for (const row of await referencing(db, 'Schedule', 'actor', 'PractitionerRole', change.id)) schedules.add(row.id);
  const practitioner = referenceTo('Practitioner', after.practitioner?.reference);
  if (practitioner) for (const row of await referencing(db, 'Schedule', 'actor', 'Practitioner', practitioner)) schedules.add(row.id);
  for (const leave of added) await blockSlots(tx, [...schedules].sort(), leave);
};

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
    const open = tasks.some(({ json }) => {
      const task = JSON.parse(json) as Task;
      return ['requested', 'received', 'accepted', 'ready', 'in-progress', 'on-hold', 'draft'].includes(task.status) && (task.code?.coding ?? []).some((c) => c.system === TASK_CODE_SYSTEM && c.code === RESCHEDULE_TASK.code);
    });
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
