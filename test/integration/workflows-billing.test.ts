import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, CapabilityStatement, ChargeItem, Composition, Encounter, Invoice, Location, MedicationDispense, OperationDefinition, OperationOutcome, Parameters, PaymentReconciliation, ServiceRequest, Task } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BED_STATUS_SYSTEM, PHYSICAL_TYPE_SYSTEM } from '../../src/workflows/inpatient.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { createPatient, signInAs } from './smart-helpers.js';
import { chargesOf, create, expectBusinessRule, finishedVisit, moneyOf, op, pdfText, read } from './billing-helpers.js';

/**
 * Billing (seed 004 FR-BL-001, FR-BL-002, FR-IP-002; issue 14 §3; src/workflows/billing/):
 * charges made by the server from encounters, dispenses, lab orders and bed days; invoices
 * itemised by category with tax per jurisdiction (VN: medication 5 %, medical services 0 %);
 * discounts approved by an accountant; payments, partial payments, refunds, balances; receipts.
 */

let t: TestApp;
let accountant: string;
let receptionist: string;
let admin: string;
const CHARGE = 'https://fhir.hospital.example.org/CodeSystem/charge-code';
const codeOf = (c: ChargeItem) => c.code.coding?.find((x) => x.system === CHARGE)?.code;

beforeAll(async () => {
  t = await startTestApp();
  accountant = (await signInAs(t, 'ACCOUNTANT', 'Practitioner/acc-1')).token;
  receptionist = (await signInAs(t, 'RECEPTIONIST', 'Practitioner/rec-1')).token;
  admin = (await signInAs(t, 'ADMIN', 'Practitioner/adm-1')).token;
}, 60_000);
afterAll(async () => {
  await t?.close();
});

async function labOrder(patient: string, code: string, priority: ServiceRequest['priority']): Promise<string> {
  const order = await create<ServiceRequest>(t, {
    resourceType: 'ServiceRequest',
    status: 'active',
    intent: 'order',
    priority,
    code: { coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/lab-test', code }] },
    subject: { reference: `Patient/${patient}` },
  });
  const done = await t.request({ method: 'PUT', url: `/fhir/ServiceRequest/${order.id}`, payload: { ...order, status: 'completed' } });
  expect(done.statusCode, done.body).toBe(200);
  return order.id;
}

async function dispense(patient: string, quantity: number): Promise<string> {
  return (
    await create<MedicationDispense>(t, {
      resourceType: 'MedicationDispense',
      status: 'completed',
      medicationCodeableConcept: { text: 'Paracetamol 500 mg' },
      subject: { reference: `Patient/${patient}` },
      quantity: { value: quantity, unit: 'tablet' },
      whenHandedOver: new Date().toISOString(),
    })
  ).id;
}

/** The discharge summary and (empty) discharge medication list the discharge rules ask for. */
async function dischargePapers(patient: string, encounter: string): Promise<void> {
  await create<Composition>(t, {
    resourceType: 'Composition',
    status: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '18842-5' }] },
    subject: { reference: `Patient/${patient}` },
    encounter: { reference: `Encounter/${encounter}` },
    date: new Date().toISOString(),
    author: [{ display: 'Dr Test' }],
    title: 'Discharge summary',
  });
  // Discharge medication list (the prescribing rules ask for one; empty here).
  await create(t, {
    resourceType: 'List',
    status: 'current',
    mode: 'snapshot',
    code: { coding: [{ system: 'http://loinc.org', code: '10183-2' }] },
    subject: { reference: `Patient/${patient}` },
    encounter: { reference: `Encounter/${encounter}` },
    emptyReason: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/list-empty-reason', code: 'nilknown' }] },
  });
}

