import type { DetectedIssue, Extension, MedicationDispense, MedicationRequest } from 'fhir/r4.js';
import { errors } from '../../fhir/errors.js';
import { referencing } from '../../storage/front-desk-store.js';
import { addMovement, lockActiveBatches, lockBatchesById, setBatchQuantity, tracksStock } from '../../storage/pharmacy-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import type { ResourceChange } from '../../storage/types.js';
import { currentWriter, byApiCaller } from '../../subscriptions/write-context.js';
import { businessRule, referenceTo, replacedVersion } from '../scheduling-rules.js';
import { BATCH_URL, batchExtension, decimal, DISPENSED, medicationName, OVERRIDE_URL, readBatchExtension, today, UNDONE } from './definitions.js';
import { fillState, fullyDispensed, setPrescriptionStatus } from './prescription-fill.js';
import { lockProduct, movementAuthor, refreshProduct } from './stock.js';

/**
 * Dispensing (seed 004 FR-PH-002 / FR-PH-003, issue 13 §4). A MedicationDispense entering
 * `in-progress` or `completed` (create or update) is checked and takes its stock in its own
 * transaction:
 *
 * 1. The prescription (`authorizingPrescription`, when it names a MedicationRequest here) is
 *    for the dispense's patient and product (422 otherwise), active, inside `dispenseRequest.validityPeriod`, and not fully dispensed: the quantities
 *    of its earlier dispenses plus this one stay within `dispenseRequest.quantity` ×
 *    (1 + `numberOfRepeatsAllowed`), or, without a quantity, its dispenses within
 *    1 + `numberOfRepeatsAllowed`. Less than what remains is a partial dispense.
 * 2. Critical DetectedIssues (severity high, implicating the MedicationRequest, status not
 *    cancelled / entered-in-error) without a `mitigation` block the dispense (409), unless a
 *    PHARMACIST overrides them: the dispense lists them in `detectedIssue` and carries the
 *    extension `dispense-override` (valueString: the reason); the server then records the
 *    override as a mitigation on each DetectedIssue (author: the pharmacist, action.text: the
 *    reason) in the same transaction.
 * 3. Stock: when the product (`medicationReference`, else the prescription's) has batches here,
 *    `quantity` is taken FIFO from its active batches by nearest expiry (then earliest receipt),
 *    never from a batch past expiry; batch rows are locked, so of two pharmacists taking the
 *    last units exactly one succeeds and the other gets 409. The batches used are written on
 *    the dispense as `pharmacy-batch` extensions (lot, expiry, quantity, batch id). The
 *    performer defaults to the writing user (`currentWriter().fhirUser`).
 *
 * 4. The dispense that uses the prescription up (quantity, or number of dispenses, reaching
 *    what step 1 allows) sets the MedicationRequest `completed`, in the same transaction.
 *
 * A dispensed MedicationDispense keeps its product, quantity and batches; moving it to
 * entered-in-error / cancelled / stopped / declined (or deleting it) returns the stock to its
 * batches (`return` movements), and a prescription it had completed becomes `active` again. Dispenses of products without batches here (external data,
 * untracked items) skip step 3; writes without an API caller (bulk import, HL7 v2) skip 1, 2 and
 * 4 (the source system keeps its prescriptions' status);
 * a dispense whose prescription is not held here of a product not stocked here (another
 * system's record) is stored as sent.
 */

const ACTIVE_PRESCRIPTION = 'active';

export const dispenseHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'MedicationDispense') return;
  const before = await replacedVersion<MedicationDispense>(tx, change);
  const after = change.resource as MedicationDispense | undefined;
  const was = before !== undefined && DISPENSED.has(before.status);
  const is = after !== undefined && DISPENSED.has(after.status);
  if (was && is) return keepDispensed(change, before, after);
  if (was) return undo(tx, change, before, after);
  if (is) return dispense(tx, change, after);
};

function keepDispensed(change: ResourceChange, before: MedicationDispense, after: MedicationDispense): void {
  const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
  if (!same(before.quantity?.value, after.quantity?.value) || !same(before.medicationReference?.reference, after.medicationReference?.reference)) {
    throw businessRule('conflict', 'A dispensed medication cannot change its product or quantity; mark this dispense entered-in-error and dispense again.', ['MedicationDispense.quantity']);
  }
  // The batches taken are the server's record: carried over whatever the client sent.
  const batches = (before.extension ?? []).filter((e) => e.url === BATCH_URL);
  change.resource = { ...after, extension: [...(after.extension ?? []).filter((e) => e.url !== BATCH_URL), ...batches] } as MedicationDispense;
}

