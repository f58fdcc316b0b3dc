import type { DetectedIssue, Medication, MedicationDispense, MedicationRequest, OperationOutcome, Parameters, Practitioner } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { RetryLaterError } from '../../src/jobs/types.js';
import { EXPIRY_JOB, expiryQueue } from '../../src/workflows/pharmacy/expiry.js';
import { signInAs } from './smart-helpers.js';
import { channelOf, notificationsTo, waitForNotifications } from './notifications-helpers.js';
import {
  batchesTaken,
  BATCH,
  create,
  dispenseBody,
  EXPIRING,
  inDays,
  medication,
  OVERRIDE,
  patient,
  pdfText,
  postDispense,
  prescription,
  read,
  receive,
  stock,
  stockExtension,
} from './workflows-pharmacy-helpers.js';

/**
 * Pharmacy (seed 004 FR-PH-001 / FR-PH-002 / FR-PH-003, issue 13 §4; src/workflows/pharmacy/):
 * stock per batch from SupplyDelivery receipts, dispensing that checks the prescription and
 * takes stock FIFO by nearest expiry under row locks, pharmacist override of critical
 * warnings, the receipt PDF, the expiry sweep and the stock alerts.
 */

let t: TestApp;
let pharmacist: string;
let pharmacist2: string;
let ph1: string;
let ph2: string;

beforeAll(async () => {
  t = await startTestApp({ NOTIFICATIONS: 'on', NOTIFICATION_DEFAULT_CHANNELS: 'in-app', NOTIFICATION_HOSPITAL_NAME: 'Bach Mai Hospital', NOTIFICATION_BACKOFF_MS: '50' });
  pharmacist = (await create<Practitioner>(t, { resourceType: 'Practitioner', name: [{ family: 'Tran', given: ['Minh'] }] })).id!;
  pharmacist2 = (await create<Practitioner>(t, { resourceType: 'Practitioner', name: [{ family: 'Le', given: ['Hoa'] }] })).id!;
  await create(t, {
    resourceType: 'PractitionerRole',
    active: true,
    practitioner: { reference: `Practitioner/${pharmacist}` },
    code: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/user-role', code: 'PHARMACIST' }] }],
  });
  ph1 = (await signInAs(t, 'PHARMACIST', `Practitioner/${pharmacist}`)).token;
  ph2 = (await signInAs(t, 'PHARMACIST', `Practitioner/${pharmacist2}`)).token;
}, 120_000);

afterAll(async () => {
  await t?.close();
});

const outcomeText = (body: string) => (JSON.parse(body) as OperationOutcome).issue.map((i) => i.diagnostics ?? '').join(' ');

