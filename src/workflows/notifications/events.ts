import type { Appointment, ClaimResponse, CodeableConcept, DiagnosticReport, Extension, Invoice, Medication, MedicationDispense, Observation, Resource, Task } from 'fhir/r4.js';
import type { NotificationEvent, NotificationRules } from './rules.js';

/**
 * Which notification events one committed change makes (pure: the current and the replaced
 * version in, events out). Events come from transitions, so a resource written again with the
 * same status notifies nobody a second time:
 *
 * | resource | transition | event |
 * |---|---|---|
 * | Appointment | created or moved into proposed / pending | APPOINTMENT_REQUESTED |
 * | Appointment | into booked | APPOINTMENT_CONFIRMED (+ reminder scheduled) |
 * | Appointment | into cancelled | APPOINTMENT_CANCELLED (+ reminder cancelled) |
 * | Appointment | booked and start changed | reminder rescheduled |
 * | DiagnosticReport | into final / amended / corrected (first time) | LAB_RESULT_READY |
 * | Observation | result status with a critical interpretation, newly | CRITICAL_LAB_RESULT |
 * | MedicationDispense | into in-progress (R4: "ready for pickup") | PRESCRIPTION_READY |
 * | Invoice | into issued | INVOICE_GENERATED |
 * | Invoice | into balanced (paid in full) | PAYMENT_SUCCESSFUL |
 * | ClaimResponse | created, or outcome changed | CLAIM_STATUS_UPDATED |
 * | Medication | stock extension falls to or below the reorder-level extension | PHARMACY_STOCK_LOW |
 * | Task | created: reschedule-appointment (a leave over a booked slot, schedules-leave.ts) | APPOINTMENT_RESCHEDULE_NEEDED |
 * | Medication | a lot newly listed in the batch-expiring extension (90 days to expiry, issue 13) | PHARMACY_BATCH_EXPIRING |
 */
export interface DetectedEvents {
  events: NotificationEvent[];
  /** Appointment only: what happens to its reminder. */
  reminder?: 'schedule' | 'cancel';
}

/** Types whose writes may notify: the after-commit hook ignores every other write at once. */
export const WATCHED_TYPES: readonly string[] = ['Appointment', 'DiagnosticReport', 'Observation', 'MedicationDispense', 'Invoice', 'ClaimResponse', 'Medication', 'Task'];

export function detectEvents(current: Resource | undefined, previous: Resource | undefined, rules: NotificationRules): DetectedEvents {
  const type = (current ?? previous)?.resourceType;
  switch (type) {
    case 'Appointment':
      return appointmentEvents(current as Appointment | undefined, previous as Appointment | undefined);
    case 'DiagnosticReport': {
      const now = current as DiagnosticReport | undefined;
      const before = previous as DiagnosticReport | undefined;
      const done = (r?: DiagnosticReport) => r !== undefined && rules.labResultStatuses.includes(r.status);
      return { events: done(now) && !done(before) ? ['LAB_RESULT_READY'] : [] };
    }
    case 'Observation': {
      const critical = (o?: Observation) => o !== undefined && (rules.criticalResultStatuses ?? rules.labResultStatuses).includes(o.status) && isCritical(o, rules);
      return { events: critical(current as Observation | undefined) && !critical(previous as Observation | undefined) ? ['CRITICAL_LAB_RESULT'] : [] };
    }
    case 'MedicationDispense': {
      const ready = (d?: Resource) => (d as MedicationDispense | undefined)?.status === 'in-progress';
      return { events: ready(current) && !ready(previous) ? ['PRESCRIPTION_READY'] : [] };
    }
    case 'Invoice': {
      const status = (i?: Resource) => (i as Invoice | undefined)?.status;
      const events: NotificationEvent[] = [];
      // balanced → issued is a refund reopening the invoice, not a new invoice.
      if (status(current) === 'issued' && status(previous) !== 'issued' && status(previous) !== 'balanced') events.push('INVOICE_GENERATED');
      if (status(current) === 'balanced' && status(previous) !== 'balanced') events.push('PAYMENT_SUCCESSFUL');
      return { events };
    }
    case 'ClaimResponse': {
      const now = current as ClaimResponse | undefined;
      const before = previous as ClaimResponse | undefined;
      const changed = now !== undefined && now.status === 'active' && (before === undefined || before.outcome !== now.outcome || before.status !== 'active');
      return { events: changed ? ['CLAIM_STATUS_UPDATED'] : [] };
    }
    case 'Medication': {
      const low = (m?: Resource) => stockLevel(m as Medication | undefined, rules)?.low === true;
      const events: NotificationEvent[] = low(current) && !low(previous) ? ['PHARMACY_STOCK_LOW'] : [];
      const before = new Set(expiringLots(previous as Medication | undefined, rules));
      if (expiringLots(current as Medication | undefined, rules).some((lot) => !before.has(lot))) events.push('PHARMACY_BATCH_EXPIRING');
      return { events };
    }
    case 'Task':
      return { events: previous === undefined && isRescheduleTask(current) ? ['APPOINTMENT_RESCHEDULE_NEEDED'] : [] };
    default:
      return { events: [] };
  }
}