async function undo(tx: StoreTransaction, change: ResourceChange, before: MedicationDispense, after: MedicationDispense | undefined): Promise<void> {
  if (after && !UNDONE.has(after.status)) {
    throw businessRule('conflict', `This medication is already dispensed; it can only be marked ${[...UNDONE].join(', ')} (which returns it to stock).`, ['MedicationDispense.status']);
  }
  await reopenPrescription(tx, change, before);
  const taken = (before.extension ?? []).filter((e) => e.url === BATCH_URL).map(readBatchExtension);
  const medicationId = taken.length > 0 ? productOf(before) : undefined;
  if (!medicationId) return;
  await lockProduct(tx, medicationId);
  const db = await tx.executor();
  const rows = new Map((await lockBatchesById(db, taken.flatMap((b) => (b.batchId ? [b.batchId] : [])))).map((r) => [r.id, r]));
  for (const b of taken) {
    const row = b.batchId ? rows.get(b.batchId) : undefined;
    const amount = b.quantity?.value ?? 0;
    // A batch written off at expiry meanwhile takes nothing back.
    if (!row || !row.active || amount <= 0) continue;
    const balance = decimal(Number(row.quantity) + amount);
    await setBatchQuantity(db, row.id, String(balance));
    row.quantity = String(balance);
    await addMovement(db, { batchId: row.id, medicationId, kind: 'return', quantity: String(amount), balance: String(balance), source: `MedicationDispense/${change.id}`, author: movementAuthor(), reason: after?.status ?? 'deleted' });
  }
  await refreshProduct(tx, medicationId);
}

/**
 * A prescription this dispense had used up is open again once the dispense is undone. Only when
 * it was fully dispensed with this dispense and is not without it: a prescription completed
 * by the prescriber short of its quantity stays completed.
 */
async function reopenPrescription(tx: StoreTransaction, change: ResourceChange, before: MedicationDispense): Promise<void> {
  const requestId = prescriptionOf(before);
  if (!requestId || !byApiCaller()) return;
  await tx.lockCondition(`dispense/MedicationRequest/${requestId}`);
  const stored = await tx.read('MedicationRequest', requestId);
  if (!stored?.json || stored.deleted) return;
  const request = JSON.parse(stored.json) as MedicationRequest;
  if (request.status !== 'completed') return;
  const state = await fillState(tx, request, requestId, change.id);
  if (fullyDispensed(state, before.quantity?.value ?? 0) && !fullyDispensed(state, undefined)) {
    await setPrescriptionStatus(tx, requestId, 'completed', 'active');
  }
}

function prescriptionOf(d: MedicationDispense): string | undefined {
  return (d.authorizingPrescription ?? []).map((r) => referenceTo('MedicationRequest', r.reference)).find((id) => id !== undefined);
}

function productOf(d: MedicationDispense, request?: MedicationRequest): string | undefined {
  return referenceTo('Medication', d.medicationReference?.reference) ?? referenceTo('Medication', request?.medicationReference?.reference);
}

async function dispense(tx: StoreTransaction, change: ResourceChange, dispense: MedicationDispense): Promise<void> {
  const requestId = prescriptionOf(dispense);
  let request: MedicationRequest | undefined;
  let completes = false;
  const writer = currentWriter();
  if (requestId) {
    // Dispenses of one prescription queue here: two cannot both pass "not fully dispensed".
    await tx.lockCondition(`dispense/MedicationRequest/${requestId}`);
    const stored = await tx.read('MedicationRequest', requestId);
    if (!stored?.json || stored.deleted) {
      // Another system's record (its prescription is not held here, its product not stocked
      // here: an outside pharmacy, a history import) is stored as sent; a dispense from this
      // pharmacy's stock needs a prescription that exists.
      const product = productOf(dispense, undefined);
      if (product && (await tracksStock(await tx.executor(), product))) {
        throw businessRule('invalid', `The prescription MedicationRequest/${requestId} does not exist.`, ['MedicationDispense.authorizingPrescription']);
      }
      return;
    }
    request = JSON.parse(stored.json) as MedicationRequest;
    // Writes with no API caller (bulk import, HL7 v2 feed) bring past or another system's
    // dispenses: recorded (and their stock taken) without re-judging the prescription.
    if (writer) {
      completes = await checkPrescription(tx, change, dispense, request, requestId);
      await checkDetectedIssues(tx, dispense, requestId);
    }
  }
  let result = dispense;
  if (!result.performer?.length && writer?.fhirUser) result = { ...result, performer: [{ actor: { reference: writer.fhirUser } }] };
  const medicationId = productOf(dispense, request);
  if (medicationId && (await tracksStock(await tx.executor(), medicationId))) {
    result = { ...result, extension: [...(result.extension ?? []).filter((e) => e.url !== BATCH_URL), ...(await takeStock(tx, change, result, medicationId))] };
  }
  change.resource = result;
  if (completes && requestId) await setPrescriptionStatus(tx, requestId, ACTIVE_PRESCRIPTION, 'completed');
}