describe('stock per batch (FR-PH-001)', () => {
  it('FR-PH-001: a SupplyDelivery receives a batch; the Medication shows the stock and $stock the batches and movements', async () => {
    const med = await medication(t, 'Amoxicillin 500 mg');
    const delivery = await receive(t, med, 'AMX-1', inDays(400), 30);
    await receive(t, med, 'AMX-1', inDays(400), 20);
    expect(stockExtension(await read<Medication>(t, 'Medication', med))).toBe(50);
    const s = await stock(t, med);
    expect(s.total).toBe(50);
    expect(s.batches).toEqual([expect.objectContaining({ lot: 'AMX-1', expiry: inDays(400), quantity: 50, active: true })]);
    expect(s.movements.map((m) => [m.kind, m.quantity, m.balance])).toEqual([
      ['receipt', 20, 50],
      ['receipt', 30, 30],
    ]);
    expect(s.movements[1]!.source).toBe(`SupplyDelivery/${delivery}`);
    // A client cannot set the stock by editing the Medication: the batches decide.
    const current = await read<Medication>(t, 'Medication', med);
    const edited = await t.request({ method: 'PUT', url: `/fhir/Medication/${med}`, payload: { ...current, extension: [{ url: 'https://fhir.hospital.example.org/StructureDefinition/medication-stock-quantity', valueQuantity: { value: 999 } }] } });
    expect(edited.statusCode, edited.body).toBe(200);
    expect(stockExtension(edited.json() as Medication)).toBe(50);
  });

  it('FR-PH-001: receipts without lot / expiry, of an expired batch, or changed after receipt are refused', async () => {
    const med = await medication(t, 'Cefuroxime 250 mg');
    const noLot = await t.request({
      method: 'POST',
      url: '/fhir/SupplyDelivery',
      payload: { resourceType: 'SupplyDelivery', status: 'completed', suppliedItem: { itemReference: { reference: `Medication/${med}` }, quantity: { value: 5 } } },
    });
    expect(noLot.statusCode).toBe(422);
    expect(outcomeText(noLot.body)).toMatch(/lot number and expiry/);
    const expired = await t.request({
      method: 'POST',
      url: '/fhir/SupplyDelivery',
      payload: {
        resourceType: 'SupplyDelivery',
        status: 'completed',
        suppliedItem: { itemReference: { reference: `Medication/${med}` }, quantity: { value: 5 } },
        extension: [{ url: BATCH, extension: [{ url: 'lotNumber', valueString: 'OLD' }, { url: 'expirationDate', valueDate: inDays(-1) }] }],
      },
    });
    expect(expired.statusCode).toBe(422);
    const id = await receive(t, med, 'CEF-1', inDays(300), 10);
    const delivery = await read<{ resourceType: string; suppliedItem: { quantity: { value: number } } }>(t, 'SupplyDelivery', id);
    const changed = await t.request({ method: 'PUT', url: `/fhir/SupplyDelivery/${id}`, payload: { ...delivery, suppliedItem: { ...delivery.suppliedItem, quantity: { value: 100 } } } });
    expect(changed.statusCode).toBe(409);
    expect((await stock(t, med)).total).toBe(10);
  });

  it('FR-PH-001: $adjust-stock corrects a batch as an adjustment movement, never below zero', async () => {
    const med = await medication(t, 'Omeprazole 20 mg');
    await receive(t, med, 'OME-1', inDays(300), 10);
    const adjust = (quantity: number) =>
      t.request({
        method: 'POST',
        url: `/fhir/Medication/${med}/$adjust-stock`,
        payload: { resourceType: 'Parameters', parameter: [{ name: 'lot', valueString: 'OME-1' }, { name: 'quantity', valueDecimal: quantity }, { name: 'reason', valueString: 'broken blister' }] },
      });
    const ok = await adjust(-3);
    expect(ok.statusCode, ok.body).toBe(200);
    expect((ok.json() as Parameters).parameter!.find((p) => p.name === 'total')!.valueDecimal).toBe(7);
    expect((await adjust(-8)).statusCode).toBe(409);
    const s = await stock(t, med);
    expect(s.movements[0]).toMatchObject({ kind: 'adjustment', quantity: -3, balance: 7, reason: 'broken blister' });
  });
});