const REQUESTED = ['proposed', 'pending'];

function appointmentEvents(now: Appointment | undefined, before: Appointment | undefined): DetectedEvents {
  const events: NotificationEvent[] = [];
  const status = now?.status;
  const was = before?.status;
  if (status && REQUESTED.includes(status) && !(was && REQUESTED.includes(was))) events.push('APPOINTMENT_REQUESTED');
  if (status === 'booked' && was !== 'booked') events.push('APPOINTMENT_CONFIRMED');
  if (status === 'cancelled' && was !== undefined && was !== 'cancelled') events.push('APPOINTMENT_CANCELLED');
  let reminder: DetectedEvents['reminder'];
  if (status === 'booked' && (was !== 'booked' || before?.start !== now?.start)) reminder = 'schedule';
  else if (status !== 'booked' && was === 'booked') reminder = 'cancel';
  return reminder ? { events, reminder } : { events };
}

/** A reschedule-appointment Task (src/workflows/schedules-leave.ts; code system kept in step with it). */
export function isRescheduleTask(r: Resource | undefined): r is Task {
  return r?.resourceType === 'Task' && ((r as Task).code?.coding ?? []).some((c) => c.system === 'https://fhir.hospital.example.org/CodeSystem/task-code' && c.code === 'reschedule-appointment');
}

export function isCritical(o: Pick<Observation, 'interpretation'>, rules: NotificationRules): boolean {
  const { codes, texts } = rules.criticalInterpretation;
  const matches = (c: CodeableConcept) =>
    (c.coding ?? []).some((coding) => codes.some((k) => k.system === coding.system && k.code === coding.code)) ||
    texts.some((t) => c.text?.toLowerCase() === t);
  return (o.interpretation ?? []).some(matches);
}

function numberExtension(extensions: Extension[] | undefined, url: string): number | undefined {
  const e = extensions?.find((x) => x.url === url);
  return e?.valueQuantity?.value ?? e?.valueDecimal ?? e?.valueInteger;
}

/**
 * The stock of a Medication batch. FHIR R4 has no element for stock on hand, and no pharmacy
 * stock model exists in this server yet (issue 13): the documented representation is two
 * extensions on the batch's Medication, stock quantity and reorder level (rules.json `stock`).
 */
export function stockLevel(m: Medication | undefined, rules: NotificationRules): { quantity: number; reorderLevel: number; low: boolean } | undefined {
  if (!m || m.status === 'inactive' || m.status === 'entered-in-error') return undefined;
  const quantity = numberExtension(m.extension, rules.stock.quantityExtension);
  const reorderLevel = numberExtension(m.extension, rules.stock.reorderLevelExtension);
  if (quantity === undefined || reorderLevel === undefined) return undefined;
  return { quantity, reorderLevel, low: quantity <= reorderLevel };
}

/**
 * Batches of a Medication listed in the batch-expiring extension, as `lot (expiry)` (kept by the
 * pharmacy stock rules, src/workflows/pharmacy/: one per batch within 90 days of expiry, alerted once).
 */
export function expiringLots(m: Medication | undefined, rules: NotificationRules): string[] {
  if (!m || m.status === 'inactive' || m.status === 'entered-in-error') return [];
  return (m.extension ?? []).filter((e) => e.url === rules.stock.batchExpiringExtension).flatMap((e) => {
    const lot = e.extension?.find((x) => x.url === 'lotNumber')?.valueString;
    const expiry = e.extension?.find((x) => x.url === 'expirationDate')?.valueDate;
    return lot ? [expiry ? `${lot} (${expiry})` : lot] : [];
  });
}

/**
 * Cheap test on the new version alone, in the after-commit hook: could this write make an
 * event? Writes that cannot (most Observations of an HL7 v2 feed) never become a job.
 */
export function mayNotify(type: string, current: Resource | undefined, rules: NotificationRules): boolean {
  switch (type) {
    case 'Appointment':
      return true; // any change may move or cancel a reminder
    case 'Observation':
      return current !== undefined && (rules.criticalResultStatuses ?? rules.labResultStatuses).includes((current as Observation).status) && isCritical(current as Observation, rules);
    case 'DiagnosticReport':
      return current !== undefined && rules.labResultStatuses.includes((current as DiagnosticReport).status);
    case 'MedicationDispense':
      return (current as MedicationDispense | undefined)?.status === 'in-progress';
    case 'Invoice':
      return ['issued', 'balanced'].includes((current as Invoice | undefined)?.status ?? '');
    case 'ClaimResponse':
      return (current as ClaimResponse | undefined)?.status === 'active';
    case 'Medication':
      return stockLevel(current as Medication | undefined, rules)?.low === true || expiringLots(current as Medication | undefined, rules).length > 0;
    case 'Task':
      return isRescheduleTask(current);
    default:
      return false;
  }
}
