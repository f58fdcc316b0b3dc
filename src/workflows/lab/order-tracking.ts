import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import type { DiagnosticReport, Observation, Reference, ServiceRequest, Specimen, Task } from 'fhir/r4.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import type { ResourceChange, StoredVersion } from '../../storage/types.js';
import { businessRule, referenceTo } from '../scheduling-rules.js';
import type { LabCatalog } from './catalog.js';

/**
 * Order tracking (seed 003 lab_orders.status REQUESTED → SAMPLE_COLLECTED → PROCESSING →
 * RESULTS_PENDING_REVIEW → COMPLETED / CANCELLED; seed 004 FR-LAB-001 "track specimen
 * collection status"): each lab order (a ServiceRequest of the catalogue) has one FHIR Task
 * that the server keeps in step with the lab workflow, before commit in the same transaction
 * as the write that moved the order. A client follows an order with
 * `GET Task?focus=ServiceRequest/[id]` (or `Task?based-on=…`, `Task?patient=…`), the Task's
 * `_history`, or a Subscription on Task.
 *
 * The Task: id `labtask-<order id>`, intent `order`, code `fulfill`, focus and basedOn = the
 * ServiceRequest, for = its patient, owner = the order's performer (else the laboratory as a
 * display), requester and priority copied from the order. `businessStatus` (CodeSystem
 * lab-order-status) moves forward only:
 *
 * | step | moved by | Task.status |
 * |---|---|---|
 * | ordered | ServiceRequest active | requested |
 * | specimen-collected | a Specimen with `request` = the order, collected (status available / collection time) | in-progress |
 * | received | that Specimen's `receivedTime` | in-progress |
 * | in-progress | a result based on the order (Observation / DiagnosticReport `basedOn`) registered or partial | in-progress |
 * | preliminary | such a result preliminary (entered, not yet verified) | in-progress |
 * | final | such a result final / amended / corrected (verified: technician and pathologist) | completed |
 * | cancelled | the ServiceRequest revoked or deleted (entered-in-error: Task entered-in-error) | cancelled |
 *
 * An order put on hold puts its Task on hold (and back). Only these writes do anything: a write
 * of another resource type costs nothing; a Specimen, Observation or DiagnosticReport costs one
 * read of the Task per order it names (and a write when the step moves). The Tasks are the
 * server's: clients cannot create, change or delete them (422).
 */

export const LAB_ORDER_STATUS_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/lab-order-status';
const TASK_CODE_SYSTEM = 'http://hl7.org/fhir/CodeSystem/task-code';
const TASK_PREFIX = 'labtask-';

export const STEPS = ['ordered', 'specimen-collected', 'received', 'in-progress', 'preliminary', 'final'] as const;
export type Step = (typeof STEPS)[number] | 'cancelled';

const DISPLAY: Record<Step, string> = {
  ordered: 'Ordered',
  'specimen-collected': 'Specimen collected',
  received: 'Received in laboratory',
  'in-progress': 'In progress',
  preliminary: 'Preliminary results',
  final: 'Final (verified)',
  cancelled: 'Cancelled',
};

/** Writes of tracking Tasks by this module (the guard lets only these through). */
const tracking = new AsyncLocalStorage<true>();

export function trackingTaskId(orderId: string): string {
  return orderId.length <= 56 ? `${TASK_PREFIX}${orderId}` : `${TASK_PREFIX}${createHash('sha256').update(orderId).digest('hex').slice(0, 40)}`;
}

function stepOf(task: Task): Step | undefined {
  const code = task.businessStatus?.coding?.find((c) => c.system === LAB_ORDER_STATUS_SYSTEM)?.code;
  return code === 'cancelled' || (STEPS as readonly string[]).includes(code ?? '') ? (code as Step) : undefined;
}

function rank(step: Step | undefined): number {
  return step === undefined ? -1 : step === 'cancelled' ? Number.MAX_SAFE_INTEGER : STEPS.indexOf(step);
}

function taskStatusOf(step: Step): Task['status'] {
  return step === 'ordered' ? 'requested' : step === 'final' ? 'completed' : step === 'cancelled' ? 'cancelled' : 'in-progress';
}

const OWNER_TYPES = ['Organization', 'HealthcareService', 'PractitionerRole', 'Practitioner', 'CareTeam', 'Device'];

function ownerOf(order: ServiceRequest): Reference {
  const performer = order.performer?.find((p) => OWNER_TYPES.some((type) => referenceTo(type, p.reference)));
  return performer ?? { display: 'Laboratory' };
}