describe('dispensing (FR-PH-002)', () => {
  it('FR-PH-002: dispensing takes stock FIFO by nearest expiry across two batches and records them', async () => {
    const med = await medication(t, 'Paracetamol 500 mg');
    await receive(t, med, 'PARA-LATE', inDays(500), 10);
    await receive(t, med, 'PARA-SOON', inDays(200), 5);
    const p = await patient(t, 'Nguyen');
    const rx = await prescription(t, p, med, 20);
    const res = await postDispense(t, ph1, dispenseBody(p, med, rx, 8));
    expect(res.statusCode, res.body).toBe(201);
    const d = res.json() as MedicationDispense;
    expect(batchesTaken(d)).toEqual([
      { lot: 'PARA-SOON', expiry: inDays(200), quantity: 5 },
      { lot: 'PARA-LATE', expiry: inDays(500), quantity: 3 },
    ]);
    expect(d.performer?.[0]?.actor?.reference).toBe(`Practitioner/${pharmacist}`);
    const s = await stock(t, med);
    expect(s.total).toBe(7);
    expect(s.batches.map((b) => [b.lot, b.quantity])).toEqual([
      ['PARA-SOON', 0],
      ['PARA-LATE', 7],
    ]);
    expect(s.movements.filter((m) => m.kind === 'dispense').map((m) => [m.lot, m.quantity, m.source])).toEqual([
      ['PARA-LATE', -3, `MedicationDispense/${d.id}`],
      ['PARA-SOON', -5, `MedicationDispense/${d.id}`],
    ]);
    expect(stockExtension(await read<Medication>(t, 'Medication', med))).toBe(7);
    // Later updates keep the server's record of the batches; entered-in-error returns the stock.
    const undone = await t.request({ method: 'PUT', url: `/fhir/MedicationDispense/${d.id}`, payload: { ...d, status: 'entered-in-error', extension: undefined }, headers: { authorization: `Bearer ${ph1}` } });
    expect(undone.statusCode, undone.body).toBe(200);
    expect((await stock(t, med)).total).toBe(15);
  });

  it('FR-PH-002: partial dispenses up to the prescribed quantity, then "fully dispensed" is refused', async () => {
    const med = await medication(t, 'Metformin 850 mg');
    await receive(t, med, 'MET-1', inDays(365), 100);
    const p = await patient(t, 'Pham');
    const rx = await prescription(t, p, med, 10);
    expect((await postDispense(t, ph1, dispenseBody(p, med, rx, 4))).statusCode).toBe(201);
    const tooMuch = await postDispense(t, ph1, dispenseBody(p, med, rx, 7));
    expect(tooMuch.statusCode).toBe(409);
    expect(outcomeText(tooMuch.body)).toMatch(/6 tablet left to dispense/);
    expect((await postDispense(t, ph1, dispenseBody(p, med, rx, 6))).statusCode).toBe(201);
    const full = await postDispense(t, ph1, dispenseBody(p, med, rx, 1));
    expect(full.statusCode).toBe(409);
    expect((full.json() as OperationOutcome).issue[0]!.code).toBe('business-rule');
    expect(outcomeText(full.body)).toMatch(/fully dispensed/);
    // Repeats: numberOfRepeatsAllowed 1 allows twice the quantity.
    const refills = await prescription(t, p, med, 5, { dispenseRequest: { quantity: { value: 5, unit: 'tablet' }, numberOfRepeatsAllowed: 1 } });
    expect((await postDispense(t, ph1, dispenseBody(p, med, refills, 5))).statusCode).toBe(201);
    expect((await postDispense(t, ph1, dispenseBody(p, med, refills, 5))).statusCode).toBe(201);
    expect((await postDispense(t, ph1, dispenseBody(p, med, refills, 1))).statusCode).toBe(409);
    expect((await stock(t, med)).total).toBe(80);
  });

  it('FR-PH-002: the dispense that uses the prescription up (refills included) sets it completed in the same transaction; undoing it reopens it', async () => {
    const med = await medication(t, 'Losartan 50 mg');
    await receive(t, med, 'LOS-1', inDays(365), 100);
    const p = await patient(t, 'Ngo');
    const status = async (id: string) => (await read<MedicationRequest>(t, 'MedicationRequest', id)).status;
    // 5 tablets × (1 + 1 repeat) = 10.
    const rx = await prescription(t, p, med, 5, { dispenseRequest: { quantity: { value: 5, unit: 'tablet' }, numberOfRepeatsAllowed: 1 } });
    expect((await postDispense(t, ph1, dispenseBody(p, med, rx, 5))).statusCode).toBe(201);
    expect(await status(rx)).toBe('active');
    expect((await postDispense(t, ph1, dispenseBody(p, med, rx, 3))).statusCode).toBe(201);
    expect(await status(rx)).toBe('active');
    // The last 2 in a transaction Bundle whose other entry fails: nothing is written, still active.
    const failing = await t.request({
      method: 'POST',
      url: '/fhir',
      headers: { authorization: `Bearer ${ph1}` },
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: dispenseBody(p, med, rx, 2), request: { method: 'POST', url: 'MedicationDispense' } },
          { resource: dispenseBody(p, med, rx, 1), request: { method: 'POST', url: 'MedicationDispense' } },
        ],
      },
    });
    expect(failing.statusCode).toBe(409);
    expect(await status(rx)).toBe('active');
    const last = await postDispense(t, ph1, dispenseBody(p, med, rx, 2));
    expect(last.statusCode, last.body).toBe(201);
    const completed = await read<MedicationRequest>(t, 'MedicationRequest', rx);
    expect(completed.status).toBe('completed');
    expect(completed.meta?.versionId).not.toBe('1');
    const again = await postDispense(t, ph1, dispenseBody(p, med, rx, 1));
    expect(again.statusCode).toBe(409);
    expect(outcomeText(again.body)).toMatch(/completed \(fully dispensed\)/);
    // The last dispense entered in error: its 2 tablets are owed again, the prescription is active.
    const lastDispense = last.json() as MedicationDispense;
    const undone = await t.request({ method: 'PUT', url: `/fhir/MedicationDispense/${lastDispense.id}`, payload: { ...lastDispense, status: 'entered-in-error' }, headers: { authorization: `Bearer ${ph1}` } });
    expect(undone.statusCode, undone.body).toBe(200);
    expect(await status(rx)).toBe('active');
    expect((await postDispense(t, ph1, dispenseBody(p, med, rx, 2))).statusCode).toBe(201);
    expect(await status(rx)).toBe('completed');

    // Without a quantity the dispenses are counted: 1 + 1 repeat.
    const counted = await prescription(t, p, med, undefined, { dispenseRequest: { numberOfRepeatsAllowed: 1 } });
    expect((await postDispense(t, ph1, dispenseBody(p, med, counted, 4))).statusCode).toBe(201);
    expect(await status(counted)).toBe('active');
    expect((await postDispense(t, ph1, dispenseBody(p, med, counted, 4))).statusCode).toBe(201);
    expect(await status(counted)).toBe('completed');

    // Completed by the prescriber short of its quantity: an undone dispense does not reopen it.
    const stopped = await prescription(t, p, med, 10);
    const part = (await postDispense(t, ph1, dispenseBody(p, med, stopped, 4))).json() as MedicationDispense;
    const current = await read<MedicationRequest>(t, 'MedicationRequest', stopped);
    expect((await t.request({ method: 'PUT', url: `/fhir/MedicationRequest/${stopped}`, payload: { ...current, status: 'completed' } })).statusCode).toBe(200);
    expect((await t.request({ method: 'PUT', url: `/fhir/MedicationDispense/${part.id}`, payload: { ...part, status: 'cancelled' }, headers: { authorization: `Bearer ${ph1}` } })).statusCode).toBe(200);
    expect(await status(stopped)).toBe('completed');
  });

  it('FR-PH-002: an expired or inactive prescription, another patient\'s or another product\'s, is refused and nothing is taken', async () => {
    const med = await medication(t, 'Atorvastatin 20 mg');
    await receive(t, med, 'ATO-1', inDays(365), 30);
    const p = await patient(t, 'Vu');
    const expired = await prescription(t, p, med, 10, { dispenseRequest: { quantity: { value: 10, unit: 'tablet' }, validityPeriod: { start: inDays(-40), end: inDays(-10) } } });
    const res = await postDispense(t, ph1, dispenseBody(p, med, expired, 5));
    expect(res.statusCode).toBe(409);
    expect(outcomeText(res.body)).toMatch(/expired on/);
    // Another patient's prescription, or another product than prescribed: 422.
    const valid = await prescription(t, p, med, 10);
    const other = await patient(t, 'Other');
    expect((await postDispense(t, ph1, dispenseBody(other, med, valid, 5))).statusCode).toBe(422);
    expect((await postDispense(t, ph1, dispenseBody(p, await medication(t, 'Something else'), valid, 5))).statusCode).toBe(422);
    const cancelled = await prescription(t, p, med, 10, { status: 'cancelled' });
    expect((await postDispense(t, ph1, dispenseBody(p, med, cancelled, 5))).statusCode).toBe(409);
    expect((await stock(t, med)).total).toBe(30);
  });

  it('FR-PH-002: two pharmacists dispensing the last units at once: exactly one wins, stock never negative', async () => {
    const med = await medication(t, 'Insulin glargine pen');
    await receive(t, med, 'INS-1', inDays(200), 5);
    const [pa, pb] = [await patient(t, 'Do'), await patient(t, 'Ho')];
    const [ra, rb] = [await prescription(t, pa, med, 5), await prescription(t, pb, med, 5)];
    const results = await Promise.all([postDispense(t, ph1, dispenseBody(pa, med, ra, 5)), postDispense(t, ph2, dispenseBody(pb, med, rb, 5))]);
    expect(results.map((r) => r.statusCode).sort()).toEqual([201, 409]);
    expect(outcomeText(results.find((r) => r.statusCode === 409)!.body)).toMatch(/Only 0 tablet of Insulin glargine pen in stock/);
    const s = await stock(t, med);
    expect(s.total).toBe(0);
    expect(s.batches[0]!.quantity).toBe(0);
    // Three at once for 4 of them, 2 units each: exactly two win.
    await receive(t, med, 'INS-2', inDays(250), 4);
    const people = await Promise.all([1, 2, 3].map((i) => patient(t, `Race${i}`)));
    const rxs = await Promise.all(people.map((x) => prescription(t, x, med, 2)));
    const race = await Promise.all(people.map((x, i) => postDispense(t, i % 2 ? ph2 : ph1, dispenseBody(x, med, rxs[i], 2))));
    expect(race.map((r) => r.statusCode).sort()).toEqual([201, 201, 409]);
    expect((await stock(t, med)).total).toBe(0);
  });

  it('FR-PH-002: an expired batch is never dispensed; the expiry job writes it off (FR-PH-001)', async () => {
    const med = await medication(t, 'Amlodipine 5 mg');
    await receive(t, med, 'AML-OLD', inDays(150), 10);
    await receive(t, med, 'AML-NEW', inDays(600), 3);
    // The first batch's expiry date passes (as if time went by).
    await sql`UPDATE pharmacy_batch SET expiry = current_date - 1 WHERE medication_id = ${med} AND lot = 'AML-OLD'`.execute(t.server.database.db);
    const p = await patient(t, 'Dang');
    const rx = await prescription(t, p, med, 10);
    const refused = await postDispense(t, ph1, dispenseBody(p, med, rx, 5));
    expect(refused.statusCode).toBe(409);
    expect(outcomeText(refused.body)).toMatch(/Only 3 tablet/);
    const ok = await postDispense(t, ph1, dispenseBody(p, med, rx, 2));
    expect(batchesTaken(ok.json() as MedicationDispense).map((b) => b.lot)).toEqual(['AML-NEW']);

    const sweep = await t.request({ method: 'POST', url: '/fhir/Medication/$expire-batches' });
    expect(sweep.statusCode, sweep.body).toBe(200);
    expect((sweep.json() as Parameters).parameter!.find((x) => x.name === 'writtenOff')!.valueInteger).toBeGreaterThanOrEqual(1);
    const s = await stock(t, med);
    expect(s.batches.find((b) => b.lot === 'AML-OLD')).toMatchObject({ active: false, quantity: 0 });
    expect(s.movements.find((m) => m.kind === 'expiry-write-off')).toMatchObject({ lot: 'AML-OLD', quantity: -10, balance: 0 });
    expect(s.total).toBe(1);
    // Idempotent: a second run writes nothing off.
    const again = await t.request({ method: 'POST', url: '/fhir/Medication/$expire-batches' });
    expect((await stock(t, med)).movements.filter((m) => m.kind === 'expiry-write-off')).toHaveLength(1);
    expect(again.statusCode).toBe(200);
  });
});