/** Step 1; true when this dispense uses the prescription up (step 4). */
async function checkPrescription(tx: StoreTransaction, change: ResourceChange, dispense: MedicationDispense, request: MedicationRequest, requestId: string): Promise<boolean> {
  const label = `Prescription MedicationRequest/${requestId}`;
  const patientOf = (reference: string | undefined) => referenceTo('Patient', reference);
  if (patientOf(request.subject?.reference) && patientOf(dispense.subject?.reference) !== patientOf(request.subject?.reference)) {
    throw businessRule('invalid', `${label} is for Patient/${patientOf(request.subject?.reference)}; it cannot be dispensed to another patient.`, ['MedicationDispense.subject']);
  }
  const prescribed = referenceTo('Medication', request.medicationReference?.reference);
  const given = referenceTo('Medication', dispense.medicationReference?.reference);
  if (prescribed && given && prescribed !== given) {
    throw businessRule('invalid', `${label} prescribes Medication/${prescribed}, not Medication/${given}.`, ['MedicationDispense.medicationReference']);
  }
  if (request.status !== ACTIVE_PRESCRIPTION) {
    const why = request.status === 'completed' ? 'is completed (fully dispensed)' : `is ${request.status}`;
    throw businessRule('conflict', `${label} ${why}; only an active prescription can be dispensed.`, ['MedicationDispense.authorizingPrescription']);
  }
  const validity = request.dispenseRequest?.validityPeriod;
  const now = new Date().toISOString();
  if (validity?.end && new Date(validity.end.length === 10 ? `${validity.end}T23:59:59.999Z` : validity.end).toISOString() < now) {
    throw businessRule('conflict', `${label} expired on ${validity.end}; ask the prescriber for a new prescription.`, ['MedicationDispense.authorizingPrescription']);
  }
  if (validity?.start && new Date(validity.start).toISOString() > now) {
    throw businessRule('conflict', `${label} is valid only from ${validity.start}.`, ['MedicationDispense.authorizingPrescription']);
  }
  const state = await fillState(tx, request, requestId, change.id);
  const { allowed, unit } = state;
  const wanted = dispense.quantity?.value;
  if (allowed !== undefined) {
    const remaining = decimal(allowed - state.quantity);
    if (remaining <= 0) throw businessRule('conflict', `${label} is fully dispensed (${allowed} ${unit} of ${allowed} ${unit}).`.replace(/ {2}/g, ' '), ['MedicationDispense.authorizingPrescription']);
    if (wanted === undefined || !(wanted > 0)) throw businessRule('invalid', 'The dispensed quantity is missing or not above zero.', ['MedicationDispense.quantity']);
    if (wanted > remaining) throw businessRule('conflict', `${label} has ${remaining} ${unit} left to dispense; ${wanted} ${unit} asked.`.replace(/ {2}/g, ' '), ['MedicationDispense.quantity']);
  } else if (fullyDispensed(state, undefined)) {
    throw businessRule('conflict', `${label} is fully dispensed (${state.count} of ${state.fills} fills).`, ['MedicationDispense.authorizingPrescription']);
  }
  return fullyDispensed(state, wanted ?? 0);
}

function isCritical(issue: DetectedIssue): boolean {
  return issue.severity === 'high' && issue.status !== 'cancelled' && issue.status !== 'entered-in-error';
}