/** An ICU stay of `hours`, discharged (summary written): BED-DAY charge. */
async function icuStay(patient: string, hours: number): Promise<string> {
  const ward = await create<Location>(t, { resourceType: 'Location', status: 'active', name: 'ICU A', physicalType: { coding: [{ system: PHYSICAL_TYPE_SYSTEM, code: 'wa' }] }, type: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/ward-type', code: 'ICU' }] }] });
  const bed = await create<Location>(t, { resourceType: 'Location', status: 'active', name: 'ICU A-1', physicalType: { coding: [{ system: PHYSICAL_TYPE_SYSTEM, code: 'bd' }] }, partOf: { reference: `Location/${ward.id}` }, operationalStatus: { system: BED_STATUS_SYSTEM, code: 'U' } });
  const stay = await create<Encounter>(t, {
    resourceType: 'Encounter',
    status: 'in-progress',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
    subject: { reference: `Patient/${patient}` },
    period: { start: new Date(Date.now() - hours * 3_600_000).toISOString() },
    location: [{ location: { reference: `Location/${bed.id}` }, status: 'active' }],
  });
  await dischargePapers(patient, stay.id);
  const current = await read<Encounter>(t, 'Encounter', stay.id);
  const res = await t.request({ method: 'PUT', url: `/fhir/Encounter/${stay.id}`, payload: { ...current, status: 'finished', period: { ...current.period, end: new Date().toISOString() } } });
  expect(res.statusCode, res.body).toBe(200);
  return stay.id;
}

describe('the price list (FR-BL-001)', () => {
  it('FR-BL-001: conformance/billing/price-list.json is valid FHIR R4 (ChargeItemDefinitions with charge-code codes)', async () => {
    const bundle = JSON.parse(readFileSync(join(import.meta.dirname, '../../conformance/billing/price-list.json'), 'utf8')) as Bundle;
    const res = await t.request({ method: 'POST', url: '/fhir/Bundle/$validate', payload: bundle });
    expect(res.statusCode).toBe(200);
    expect((res.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
    expect(bundle.entry?.every((e) => e.resource?.resourceType === 'ChargeItemDefinition')).toBe(true);
  });

  it('FR-BL-001: the billing operations are declared (OperationDefinitions valid, listed in the CapabilityStatement)', async () => {
    const dir = join(import.meta.dirname, '../../conformance/billing');
    const files = readdirSync(dir).filter((f) => f.startsWith('OperationDefinition-'));
    expect(files.length).toBe(11);
    const metadata = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const declared = new Set((metadata.rest?.[0]?.resource ?? []).flatMap((r) => (r.operation ?? []).map((o) => o.definition)));
    for (const file of files) {
      const definition = JSON.parse(readFileSync(join(dir, file), 'utf8')) as OperationDefinition;
      const res = await t.request({ method: 'POST', url: '/fhir/OperationDefinition/$validate', payload: definition });
      expect((res.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal'), file).toEqual([]);
      expect(declared.has(definition.url ?? ''), definition.url).toBe(true);
    }
  });
});

describe('charges created by the server (FR-BL-001, FR-IP-002)', () => {
  it('FR-BL-001: a finished encounter is charged one consultation, once, at the price list price', async () => {
    const patient = await createPatient(t, 'Charge');
    const encounter = await finishedVisit(t, patient);
    const current = await read<Encounter>(t, 'Encounter', encounter);
    // Written again as finished (and again after reopening): still one charge.
    await t.request({ method: 'PUT', url: `/fhir/Encounter/${encounter}`, payload: { ...current, status: 'in-progress' } });
    await t.request({ method: 'PUT', url: `/fhir/Encounter/${encounter}`, payload: { ...current, status: 'finished' } });
    const charges = await chargesOf(t, patient);
    expect(charges).toHaveLength(1);
    expect(codeOf(charges[0]!)).toBe('CONS-GP');
    expect(charges[0]!.status).toBe('billable');
    expect(charges[0]!.priceOverride).toEqual({ value: 150000, currency: 'VND' });
    expect(charges[0]!.context?.reference).toBe(`Encounter/${encounter}`);
    // Applicability: a specialist visit takes the specialist price.
    await finishedVisit(t, patient, { type: [{ coding: [{ system: CHARGE, code: 'CONS-SPEC' }] }] });
    const after = await chargesOf(t, patient);
    expect(after.map((c) => c.priceOverride?.value).sort()).toEqual([150000, 300000]);
  });

  it('FR-BL-001: an encounter stored already finished (history, imports) is not charged', async () => {
    const patient = await createPatient(t, 'History');
    await create<Encounter>(t, { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: `Patient/${patient}` } });
    expect(await chargesOf(t, patient)).toHaveLength(0);
  });

  it('FR-BL-001: a completed dispense is charged per unit, a lab order per test with the STAT surcharge', async () => {
    const patient = await createPatient(t, 'Units');
    await dispense(patient, 12);
    await labOrder(patient, 'CBC', 'stat');
    const charges = await chargesOf(t, patient);
    const byCode = Object.fromEntries(charges.map((c) => [codeOf(c), c]));
    expect(byCode['MED-DISP']?.quantity?.value).toBe(12);
    expect(byCode['MED-DISP']?.priceOverride?.value).toBe(120000);
    expect(byCode['LAB-ORDER']?.priceOverride?.value).toBe(120000);
    expect(byCode['LAB-STAT']?.priceOverride?.value).toBe(100000);
  });

  it('FR-BL-001: a lab order is charged when ordered; withdrawn before invoicing, its charges are aborted', async () => {
    const patient = await createPatient(t, 'Revoked');
    const order = await create<ServiceRequest>(t, {
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      priority: 'stat',
      code: { coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/lab-test', code: 'LDL' }] },
      subject: { reference: `Patient/${patient}` },
    });
    expect((await chargesOf(t, patient)).map((c) => [codeOf(c), c.status, c.priceOverride?.value]).sort()).toEqual([
      ['LAB-ORDER', 'billable', 70000],
      ['LAB-STAT', 'billable', 100000],
    ]);
    const res = await t.request({ method: 'PUT', url: `/fhir/ServiceRequest/${order.id}`, payload: { ...order, status: 'revoked' } });
    expect(res.statusCode, res.body).toBe(200);
    expect((await chargesOf(t, patient)).map((c) => c.status)).toEqual(['aborted', 'aborted']);
    expectBusinessRule(await op(t, 'POST', `/fhir/Patient/${patient}/$invoice`, accountant), 422, /no billable charges/);
  });

  it('FR-IP-002: discharge from an inpatient stay charges bed days × the ward type price', async () => {
    const patient = await createPatient(t, 'Inpatient');
    const stay = await icuStay(patient, 50);
    const charges = await chargesOf(t, patient);
    expect(charges).toHaveLength(1);
    expect(codeOf(charges[0]!)).toBe('BED-DAY');
    expect(charges[0]!.quantity?.value).toBe(3);
    expect(charges[0]!.priceOverride?.value).toBe(7_500_000);
    expect(charges[0]!.context?.reference).toBe(`Encounter/${stay}`);
  });
  it('FR-IP-002 / FR-BL-001: after a transfer, bed days are priced per ward for the days spent in each', async () => {
    const patient = await createPatient(t, 'Transferred');
    const ward = async (name: string, type: string) => {
      const w = await create<Location>(t, { resourceType: 'Location', status: 'active', name, physicalType: { coding: [{ system: PHYSICAL_TYPE_SYSTEM, code: 'wa' }] }, type: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/ward-type', code: type }] }] });
      return (await create<Location>(t, { resourceType: 'Location', status: 'active', name: `${name}-1`, physicalType: { coding: [{ system: PHYSICAL_TYPE_SYSTEM, code: 'bd' }] }, partOf: { reference: `Location/${w.id}` }, operationalStatus: { system: BED_STATUS_SYSTEM, code: 'U' } })).id;
    };
    const icu = await ward('ICU T', 'ICU');
    const general = await ward('Medical T', 'MED');
    const hour = 3_600_000;
    const start = Date.now() - 70 * hour;
    const at = (hours: number) => new Date(start + hours * hour).toISOString();
    // 30 h in ICU, then 40 h on the medical ward: day 1 ICU, days 2 and 3 mostly medical.
    const stay = await create<Encounter>(t, {
      resourceType: 'Encounter',
      status: 'in-progress',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
      subject: { reference: `Patient/${patient}` },
      period: { start: at(0) },
      location: [
        { location: { reference: `Location/${icu}` }, status: 'completed', period: { start: at(0), end: at(30) } },
        { location: { reference: `Location/${general}` }, status: 'active', period: { start: at(30) } },
      ],
    });
    await dischargePapers(patient, stay.id);
    const current = await read<Encounter>(t, 'Encounter', stay.id);
    const res = await t.request({ method: 'PUT', url: `/fhir/Encounter/${stay.id}`, payload: { ...current, status: 'finished', period: { ...current.period, end: at(70) } } });
    expect(res.statusCode, res.body).toBe(200);
    const charges = (await chargesOf(t, patient)).filter((c) => codeOf(c) === 'BED-DAY');
    expect(charges.map((c) => [c.quantity?.value, c.priceOverride?.value]).sort()).toEqual([
      [1, 2_500_000],
      [2, 1_000_000],
    ]);
    // Finishing it again charges nothing more.
    const again = await t.request({ method: 'PUT', url: `/fhir/Encounter/${stay.id}`, payload: { ...(await read<Encounter>(t, 'Encounter', stay.id)), status: 'finished' } });
    expect(again.statusCode, again.body).toBe(200);
    expect((await chargesOf(t, patient)).filter((c) => codeOf(c) === 'BED-DAY')).toHaveLength(2);
  });
});

describe('invoices, discounts, payments, receipts (FR-BL-001, FR-BL-002)', () => {
  let patient: string;
  let invoice: Invoice & { id: string };

  it('FR-BL-001: $invoice itemises the billable charges by category with tax per jurisdiction', async () => {
    patient = await createPatient(t, 'Nguyễn');
    await dispense(patient, 10); // 100 000, medication: 5 % VAT
    await finishedVisit(t, patient); // 150 000, exempt
    await labOrder(patient, 'GLU', 'routine'); // 40 000, exempt
    const res = await op(t, 'POST', `/fhir/Patient/${patient}/$invoice`, accountant);
    expect(res.statusCode, res.body).toBe(201);
    invoice = res.json() as Invoice & { id: string };
    expect(invoice.status).toBe('issued');
    expect(invoice.lineItem?.map((l) => l.priceComponent?.[0]?.code?.coding?.[0]?.code)).toEqual(['CONS-GP', 'MED-DISP', 'LAB-ORDER']);
    expect(invoice.totalNet).toEqual({ value: 290000, currency: 'VND' });
    expect(invoice.totalGross).toEqual({ value: 295000, currency: 'VND' });
    const tax = invoice.totalPriceComponent?.filter((p) => p.type === 'tax');
    expect(tax?.map((p) => [p.code?.coding?.[0]?.code, p.amount?.value])).toEqual([['MEDICATION', 5000]]);
    expect(invoice.totalPriceComponent?.filter((p) => p.type === 'base').map((p) => p.code?.coding?.[0]?.code)).toEqual(['CONSULTATION', 'MEDICATION', 'LAB_TEST']);
    // The charges are billed: a second invoice has nothing to take.
    expect((await chargesOf(t, patient)).every((c) => c.status === 'billed')).toBe(true);
    expectBusinessRule(await op(t, 'POST', `/fhir/Patient/${patient}/$invoice`, accountant), 422, /no billable charges/);
  });

  it('FR-BL-001: totals are the server\'s: a client cannot write or forge an invoice of this server', async () => {
    const forged = await t.request({ method: 'PUT', url: `/fhir/Invoice/${invoice.id}`, payload: { ...invoice, totalGross: { value: 1, currency: 'VND' } } });
    expectBusinessRule(forged, 422, /created and changed by the server only/);
    const { id: _id, meta: _meta, ...copy } = invoice;
    expectBusinessRule(await t.request({ method: 'POST', url: '/fhir/Invoice', payload: copy }), 422, /server only/);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).totalGross?.value).toBe(295000);
  });

  it('FR-BL-001: a discount asked by a receptionist waits for an accountant, then applies to every line before tax', async () => {
    const asked = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$discount`, receptionist, [
      { name: 'percent', valueDecimal: 10 },
      { name: 'reason', valueString: 'hardship' },
    ]);
    expect(asked.statusCode, asked.body).toBe(201);
    const task = asked.json() as Task;
    expect(task.resourceType).toBe('Task');
    expect(task.status).toBe('requested');
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).totalGross?.value).toBe(295000);
    // Only an accountant or admin approves.
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$discount`, receptionist, [{ name: 'request', valueReference: { reference: `Task/${task.id}` } }]), 422, /accountant or an administrator/);
    const approved = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$discount`, accountant, [{ name: 'request', valueReference: { reference: `Task/${task.id}` } }]);
    expect(approved.statusCode, approved.body).toBe(200);
    invoice = approved.json() as Invoice & { id: string };
    // 290 000 − 10 % = 261 000 net; tax 5 % of 90 000 = 4 500.
    expect(invoice.totalNet?.value).toBe(261000);
    expect(invoice.totalGross?.value).toBe(265500);
    expect(invoice.totalPriceComponent?.find((p) => p.type === 'discount')?.amount?.value).toBe(29000);
    expect(invoice.participant?.[0]?.actor.reference).toBe('Practitioner/acc-1');
    expect((await read<Task>(t, 'Task', task.id!)).status).toBe('completed');
  });

  let firstPayment: string;
  it('FR-BL-002: partial payments by several methods, outstanding balance, over-payment refused', async () => {
    const cash = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 100000 }, { name: 'method', valueCode: 'cash' }]);
    expect(cash.statusCode, cash.body).toBe(201);
    firstPayment = (cash.json() as PaymentReconciliation & { id: string }).id;
    expect((cash.json() as PaymentReconciliation).paymentAmount).toEqual({ value: 100000, currency: 'VND' });
    const balance = (await op(t, 'GET', `/fhir/Invoice/${invoice.id}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(balance, 'outstanding')).toBe(165500);
    expect(moneyOf(balance, 'paid')).toBe(100000);
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 165501 }, { name: 'method', valueCode: 'card' }]), 422, /Over-payment/);
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 100.5 }, { name: 'method', valueCode: 'card' }]), 422, /decimals/);
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 10 }, { name: 'method', valueCode: 'bitcoin' }]), 422, /method/);
    // A PaymentReconciliation written directly is accounted the same way.
    const direct = await t.request({
      method: 'POST',
      url: '/fhir/PaymentReconciliation',
      payload: {
        resourceType: 'PaymentReconciliation',
        status: 'active',
        created: new Date().toISOString(),
        paymentDate: '2026-12-04',
        paymentAmount: { value: 900000, currency: 'VND' },
        detail: [{ type: { coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/payment-method', code: 'transfer' }] }, request: { reference: `Invoice/${invoice.id}` } }],
      },
    });
    expectBusinessRule(direct, 422, /Over-payment/);
    const card = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueMoney: { value: 65500, currency: 'VND' } }, { name: 'method', valueCode: 'card' }, { name: 'reference', valueString: 'POS-778' }]);
    expect(card.statusCode, card.body).toBe(201);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).status).toBe('issued');
    const rest = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 100000 }, { name: 'method', valueCode: 'transfer' }]);
    expect(rest.statusCode, rest.body).toBe(201);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).status).toBe('balanced');
    const after = (await op(t, 'GET', `/fhir/Invoice/${invoice.id}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(after, 'outstanding')).toBe(0);
    const listed = await t.request({ method: 'GET', url: `/fhir/PaymentReconciliation?invoice=Invoice/${invoice.id}` });
    expect((listed.json() as { entry?: unknown[] }).entry).toHaveLength(3);
  });

  it('FR-BL-002: refunds up to what was paid, by an accountant; recorded payments are never edited', async () => {
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$refund`, accountant, [{ name: 'amount', valueDecimal: 265501 }, { name: 'method', valueCode: 'cash' }]), 422, /more than the 265,500 VND paid/);
    const refund = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$refund`, admin, [{ name: 'amount', valueDecimal: 15500 }, { name: 'method', valueCode: 'cash' }, { name: 'reason', valueString: 'duplicate test' }]);
    expect(refund.statusCode, refund.body).toBe(201);
    expect((refund.json() as PaymentReconciliation).paymentAmount?.value).toBe(-15500);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).status).toBe('issued');
    const balance = (await op(t, 'GET', `/fhir/Patient/${patient}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(balance, 'outstanding')).toBe(15500);
    const stored = await read<PaymentReconciliation>(t, 'PaymentReconciliation', firstPayment);
    expectBusinessRule(await t.request({ method: 'PUT', url: `/fhir/PaymentReconciliation/${firstPayment}`, payload: { ...stored, paymentAmount: { value: 1, currency: 'VND' } } }), 422, /not changed or deleted/);
    expectBusinessRule(await t.request({ method: 'DELETE', url: `/fhir/PaymentReconciliation/${firstPayment}` }), 422, /not changed or deleted/);
  });

  it('FR-BL-002: a receipt PDF for a payment and a statement for the invoice', async () => {
    const res = await t.request({ method: 'GET', url: `/fhir/PaymentReconciliation/${firstPayment}/$receipt`, headers: { authorization: `Bearer ${accountant}` } });
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/pdf/);
    expect(res.rawPayload.subarray(0, 5).toString()).toBe('%PDF-');
    const text = pdfText(res.rawPayload);
    expect(text).toContain('Payment receipt');
    expect(text).toContain('General Hospital');
    expect(text).toContain('Test Nguyễn'); // Vietnamese marks kept (embedded Noto Sans, src/workflows/pdf.ts)
    expect(text).toContain('100,000 VND');
    expect(text).toContain('cash');
    const statement = await t.request({ method: 'GET', url: `/fhir/Invoice/${invoice.id}/$receipt`, headers: { authorization: `Bearer ${accountant}` } });
    expect(statement.statusCode).toBe(200);
    const s = pdfText(statement.rawPayload);
    expect(s).toContain('Invoice statement');
    expect(s).toContain('265,500 VND');
    expect(s).toContain('15,500 VND');
  });

  it('FR-BL-001: an unpaid invoice can be cancelled, its charges become billable again', async () => {
    const other = await createPatient(t, 'Cancel');
    await finishedVisit(t, other);
    const issued = (await op(t, 'POST', `/fhir/Patient/${other}/$invoice`, accountant)).json() as Invoice & { id: string };
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$cancel`, accountant), 409, /payments/);
    const cancelled = await op(t, 'POST', `/fhir/Invoice/${issued.id}/$cancel`, accountant, [{ name: 'reason', valueString: 'wrong patient' }]);
    expect(cancelled.statusCode, cancelled.body).toBe(200);
    expect((cancelled.json() as Invoice).status).toBe('cancelled');
    expect((await chargesOf(t, other)).map((c) => c.status)).toEqual(['billable']);
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${issued.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 1 }, { name: 'method', valueCode: 'cash' }]), 422, /cancelled/);
  });

  it('FR-BL-001: racing $invoice calls and racing finishes bill each charge exactly once', async () => {
    const other = await createPatient(t, 'Race');
    const encounter = await create<Encounter>(t, { resourceType: 'Encounter', status: 'in-progress', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: `Patient/${other}` } });
    const finish = () => t.request({ method: 'PUT', url: `/fhir/Encounter/${encounter.id}`, payload: { ...encounter, status: 'finished' } });
    await Promise.all([finish(), finish(), finish()]);
    expect(await chargesOf(t, other)).toHaveLength(1);
    const results = await Promise.all([1, 2, 3].map(() => op(t, 'POST', `/fhir/Patient/${other}/$invoice`, accountant)));
    expect(results.map((r) => r.statusCode).sort()).toEqual([201, 422, 422]);
  });

  it('FR-BL-001: a patient-context token may not run billing operations', async () => {
    const patientToken = (await signInAs(t, 'PATIENT', `Patient/${patient}`)).token;
    expect((await op(t, 'POST', `/fhir/Patient/${patient}/$invoice`, patientToken)).statusCode).toBe(403);
  });
});