describe('the daily job (FR-PH-001)', () => {
  it('FR-PH-001: the daily expiry job writes off expired batches, then sleeps until the next day', async () => {
    const med = await medication(t, 'Diclofenac 50 mg');
    await receive(t, med, 'DIC-1', inDays(100), 6);
    await sql`UPDATE pharmacy_batch SET expiry = current_date - 2 WHERE medication_id = ${med}`.execute(t.server.database.db);
    const queue = expiryQueue(t.server.store, t.server.database.db, () => undefined);
    const run = queue.handler({ jobId: EXPIRY_JOB }, { attempt: 1, maxAttempts: queue.attempts, signal: new AbortController().signal });
    const slept = await run.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(slept).toBeInstanceOf(RetryLaterError);
    expect((slept as RetryLaterError).delayMs).toBeGreaterThan(0);
    expect((slept as RetryLaterError).delayMs).toBeLessThanOrEqual(86_400_000 + 60_000);
    const s = await stock(t, med);
    expect(s.batches[0]).toMatchObject({ lot: 'DIC-1', active: false, quantity: 0 });
    expect(s.movements[0]).toMatchObject({ kind: 'expiry-write-off', quantity: -6, author: 'server' });
    expect(stockExtension(await read<Medication>(t, 'Medication', med))).toBe(0);
  });
});

