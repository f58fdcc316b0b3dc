import type { Bundle, DiagnosticReport, FhirResource, Observation, Resource, ServiceRequest, Specimen, Subscription, Task } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { create as createIn, read as readIn } from './billing-helpers.js';
import { signInAs } from './smart-helpers.js';
import { startReceiver, until, type Receiver } from './subscriptions-helpers.js';

/**
 * Lab order tracking (issue 14 §1, seed 003 lab_orders.status, seed 004 FR-LAB-001;
 * src/workflows/lab/order-tracking.ts): each lab order has a Task (focus = the ServiceRequest)
 * whose businessStatus follows the order through specimen collection, receipt, analysis,
 * preliminary results and the dual verification, or its cancellation — followed by search,
 * history or a Subscription on Task.
 */

const LAB = 'https://fhir.hospital.example.org/CodeSystem/lab-test';
const STATUS = 'https://fhir.hospital.example.org/CodeSystem/lab-order-status';
const PATHOLOGIST = { system: 'https://fhir.hospital.example.org/CodeSystem/lab-role', code: 'pathologist' };

let t: TestApp;
let patient: string;
let lab: string;
let receiver: Receiver;

beforeAll(async () => {
  t = await startTestApp({ SUBSCRIPTION_BACKOFF_MS: '50', SUBSCRIPTION_POLL_MS: '100' });
  patient = await create({ resourceType: 'Patient', name: [{ family: 'Pham', given: ['Lan'] }], gender: 'female', birthDate: '1985-04-04' });
  lab = await create({ resourceType: 'Organization', name: 'Central laboratory' });
  receiver = await startReceiver();
}, 60_000);

afterAll(async () => {
  await t?.close();
  await receiver?.close();
});

const auth = (token?: string) => (token ? { headers: { authorization: `Bearer ${token}` } } : {});

const create = async <T extends FhirResource>(resource: T, token?: string): Promise<string> => (await createIn<T>(t, resource, token)).id;
const read = <T extends Resource>(type: string, id: string): Promise<T> => readIn<T>(t, type, id);

async function update<T extends Resource>(type: string, id: string, change: (r: T) => T, token?: string): Promise<void> {
  const res = await t.request({ method: 'PUT', url: `/fhir/${type}/${id}`, payload: change(await read<T>(type, id)), ...auth(token) });
  expect(res.statusCode, res.body).toBe(200);
}

function order(code: string, extra: Partial<ServiceRequest> = {}): ServiceRequest {
  return { resourceType: 'ServiceRequest', status: 'active', intent: 'order', code: { coding: [{ system: LAB, code }] }, subject: { reference: `Patient/${patient}` }, ...extra };
}

/** The order's Tasks by `Task?focus=ServiceRequest/[id]`. */
async function tasksOf(orderId: string): Promise<Task[]> {
  const res = await t.request({ method: 'GET', url: `/fhir/Task?focus=ServiceRequest/${orderId}` });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle<Task>).entry ?? []).map((e) => e.resource!);
}

async function trackOf(orderId: string): Promise<Task> {
  const tasks = await tasksOf(orderId);
  expect(tasks).toHaveLength(1);
  return tasks[0]!;
}

const step = (task: Task) => [task.status, task.businessStatus?.coding?.find((c) => c.system === STATUS)?.code];

