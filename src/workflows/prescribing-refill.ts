import type { MedicationRequest, Task } from 'fhir/r4.js';
import { fillCounts } from '../storage/prescribing-store.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import { businessRule, referenceTo, replacedVersion } from './scheduling-rules.js';

/**
 * Refill requests (seed 000 "request refills", issue 13 §3): a Task with code `fulfill`
 * (http://hl7.org/fhir/CodeSystem/task-code) whose `focus` is a MedicationRequest, entering
 * status `requested`. It is accepted only while the prescription is active and has repeats
 * left: the original fill plus `dispenseRequest.numberOfRepeatsAllowed` repeats, of which the
 * dispenses beyond the first (MedicationDispense completed / in-progress / preparation / on-hold
 * with authorizingPrescription = it) and the other open refill Tasks are used. Otherwise 422
 * business-rule. Concurrent requests for one prescription are serialised (advisory lock).
 */

export const TASK_CODE = 'http://hl7.org/fhir/CodeSystem/task-code';

function isRefill(task: Task | undefined): task is Task {
  return task !== undefined && (task.code?.coding ?? []).some((c) => c.code === 'fulfill' && (c.system === undefined || c.system === TASK_CODE));
}

export const refillHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'Task' || !change.resource) return;
  const task = change.resource as Task;
  if (!isRefill(task) || task.status !== 'requested') return;
  const prescriptionId = referenceTo('MedicationRequest', task.focus?.reference);
  if (!prescriptionId) return;
  const before = change.method === 'POST' ? undefined : await replacedVersion<Task>(tx, change);
  if (before && isRefill(before) && before.status === 'requested' && before.focus?.reference === task.focus?.reference) return;

  await tx.lockCondition(`refill/MedicationRequest/${prescriptionId}`);
  const current = await tx.read('MedicationRequest', prescriptionId);
  if (!current?.json || current.deleted) {
    throw businessRule('invalid', `A refill needs an existing prescription: MedicationRequest/${prescriptionId} is not known.`, ['Task.focus']);
  }
  const prescription = JSON.parse(current.json) as MedicationRequest;
  if (prescription.status !== 'active') {
    throw businessRule('invalid', `This prescription is ${prescription.status}: only an active prescription can be refilled.`, ['Task.focus']);
  }
  const repeats = prescription.dispenseRequest?.numberOfRepeatsAllowed ?? 0;
  const validity = prescription.dispenseRequest?.validityPeriod?.end;
  if (validity && Date.parse(validity) < Date.now()) {
    throw businessRule('invalid', `This prescription expired on ${validity.slice(0, 10)}: ask the prescriber for a new one.`, ['Task.focus']);
  }
  const { dispensed, openRefills } = await fillCounts(await tx.executor(), prescriptionId, change.id);
  const used = Math.max(dispensed - 1, 0) + openRefills;
  if (used >= repeats) {
    throw businessRule(
      'invalid',
      `No refills left on this prescription: ${repeats} repeat${repeats === 1 ? '' : 's'} allowed, ${used} used or requested (${dispensed} dispensed, ${openRefills} open refill request${openRefills === 1 ? '' : 's'}).`,
      ['Task.focus'],
    );
  }
};