describe('critical warnings (FR-PH-003)', () => {
  it('FR-PH-003: an unmitigated critical DetectedIssue blocks the dispense until a pharmacist overrides it', async () => {
    const med = await medication(t, 'Warfarin 5 mg');
    await receive(t, med, 'WAR-1', inDays(300), 20);
    const p = await patient(t, 'Bui');
    const rx = await prescription(t, p, med, 10);
    const issue = await create<DetectedIssue>(t, {
      resourceType: 'DetectedIssue',
      status: 'final',
      severity: 'high',
      code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'DRG' }] },
      detail: 'Warfarin with aspirin: major bleeding risk',
      patient: { reference: `Patient/${p}` },
      implicated: [{ reference: `MedicationRequest/${rx}` }],
    });
    const blocked = await postDispense(t, ph1, dispenseBody(p, med, rx, 10));
    expect(blocked.statusCode).toBe(409);
    expect(outcomeText(blocked.body)).toContain(`DetectedIssue/${issue.id}`);
    const override = { detectedIssue: [{ reference: `DetectedIssue/${issue.id}` }], extension: [{ url: OVERRIDE, valueString: 'INR checked today, prescriber confirmed' }] };
    // Only a pharmacist may override (a backend client may not).
    const byClient = await t.request({ method: 'POST', url: '/fhir/MedicationDispense', payload: dispenseBody(p, med, rx, 10, override) });
    expect(byClient.statusCode).toBe(403);
    expect((await stock(t, med)).total).toBe(20);
    const ok = await postDispense(t, ph1, dispenseBody(p, med, rx, 10, override));
    expect(ok.statusCode, ok.body).toBe(201);
    const mitigated = await read<DetectedIssue>(t, 'DetectedIssue', issue.id!);
    expect(mitigated.mitigation?.[0]).toMatchObject({ author: { reference: `Practitioner/${pharmacist}` } });
    expect(mitigated.mitigation?.[0]?.action.text).toContain('INR checked today');
    expect((await stock(t, med)).total).toBe(10);
  });

  it('FR-PH-003: a critical finding the prescriber already overrode (mitigation with author) does not block', async () => {
    const med = await medication(t, 'Methotrexate 2.5 mg');
    await receive(t, med, 'MTX-1', inDays(300), 8);
    const p = await patient(t, 'Trinh');
    const rx = await prescription(t, p, med, 4);
    await create(t, {
      resourceType: 'DetectedIssue',
      status: 'final',
      severity: 'high',
      patient: { reference: `Patient/${p}` },
      implicated: [{ reference: `MedicationRequest/${rx}` }],
      mitigation: [{ action: { text: 'Weekly dosing confirmed' }, author: { reference: `Practitioner/${pharmacist2}` } }],
    });
    expect((await postDispense(t, ph1, dispenseBody(p, med, rx, 4))).statusCode).toBe(201);
  });
});