describe('FR-LAB-001 order tracking with Task', () => {
  it('FR-LAB-001: a Task follows the order: ordered → specimen collected → received → in progress → preliminary → final (dual verification); the history shows every step, a Subscription on Task follows it to final', async () => {
    const orderId = await create(order('GLU', { priority: 'stat', performer: [{ reference: `Organization/${lab}` }], requester: { reference: 'Practitioner/orderer-t' } }));
    const sub = await create<Subscription>({ resourceType: 'Subscription', status: 'requested', reason: 'follow the order', criteria: `Task?focus=ServiceRequest/${orderId}`, channel: { type: 'rest-hook', endpoint: receiver.url, payload: 'application/fhir+json' } });
    expect(sub).toBeTruthy();

    let task = await trackOf(orderId);
    expect(task).toMatchObject({
      status: 'requested',
      intent: 'order',
      priority: 'stat',
      focus: { reference: `ServiceRequest/${orderId}` },
      basedOn: [{ reference: `ServiceRequest/${orderId}` }],
      for: { reference: `Patient/${patient}` },
      owner: { reference: `Organization/${lab}` },
      requester: { reference: 'Practitioner/orderer-t' },
      code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
    });
    expect(step(task)).toEqual(['requested', 'ordered']);
    // Also found by owner and patient, the way a lab or a portal lists them.
    const byOwner = (await t.request({ method: 'GET', url: `/fhir/Task?owner=Organization/${lab}&status=requested` })).json() as Bundle;
    expect(byOwner.entry?.map((e) => e.resource?.id)).toContain(task.id);

    const nurse = await signInAs(t, 'NURSE', 'Practitioner/nurse-t');
    const specimen = await create<Specimen>({ resourceType: 'Specimen', status: 'available', subject: { reference: `Patient/${patient}` }, request: [{ reference: `ServiceRequest/${orderId}` }] }, nurse.token);
    task = await trackOf(orderId);
    expect(step(task)).toEqual(['in-progress', 'specimen-collected']);
    expect(task.executionPeriod?.start).toBeTruthy();

    await update<Specimen>('Specimen', specimen, (s) => ({ ...s, receivedTime: new Date().toISOString() }));
    expect(step(await trackOf(orderId))).toEqual(['in-progress', 'received']);

    const tech = await signInAs(t, 'LAB_TECHNICIAN', 'Practitioner/tech-t');
    const obs = await create<Observation>({ resourceType: 'Observation', status: 'registered', code: { coding: [{ system: LAB, code: 'GLU' }] }, subject: { reference: `Patient/${patient}` }, basedOn: [{ reference: `ServiceRequest/${orderId}` }] }, tech.token);
    expect(step(await trackOf(orderId))).toEqual(['in-progress', 'in-progress']);

    await update<Observation>('Observation', obs, (o) => ({ ...o, status: 'preliminary', valueQuantity: { value: 95, unit: 'mg/dL' } }), tech.token);
    const reportId = await create<DiagnosticReport>({ resourceType: 'DiagnosticReport', status: 'preliminary', basedOn: [{ reference: `ServiceRequest/${orderId}` }], code: { coding: [{ system: LAB, code: 'GLU' }] }, subject: { reference: `Patient/${patient}` }, result: [{ reference: `Observation/${obs}` }] }, tech.token);
    task = await trackOf(orderId);
    expect(step(task)).toEqual(['in-progress', 'preliminary']);
    expect(task.output?.map((o) => o.valueReference?.reference)).toEqual([`DiagnosticReport/${reportId}`]);

    expect((await t.request({ method: 'POST', url: `/fhir/DiagnosticReport/${reportId}/$verify`, ...auth(tech.token) })).statusCode).toBe(200);
    expect(step(await trackOf(orderId))).toEqual(['in-progress', 'preliminary']);
    await create({ resourceType: 'PractitionerRole', active: true, practitioner: { reference: 'Practitioner/path-t' }, code: [{ coding: [PATHOLOGIST] }] });
    const pathologist = await signInAs(t, 'DOCTOR', 'Practitioner/path-t');
    const verified = await t.request({ method: 'POST', url: `/fhir/DiagnosticReport/${reportId}/$verify`, ...auth(pathologist.token) });
    expect(verified.statusCode, verified.body).toBe(200);
    task = await trackOf(orderId);
    expect(step(task)).toEqual(['completed', 'final']);
    expect(task.executionPeriod?.end).toBeTruthy();
    const finished = (await t.request({ method: 'GET', url: `/fhir/Task?business-status=${STATUS}|final&patient=Patient/${patient}` })).json() as Bundle;
    expect(finished.entry?.map((e) => e.resource?.id)).toEqual([task.id]);

    // The history of the Task is the order's timeline: a version per step (and one when the report
    // joined its outputs).
    const history = (await t.request({ method: 'GET', url: `/fhir/Task/${task.id}/_history` })).json() as Bundle<Task>;
    expect((history.entry ?? []).map((e) => step(e.resource!)).reverse()).toEqual([
      ['requested', 'ordered'],
      ['in-progress', 'specimen-collected'],
      ['in-progress', 'received'],
      ['in-progress', 'in-progress'],
      ['in-progress', 'preliminary'],
      ['in-progress', 'preliminary'],
      ['completed', 'final'],
    ]);
    // The subscriber is told (rest-hook PUT of the Task) up to the final step; versions that
    // were already replaced when a delivery round ran are skipped (docs/subscriptions.md).
    const timeline = (history.entry ?? []).map((e) => JSON.stringify(step(e.resource!))).reverse();
    const received = await until(async () => {
      const got = receiver.received.filter((r) => r.path === `/hook/Task/${task.id}`);
      return got.length > 0 && JSON.stringify(step(JSON.parse(got.at(-1)!.body) as Task)) === JSON.stringify(['completed', 'final']) ? got : undefined;
    }, 30_000, 'the final step delivered');
    const delivered = received.map((r) => JSON.stringify(step(JSON.parse(r.body) as Task)));
    expect(delivered.length).toBeGreaterThan(1);
    expect(delivered.map((d) => timeline.indexOf(d)).every((at, i, all) => at >= 0 && (i === 0 || at >= all[i - 1]!))).toBe(true);
    expect(received.every((r) => r.path === `/hook/Task/${task.id}`)).toBe(true);
  });

  it('FR-LAB-001: a revoked order cancels its Task; later results do not move it; an order on hold holds its Task', async () => {
    const held = await create(order('CBC'));
    await update<ServiceRequest>('ServiceRequest', held, (s) => ({ ...s, status: 'on-hold' }));
    expect((await trackOf(held)).status).toBe('on-hold');
    await update<ServiceRequest>('ServiceRequest', held, (s) => ({ ...s, status: 'active' }));
    expect(step(await trackOf(held))).toEqual(['requested', 'ordered']);

    await update<ServiceRequest>('ServiceRequest', held, (s) => ({ ...s, status: 'revoked' }));
    const cancelled = await trackOf(held);
    expect(step(cancelled)).toEqual(['cancelled', 'cancelled']);
    await create<Specimen>({ resourceType: 'Specimen', status: 'available', subject: { reference: `Patient/${patient}` }, request: [{ reference: `ServiceRequest/${held}` }] });
    const after = await trackOf(held);
    expect(step(after)).toEqual(['cancelled', 'cancelled']);
    expect(after.meta?.versionId).toBe(cancelled.meta?.versionId);
  });

  it('FR-LAB-001: a draft order gets its Task when it is ordered; orders outside the lab catalogue get none', async () => {
    const draft = await create(order('HB', { status: 'draft' }));
    expect(await tasksOf(draft)).toHaveLength(0);
    await update<ServiceRequest>('ServiceRequest', draft, (s) => ({ ...s, status: 'active' }));
    expect(step(await trackOf(draft))).toEqual(['requested', 'ordered']);
    // Without a performer the laboratory is the owner by name.
    expect((await trackOf(draft)).owner).toEqual({ display: 'Laboratory' });

    const imaging = await create<ServiceRequest>({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', code: { coding: [{ system: 'http://loinc.org', code: '36643-5' }] }, subject: { reference: `Patient/${patient}` } });
    expect(await tasksOf(imaging)).toHaveLength(0);
  });

  it('FR-LAB-001: tracking Tasks are the server\'s: clients cannot create, change or delete them (422)', async () => {
    const orderId = await create(order('K'));
    const task = await trackOf(orderId);
    const changed = await t.request({ method: 'PUT', url: `/fhir/Task/${task.id}`, payload: { ...task, status: 'completed' } });
    expect(changed.statusCode, changed.body).toBe(422);
    const forged = await t.request({ method: 'POST', url: '/fhir/Task', payload: { ...task, id: undefined, meta: undefined } });
    expect(forged.statusCode, forged.body).toBe(422);
    const deleted = await t.request({ method: 'DELETE', url: `/fhir/Task/${task.id}` });
    expect(deleted.statusCode, deleted.body).toBe(422);
    expect(step(await trackOf(orderId))).toEqual(['requested', 'ordered']);
    // Other Tasks are untouched by the rule.
    await create<Task>({ resourceType: 'Task', status: 'requested', intent: 'order', focus: { reference: `ServiceRequest/${orderId}` }, description: 'call the patient' });
    expect(await tasksOf(orderId)).toHaveLength(2);
  });
});