/** FR-PH-003: unmitigated critical findings need a pharmacist's override, recorded on each finding. */
async function checkDetectedIssues(tx: StoreTransaction, dispense: MedicationDispense, requestId: string): Promise<void> {
  const found = await referencing(await tx.executor(), 'DetectedIssue', 'implicated', 'MedicationRequest', requestId);
  const open = found.map((f) => ({ id: f.id, issue: JSON.parse(f.json) as DetectedIssue })).filter(({ issue }) => isCritical(issue) && !(issue.mitigation ?? []).some((m) => m.author));
  if (open.length === 0) return;
  const listed = new Set((dispense.detectedIssue ?? []).map((r) => referenceTo('DetectedIssue', r.reference)));
  const reason = (dispense.extension ?? []).find((e: Extension) => e.url === OVERRIDE_URL)?.valueString?.trim();
  const missing = open.filter((o) => !listed.has(o.id));
  if (!reason || missing.length > 0) {
    const ids = (reason ? missing : open).map((o) => `DetectedIssue/${o.id}`).join(', ');
    const what = open.map((o) => o.issue.detail ?? o.issue.code?.text ?? o.issue.code?.coding?.[0]?.display).filter(Boolean).join('; ');
    throw businessRule(
      'conflict',
      `Critical warning on this prescription (${ids}${what ? `: ${what}` : ''}). A pharmacist must override it: list it in MedicationDispense.detectedIssue with the extension ${OVERRIDE_URL} giving the reason.`,
      ['MedicationDispense.detectedIssue'],
    );
  }
  const writer = currentWriter();
  if (writer?.kind !== 'user' || writer.role !== 'PHARMACIST' || !writer.fhirUser) {
    throw errors.forbidden('Only a pharmacist (a PHARMACIST user with a fhirUser) can override a critical warning.');
  }
  const date = new Date().toISOString();
  for (const { id } of open) {
    const current = await tx.readForUpdate('DetectedIssue', id);
    if (!current?.json || current.deleted) continue;
    const issue = JSON.parse(current.json) as DetectedIssue;
    const mitigation = [...(issue.mitigation ?? []), { action: { text: `Pharmacist override at dispensing: ${reason}` }, date, author: { reference: writer.fhirUser } }];
    await tx.update({ ...issue, mitigation } as DetectedIssue, current, 'PUT');
  }
}

/** FIFO by nearest expiry over the locked batches; the `pharmacy-batch` extensions of what was taken. */
async function takeStock(tx: StoreTransaction, change: ResourceChange, dispense: MedicationDispense, medicationId: string): Promise<Extension[]> {
  const wanted = dispense.quantity?.value;
  if (wanted === undefined || !(wanted > 0)) throw businessRule('invalid', 'The dispensed quantity is missing or not above zero.', ['MedicationDispense.quantity']);
  const product = await lockProduct(tx, medicationId);
  const db = await tx.executor();
  const day = today();
  const usable = (await lockActiveBatches(db, medicationId)).filter((b) => b.expiry >= day && Number(b.quantity) > 0);
  const available = decimal(usable.reduce((sum, b) => sum + Number(b.quantity), 0));
  const unit = dispense.quantity?.unit ?? usable[0]?.unit ?? '';
  if (available < wanted) {
    throw businessRule('conflict', `Only ${available} ${unit} of ${medicationName(product)} in stock (unexpired); ${wanted} ${unit} asked. Dispense a part (partial dispense) or wait for a delivery.`.replace(/ {2}/g, ' '), ['MedicationDispense.quantity']);
  }
  let left = wanted;
  const taken: Extension[] = [];
  for (const b of usable) {
    if (left <= 0) break;
    const take = decimal(Math.min(left, Number(b.quantity)));
    const balance = decimal(Number(b.quantity) - take);
    left = decimal(left - take);
    await setBatchQuantity(db, b.id, String(balance));
    await addMovement(db, { batchId: b.id, medicationId, kind: 'dispense', quantity: String(-take), balance: String(balance), source: `MedicationDispense/${change.id}`, author: movementAuthor() });
    taken.push(batchExtension(BATCH_URL, { lot: b.lot, expiry: b.expiry, quantity: { value: take, ...(unit ? { unit } : {}) }, batchId: b.id }));
  }
  await refreshProduct(tx, medicationId, day);
  return taken;
}