describe('transactions', () => {
  it('FR-PH-002: a transaction Bundle of dispenses is all or nothing (stock untouched when one fails)', async () => {
    const med = await medication(t, 'Levothyroxine 50 mcg');
    await receive(t, med, 'LEV-1', inDays(300), 5);
    const [pa, pb] = [await patient(t, 'Kim'), await patient(t, 'Mai')];
    const [ra, rb] = [await prescription(t, pa, med, 3), await prescription(t, pb, med, 3)];
    const bundle = (second: number) => ({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [dispenseBody(pa, med, ra, 3), dispenseBody(pb, med, rb, second)].map((resource) => ({ resource, request: { method: 'POST', url: 'MedicationDispense' } })),
    });
    const refused = await t.request({ method: 'POST', url: '/fhir', payload: bundle(3), headers: { authorization: `Bearer ${ph1}` } });
    expect(refused.statusCode).toBe(409);
    expect((await stock(t, med)).total).toBe(5);
    expect((await stock(t, med)).movements.filter((m) => m.kind === 'dispense')).toHaveLength(0);
    const ok = await t.request({ method: 'POST', url: '/fhir', payload: bundle(2), headers: { authorization: `Bearer ${ph1}` } });
    expect(ok.statusCode, ok.body).toBe(200);
    expect((await stock(t, med)).total).toBe(0);
  });
});