function isLabOrder(order: ServiceRequest | undefined, catalog: LabCatalog): order is ServiceRequest {
  return (order?.code?.coding ?? []).some((c) => c.system === catalog.system && catalog.test(c.code ?? '') !== undefined);
}

/** The Task of a new order, at step `ordered`. */
function newTask(orderId: string, order: ServiceRequest, now: string): Task {
  return {
    resourceType: 'Task',
    id: trackingTaskId(orderId),
    basedOn: [{ reference: `ServiceRequest/${orderId}` }],
    status: 'requested',
    businessStatus: { coding: [{ system: LAB_ORDER_STATUS_SYSTEM, code: 'ordered', display: DISPLAY.ordered }], text: DISPLAY.ordered },
    intent: 'order',
    ...(order.priority ? { priority: order.priority } : {}),
    code: { coding: [{ system: TASK_CODE_SYSTEM, code: 'fulfill', display: 'Fulfill the focal request' }] },
    description: `Laboratory order: ${order.code?.text ?? order.code?.coding?.[0]?.display ?? order.code?.coding?.[0]?.code ?? ''}`.trim(),
    focus: { reference: `ServiceRequest/${orderId}` },
    ...(order.subject ? { for: order.subject } : {}),
    ...(order.encounter ? { encounter: order.encounter } : {}),
    authoredOn: order.authoredOn ?? now,
    lastModified: now,
    ...(order.requester ? { requester: order.requester } : {}),
    owner: ownerOf(order),
  };
}

/** The Task moved to `step` (never backwards; cancelled is the end), or undefined when nothing changes. */
function moved(task: Task, step: Step, now: string, result?: string): Task | undefined {
  const current = stepOf(task);
  const forward = current !== 'cancelled' && rank(step) > rank(current);
  const output = result && !(task.output ?? []).some((o) => o.valueReference?.reference === result) ? [...(task.output ?? []), { type: { text: 'result' }, valueReference: { reference: result } }] : task.output;
  if (!forward && output === task.output) return undefined;
  const next: Task = { ...task, lastModified: now, ...(output ? { output } : {}) };
  if (forward) {
    next.businessStatus = { coding: [{ system: LAB_ORDER_STATUS_SYSTEM, code: step, display: DISPLAY[step] }], text: DISPLAY[step] };
    // An order on hold stays on hold while its specimen and results move on.
    next.status = task.status === 'on-hold' && step !== 'cancelled' && step !== 'final' ? 'on-hold' : taskStatusOf(step);
    const start = task.executionPeriod?.start ?? (step === 'ordered' ? undefined : now);
    const end = step === 'final' || step === 'cancelled' ? now : undefined;
    if (start || end) next.executionPeriod = { ...(start ? { start } : {}), ...(end ? { end } : {}) };
  }
  return next;
}

async function store(tx: StoreTransaction, task: Task, stored: StoredVersion | undefined): Promise<void> {
  await tracking.run(true, async () => {
    if (stored && !stored.deleted) await tx.update(task, stored);
    else await tx.create(task, 'PUT', task.id!, stored);
  });
}

/** The order's Task, created for an order of the catalogue that has none yet (orders older than tracking). */
async function taskOf(tx: StoreTransaction, orderId: string, catalog: LabCatalog, now: string): Promise<{ task: Task; stored?: StoredVersion } | undefined> {
  const found = await tx.readForUpdate('Task', trackingTaskId(orderId));
  if (found?.json && !found.deleted) return { task: JSON.parse(found.json) as Task, stored: found };
  const order = await tx.read('ServiceRequest', orderId);
  if (!order?.json || order.deleted) return undefined;
  const request = JSON.parse(order.json) as ServiceRequest;
  if (!isLabOrder(request, catalog) || request.status === 'draft') return undefined;
  return { task: newTask(orderId, request, now), ...(found ? { stored: found } : {}) };
}

async function advance(tx: StoreTransaction, orderIds: readonly string[], step: Step, catalog: LabCatalog, now: string, result?: string): Promise<void> {
  for (const orderId of new Set(orderIds)) {
    const found = await taskOf(tx, orderId, catalog, now);
    if (!found) continue;
    const created = found.stored === undefined || found.stored.deleted;
    const next = moved(found.task, step, now, result) ?? (created ? found.task : undefined);
    if (next) await store(tx, next, found.stored);
  }
}

function orderIdsOf(references: Reference[] | undefined): string[] {
  return (references ?? []).map((r) => referenceTo('ServiceRequest', r.reference)).filter((id): id is string => id !== undefined);
}