describe('receipt and alerts', () => {
  it('FR-PH-002: $receipt is a PDF with hospital, patient (Vietnamese marks kept), drug, quantity, batches and pharmacist', async () => {
    const med = await medication(t, 'Losartan 50 mg');
    await receive(t, med, 'LOS-A', inDays(200), 2);
    await receive(t, med, 'LOS-B', inDays(400), 10);
    const p = (await create<{ id?: string }>(t, { resourceType: 'Patient', name: [{ family: 'Nguyễn', given: ['Thị', 'Lan'] }] })).id!;
    const rx = await prescription(t, p, med, 6);
    const d = (await postDispense(t, ph1, dispenseBody(p, med, rx, 6, { dosageInstruction: [{ text: 'One tablet daily' }] }))).json() as MedicationDispense;
    const res = await t.request({ method: 'GET', url: `/fhir/MedicationDispense/${d.id}/$receipt`, headers: { authorization: `Bearer ${ph1}` } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/pdf/);
    const pdf = res.rawPayload;
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    const text = pdfText(pdf);
    // The name prints with its Vietnamese marks (embedded Noto Sans, src/workflows/pdf.ts).
    for (const expected of ['Bach Mai Hospital', 'Thị Lan Nguyễn', 'Losartan 50 mg', '6 tablet', 'LOS-A', 'LOS-B', 'Minh Tran', 'One tablet daily']) expect(text).toContain(expected);
    expect((await t.request({ method: 'GET', url: '/fhir/MedicationDispense/nope/$receipt' })).statusCode).toBe(404);
  });

  it('FR-PH-001: stock falling to the reorder level raises PHARMACY_STOCK_LOW to pharmacists', async () => {
    const med = await medication(t, 'Salbutamol inhaler', 5);
    await receive(t, med, 'SAL-1', inDays(300), 10);
    const p = await patient(t, 'Lam');
    const rx = await prescription(t, p, med, 6);
    expect((await postDispense(t, ph1, dispenseBody(p, med, rx, 6))).statusCode).toBe(201);
    const low = await waitForNotifications(t, `Practitioner/${pharmacist}`, 'PHARMACY_STOCK_LOW', ['in-app']);
    expect(low.find((c) => channelOf(c) === 'in-app')!.payload?.[0]?.contentString).toContain('Stock of Salbutamol inhaler');
    expect(low.find((c) => channelOf(c) === 'in-app')!.payload?.[0]?.contentString).toContain('is 4, reorder level 5');
  });

  it('FR-PH-001: a batch within 90 days of expiry raises PHARMACY_BATCH_EXPIRING once', async () => {
    const med = await medication(t, 'Ceftriaxone 1 g vial');
    await receive(t, med, 'CEF-SHORT', inDays(30), 10);
    await receive(t, med, 'CEF-LONG', inDays(200), 10);
    const m = await read<Medication>(t, 'Medication', med);
    expect(m.extension?.filter((e) => e.url === EXPIRING).map((e) => e.extension?.find((x) => x.url === 'lotNumber')?.valueString)).toEqual(['CEF-SHORT']);
    const first = await waitForNotifications(t, `Practitioner/${pharmacist}`, 'PHARMACY_BATCH_EXPIRING', ['in-app']);
    expect(first.find((c) => channelOf(c) === 'in-app')!.payload?.[0]?.contentString).toBe(`Ceftriaxone 1 g vial: batches expiring within 90 days: CEF-SHORT (${inDays(30)}).`);
    // The daily job alerts the other batch once its 90 days begin, and nothing twice.
    await sql`UPDATE pharmacy_batch SET expiry = current_date + 60 WHERE medication_id = ${med} AND lot = 'CEF-LONG'`.execute(t.server.database.db);
    const sweep = await t.request({ method: 'POST', url: '/fhir/Medication/$expire-batches' });
    expect((sweep.json() as Parameters).parameter!.find((x) => x.name === 'alerted')!.valueInteger).toBe(1);
    const second = await t.request({ method: 'POST', url: '/fhir/Medication/$expire-batches' });
    expect((second.json() as Parameters).parameter!.find((x) => x.name === 'alerted')!.valueInteger).toBe(0);
    const inApp = async () => (await notificationsTo(t, `Practitioner/${pharmacist}`, 'PHARMACY_BATCH_EXPIRING')).filter((c) => channelOf(c) === 'in-app');
    await expect.poll(async () => (await inApp()).length, { timeout: 10_000 }).toBe(2);
    expect((await inApp()).map((c) => c.payload?.[0]?.contentString).sort()).toEqual([
      `Ceftriaxone 1 g vial: batches expiring within 90 days: CEF-SHORT (${inDays(30)}), CEF-LONG (${inDays(60)}).`,
      `Ceftriaxone 1 g vial: batches expiring within 90 days: CEF-SHORT (${inDays(30)}).`,
    ]);
  });
});