async function onOrder(tx: StoreTransaction, change: ResourceChange, catalog: LabCatalog): Promise<void> {
  const order = change.resource as ServiceRequest | undefined;
  const now = change.lastUpdated;
  if (!order) {
    // A deleted order: its Task (if any) is cancelled.
    const found = await tx.readForUpdate('Task', trackingTaskId(change.id));
    if (!found?.json || found.deleted) return;
    const next = moved(JSON.parse(found.json) as Task, 'cancelled', now);
    if (next) await store(tx, next, found);
    return;
  }
  if (!isLabOrder(order, catalog)) return;
  // A new order under a server-assigned id has no Task yet: no read (the create stays one flush).
  const found = change.method === 'POST' && !change.previous ? undefined : await tx.readForUpdate('Task', trackingTaskId(change.id));
  const existing = found?.json && !found.deleted ? (JSON.parse(found.json) as Task) : undefined;
  if (!existing && order.status === 'draft') return;
  let task = existing ?? newTask(change.id, order, now);
  let next: Task | undefined = existing ? undefined : task;
  const apply = (t: Task | undefined) => {
    if (t) {
      task = t;
      next = t;
    }
  };
  if (order.status === 'revoked') apply(moved(task, 'cancelled', now));
  else if (order.status === 'entered-in-error' && task.status !== 'entered-in-error') apply({ ...task, status: 'entered-in-error', lastModified: now });
  else if (order.status === 'on-hold' && !['on-hold', 'completed', 'cancelled', 'entered-in-error'].includes(task.status)) apply({ ...task, status: 'on-hold', lastModified: now });
  else if (order.status === 'active' && task.status === 'on-hold') apply({ ...task, status: taskStatusOf(stepOf(task) ?? 'ordered'), lastModified: now });
  else if (order.status === 'completed' && !['completed', 'cancelled', 'entered-in-error'].includes(task.status)) apply({ ...task, status: 'completed', lastModified: now, executionPeriod: { ...task.executionPeriod, end: now } });
  // What the order says of itself (priority, performer) follows it.
  const owner = ownerOf(order);
  if (task.priority !== order.priority || JSON.stringify(task.owner) !== JSON.stringify(owner)) {
    const rest: Task = { ...task, owner, lastModified: now };
    delete rest.priority;
    apply({ ...rest, ...(order.priority ? { priority: order.priority } : {}) });
  }
  if (next) await store(tx, next, found);
}

async function onSpecimen(tx: StoreTransaction, change: ResourceChange, catalog: LabCatalog): Promise<void> {
  const specimen = change.resource as Specimen | undefined;
  const orders = orderIdsOf(specimen?.request);
  if (orders.length === 0) return;
  const step: Step | undefined = specimen!.receivedTime ? 'received' : specimen!.status === 'available' || specimen!.collection?.collectedDateTime || specimen!.collection?.collectedPeriod ? 'specimen-collected' : undefined;
  if (step) await advance(tx, orders, step, catalog, change.lastUpdated);
}

const RESULT_STEP: Record<string, Step> = { registered: 'in-progress', partial: 'in-progress', preliminary: 'preliminary', final: 'final', amended: 'final', corrected: 'final', appended: 'final' };

async function onResult(tx: StoreTransaction, change: ResourceChange, catalog: LabCatalog): Promise<void> {
  const result = change.resource as Observation | DiagnosticReport | undefined;
  if (!result || !(result.code?.coding ?? []).some((c) => c.system === catalog.system)) return;
  const orders = orderIdsOf(result.basedOn);
  const step = RESULT_STEP[result.status];
  if (orders.length === 0 || !step) return;
  await advance(tx, orders, step, catalog, change.lastUpdated, result.resourceType === 'DiagnosticReport' ? `DiagnosticReport/${change.id}` : undefined);
}

/** Tracking Tasks are written by the server only (a client's change would be overwritten, or hide the order's state). */
function guard(change: ResourceChange): void {
  if (tracking.getStore() === true) return;
  const task = change.resource as Task | undefined;
  const ours = change.id.startsWith(TASK_PREFIX) || (task?.businessStatus?.coding ?? []).some((c) => c.system === LAB_ORDER_STATUS_SYSTEM);
  if (!ours) return;
  throw businessRule('invalid', 'Laboratory order tracking Tasks are kept by the server: they follow the order, its specimens and results (change those instead).', ['Task']);
}

export function labOrderTrackingHook(catalog: LabCatalog): BeforeWriteHook {
  return (tx, change) => {
    switch (change.resourceType) {
      case 'ServiceRequest':
        return onOrder(tx, change, catalog);
      case 'Specimen':
        return onSpecimen(tx, change, catalog);
      case 'Observation':
      case 'DiagnosticReport':
        return onResult(tx, change, catalog);
      case 'Task':
        return guard(change);
      default:
        return undefined;
    }
  };
}
