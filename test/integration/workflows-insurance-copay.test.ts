import type { Bundle, Claim, ClaimResponse, ClaimResponseItem, Coverage, ExplanationOfBenefit, Invoice, Organization, Parameters, PaymentReconciliation } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { createPatient, signInAs } from './smart-helpers.js';
import { copay, copaypct, create, createCoverage, expectBusinessRule, finishedVisit, moneyOf, op, read, startInsuranceApp } from './billing-helpers.js';

/**
 * Co-payment and co-insurance at adjudication, and the ExplanationOfBenefit (seed 004
 * `insurance.copay_amount` / `coverage_percentage`, FR-BL-003; issue 14 §4;
 * src/workflows/billing/adjudication.ts, insurance.ts, explanation-of-benefit.ts): the insurer
 * states what it covers (eligible), the server takes the patient's share out by the Coverage's
 * costToBeneficiary, records the insurer's payment of the rest, and writes the explanation the
 * patient reads. Amounts in VND (no minor unit): rounding is to whole đồng, half away from zero.
 */

const ADJ = 'http://terminology.hl7.org/CodeSystem/adjudication';
const CHARGE = 'https://fhir.hospital.example.org/CodeSystem/charge-code';

let t: TestApp;
let accountant: string;
let insurer: string;
let insurerOrg: string;

beforeAll(async () => {
  ({ t, accountant, insurer, insurerOrg } = await startInsuranceApp('Bao Minh Insurance', 'Practitioner/acc-copay'));
}, 60_000);
afterAll(async () => {
  await t?.close();
});

const coverage = (patient: string, costToBeneficiary?: Coverage['costToBeneficiary']) => createCoverage(t, insurerOrg, patient, costToBeneficiary ? { costToBeneficiary } : {});

/** An invoiced and claimed patient: `visits` general (150 000 VND) and `specialist` specialist (300 000 VND) consultations. */
async function claimed(patient: string, visits: number, specialist = 0): Promise<{ invoice: Invoice & { id: string }; claim: Claim & { id: string } }> {
  for (let i = 0; i < visits; i++) await finishedVisit(t, patient);
  for (let i = 0; i < specialist; i++) await finishedVisit(t, patient, { type: [{ coding: [{ system: CHARGE, code: 'CONS-SPEC' }] }] });
  const invoiced = await op(t, 'POST', `/fhir/Patient/${patient}/$invoice`, accountant);
  expect(invoiced.statusCode, invoiced.body).toBe(201);
  const invoice = invoiced.json() as Invoice & { id: string };
  const res = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$claim`, accountant);
  expect(res.statusCode, res.body).toBe(201);
  return { invoice, claim: res.json() as Claim & { id: string } };
}

function response(claim: Claim & { id: string }, outcome: ClaimResponse['outcome'], amounts: { items?: Array<[number, number]>; total?: number; category?: 'eligible' | 'benefit' }): ClaimResponse {
  const category = { coding: [{ system: ADJ, code: amounts.category ?? 'eligible' }] };
  return {
    resourceType: 'ClaimResponse',
    status: 'active',
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'institutional' }] },
    use: 'claim',
    patient: claim.patient,
    created: new Date().toISOString(),
    insurer: { reference: `Organization/${insurerOrg}` },
    request: { reference: `Claim/${claim.id}` },
    outcome,
    ...(amounts.items ? { item: amounts.items.map(([seq, value]): ClaimResponseItem => ({ itemSequence: seq, adjudication: [{ category, amount: { value, currency: 'VND' } }] })) } : {}),
    ...(amounts.total !== undefined ? { total: [{ category, amount: { value: amounts.total, currency: 'VND' } }] } : {}),
  };
}

/** category → amount of one adjudication list. */
function figures(list: Array<{ category: { coding?: Array<{ code?: string }> }; amount?: { value?: number } }> | undefined): Record<string, number | undefined> {
  return Object.fromEntries((list ?? []).map((a) => [a.category.coding?.[0]?.code ?? '', a.amount?.value]));
}

async function explanationOf(claim: string): Promise<ExplanationOfBenefit> {
  const res = await t.request({ method: 'GET', url: `/fhir/ExplanationOfBenefit?claim=Claim/${claim}` });
  expect(res.statusCode, res.body).toBe(200);
  const bundle = res.json() as Bundle<ExplanationOfBenefit>;
  expect(bundle.entry).toHaveLength(1);
  return bundle.entry![0]!.resource!;
}

async function balanceOf(invoice: string): Promise<Parameters> {
  const res = await op(t, 'GET', `/fhir/Invoice/${invoice}/$balance`, accountant);
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Parameters;
}

describe('co-payment at adjudication (FR-BL-003)', () => {
  it('FR-BL-003: several items — fixed co-pay then co-insurance per item, rounded half away from zero; the insurer pays the rest; the EOB shows submitted / copay / eligible / benefit', async () => {
    const patient = await createPatient(t, 'Copay');
    const cov = await coverage(patient, [copay(10000), copaypct(10)]);
    const { invoice, claim } = await claimed(patient, 3); // 3 × 150 000
    const res = await t.request({ method: 'POST', url: '/fhir/ClaimResponse', payload: response(claim, 'partial', { items: [[1, 150000], [2, 22345]] }), headers: { authorization: `Bearer ${insurer}` } });
    expect(res.statusCode, res.body).toBe(201);
    const adjudicated = res.json() as ClaimResponse & { id: string };
    // item 1: 10 000 + 10 % of 140 000 = 24 000; item 2: 10 000 + 10 % of 12 345 = 1 234.5 → 1 235; item 3 not covered.
    expect(adjudicated.item?.map((i) => [i.itemSequence, figures(i.adjudication)])).toEqual([
      [1, { submitted: 150000, copay: 24000, eligible: 150000, benefit: 126000 }],
      [2, { submitted: 150000, copay: 11235, eligible: 22345, benefit: 11110 }],
      [3, { submitted: 150000, copay: 0, eligible: 0, benefit: 0 }],
    ]);
    expect(figures(adjudicated.total)).toEqual({ submitted: 450000, copay: 35235, eligible: 172345, benefit: 137110 });
    expect(adjudicated.payment?.amount).toEqual({ value: 137110, currency: 'VND' });

    const payments = (await t.request({ method: 'GET', url: `/fhir/PaymentReconciliation?invoice=Invoice/${invoice.id}` })).json() as Bundle<PaymentReconciliation>;
    expect(payments.entry?.map((e) => e.resource?.paymentAmount?.value)).toEqual([137110]);

    const balance = await balanceOf(invoice.id);
    expect(moneyOf(balance, 'paidByInsurance')).toBe(137110);
    expect(moneyOf(balance, 'outstanding')).toBe(312890);
    expect(moneyOf(balance, 'pendingInsurance')).toBe(0);
    expect(moneyOf(balance, 'patientResponsibility')).toBe(312890);
    expect(moneyOf(balance, 'patientCopay')).toBe(35235);
    expect(moneyOf(balance, 'notCovered')).toBe(277655);

    const eob = await explanationOf(claim.id);
    expect(eob).toMatchObject({
      status: 'active',
      use: 'claim',
      outcome: 'partial',
      patient: { reference: `Patient/${patient}` },
      claim: { reference: `Claim/${claim.id}` },
      claimResponse: { reference: `ClaimResponse/${adjudicated.id}` },
      insurance: [{ focal: true, coverage: { reference: `Coverage/${cov}` } }],
      insurer: { reference: `Organization/${insurerOrg}` },
      payment: { amount: { value: 137110, currency: 'VND' } },
    });
    expect(eob.identifier?.[0]?.value).toMatch(/^EOB-INV-/);
    expect(eob.supportingInfo?.[0]?.valueReference?.reference).toBe(`Invoice/${invoice.id}`);
    expect(eob.item?.map((i) => [i.sequence, i.productOrService.coding?.[0]?.code, figures(i.adjudication)])).toEqual([
      [1, 'CONS-GP', { submitted: 150000, copay: 24000, eligible: 150000, benefit: 126000 }],
      [2, 'CONS-GP', { submitted: 150000, copay: 11235, eligible: 22345, benefit: 11110 }],
      [3, 'CONS-GP', { submitted: 150000, copay: 0, eligible: 0, benefit: 0 }],
    ]);
    expect(figures(eob.total)).toEqual({ submitted: 450000, copay: 35235, eligible: 172345, benefit: 137110 });

    // The patient reads and searches their own explanation; another patient does not see it.
    const own = await signInAs(t, 'PATIENT', `Patient/${patient}`);
    const mine = await t.request({ method: 'GET', url: `/fhir/ExplanationOfBenefit?patient=Patient/${patient}`, headers: { authorization: `Bearer ${own.token}` } });
    expect(mine.statusCode, mine.body).toBe(200);
    expect((mine.json() as Bundle).entry?.map((e) => e.resource?.id)).toEqual([eob.id]);
    const read1 = await t.request({ method: 'GET', url: `/fhir/ExplanationOfBenefit/${eob.id}`, headers: { authorization: `Bearer ${own.token}` } });
    expect(read1.statusCode, read1.body).toBe(200);
    const stranger = await signInAs(t, 'PATIENT', `Patient/${await createPatient(t, 'Stranger')}`);
    const theirs = await t.request({ method: 'GET', url: `/fhir/ExplanationOfBenefit/${eob.id}`, headers: { authorization: `Bearer ${stranger.token}` } });
    expect([403, 404]).toContain(theirs.statusCode);

    // The explanation is the server's: neither the insurer (who may write ExplanationOfBenefits) nor a system client changes or deletes it.
    const edited = await t.request({ method: 'PUT', url: `/fhir/ExplanationOfBenefit/${eob.id}`, payload: { ...eob, outcome: 'error' }, headers: { authorization: `Bearer ${insurer}` } });
    expectBusinessRule(edited, 422, /written by the server/);
    expectBusinessRule(await t.request({ method: 'DELETE', url: `/fhir/ExplanationOfBenefit/${eob.id}` }), 422, /written by the server/);
    expect((await read<ExplanationOfBenefit>(t, 'ExplanationOfBenefit', eob.id!)).outcome).toBe(eob.outcome);

    // Paid: the adjudication is final; a resend of the same (with the insurer's own figures) keeps the server's.
    const resend = await t.request({ method: 'PUT', url: `/fhir/ClaimResponse/${adjudicated.id}`, payload: { ...response(claim, 'partial', { items: [[1, 150000], [2, 22345]] }), id: adjudicated.id, disposition: 'resent' }, headers: { authorization: `Bearer ${insurer}` } });
    expect(resend.statusCode, resend.body).toBe(200);
    expect(figures((resend.json() as ClaimResponse).total)).toEqual({ submitted: 450000, copay: 35235, eligible: 172345, benefit: 137110 });
    const changed = await t.request({ method: 'PUT', url: `/fhir/ClaimResponse/${adjudicated.id}`, payload: { ...response(claim, 'partial', { items: [[1, 150000], [2, 22346]] }), id: adjudicated.id }, headers: { authorization: `Bearer ${insurer}` } });
    expectBusinessRule(changed, 422, /final/);

    // The patient pays exactly their share: balanced.
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 312891 }, { name: 'method', valueCode: 'cash' }]), 422, /Over-payment/);
    const paid = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 312890 }, { name: 'method', valueCode: 'cash' }]);
    expect(paid.statusCode, paid.body).toBe(201);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).status).toBe('balanced');
  });

  it('FR-BL-003: a coverage without cost to the beneficiary — the insurer pays all it covers (a total spread over the items)', async () => {
    const patient = await createPatient(t, 'NoCopay');
    await coverage(patient);
    const { invoice, claim } = await claimed(patient, 2);
    const adjudicated = await create<ClaimResponse>(t, response(claim, 'complete', { total: 300000 }), insurer);
    expect(figures(adjudicated.total)).toEqual({ submitted: 300000, copay: 0, eligible: 300000, benefit: 300000 });
    expect(adjudicated.item?.map((i) => figures(i.adjudication).benefit)).toEqual([150000, 150000]);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).status).toBe('balanced');
    const balance = await balanceOf(invoice.id);
    expect(moneyOf(balance, 'outstanding')).toBe(0);
    expect(moneyOf(balance, 'patientCopay')).toBe(0);
    const eob = await explanationOf(claim.id);
    expect(figures(eob.total)).toEqual({ submitted: 300000, copay: 0, eligible: 300000, benefit: 300000 });
    expect(eob.outcome).toBe('complete');
  });

  it('FR-BL-003: a co-pay larger than an item takes the whole item (the insurer pays nothing for it); co-insurance applies to partial totals spread over the items', async () => {
    const patient = await createPatient(t, 'BigCopay');
    await coverage(patient, [copay(200000)]);
    const { invoice, claim } = await claimed(patient, 1, 1); // 150 000 + 300 000
    const adjudicated = await create<ClaimResponse>(t, response(claim, 'complete', { items: [[1, 150000], [2, 300000]] }), insurer);
    expect(adjudicated.item?.map((i) => figures(i.adjudication))).toEqual([
      { submitted: 150000, copay: 150000, eligible: 150000, benefit: 0 },
      { submitted: 300000, copay: 200000, eligible: 300000, benefit: 100000 },
    ]);
    const balance = await balanceOf(invoice.id);
    expect(moneyOf(balance, 'paidByInsurance')).toBe(100000);
    expect(moneyOf(balance, 'patientResponsibility')).toBe(350000);
    expect(moneyOf(balance, 'patientCopay')).toBe(350000);
    expect(moneyOf(balance, 'notCovered')).toBe(0);

    // Co-insurance of a total: 20 % of each item's share of 100 001 (allocated 33 334 / 66 667 by the claimed amounts).
    const other = await createPatient(t, 'Coins');
    await coverage(other, [copaypct(20)]);
    const second = await claimed(other, 1, 1);
    const partial = await create<ClaimResponse>(t, response(second.claim, 'partial', { total: 100001 }), insurer);
    expect(partial.item?.map((i) => figures(i.adjudication))).toEqual([
      { submitted: 150000, copay: 6667, eligible: 33334, benefit: 26667 }, // 6 666.8 → 6 667
      { submitted: 300000, copay: 13333, eligible: 66667, benefit: 53334 }, // 13 333.4 → 13 333
    ]);
    expect(partial.payment?.amount?.value).toBe(80001);
  });

  it('FR-BL-003: all of it the patient\'s share — nothing is paid, the EOB says so; taken back to queued before payment, the EOB is cancelled', async () => {
    const patient = await createPatient(t, 'AllCopay');
    await coverage(patient, [copay(500000)]);
    const { invoice, claim } = await claimed(patient, 1);
    const adjudicated = await create<ClaimResponse>(t, response(claim, 'complete', { items: [[1, 150000]] }), insurer);
    expect(adjudicated.payment).toBeUndefined();
    expect(figures(adjudicated.total)).toEqual({ submitted: 150000, copay: 150000, eligible: 150000, benefit: 0 });
    const payments = (await t.request({ method: 'GET', url: `/fhir/PaymentReconciliation?invoice=Invoice/${invoice.id}` })).json() as Bundle;
    expect(payments.entry ?? []).toHaveLength(0);
    const eob = await explanationOf(claim.id);
    expect(eob.payment).toBeUndefined();
    expect(figures(eob.total).benefit).toBe(0);

    const queued = await t.request({ method: 'PUT', url: `/fhir/ClaimResponse/${adjudicated.id}`, payload: { ...response(claim, 'queued', {}), id: adjudicated.id }, headers: { authorization: `Bearer ${insurer}` } });
    expect(queued.statusCode, queued.body).toBe(200);
    expect((await read<ExplanationOfBenefit>(t, 'ExplanationOfBenefit', eob.id!)).status).toBe('cancelled');
  });

  it('FR-BL-003: a denied claim (outcome error) gets an EOB with nothing eligible; the patient owes the whole invoice', async () => {
    const patient = await createPatient(t, 'DeniedEob');
    await coverage(patient, [copaypct(20)]);
    const { invoice, claim } = await claimed(patient, 1);
    await create<ClaimResponse>(t, { ...response(claim, 'error', {}), disposition: 'not covered by the plan' }, insurer);
    const eob = await explanationOf(claim.id);
    expect(eob.outcome).toBe('error');
    expect(eob.disposition).toBe('not covered by the plan');
    expect(figures(eob.total)).toEqual({ submitted: 150000, copay: 0, eligible: 0, benefit: 0 });
    const balance = await balanceOf(invoice.id);
    expect(moneyOf(balance, 'patientResponsibility')).toBe(150000);
    expect(moneyOf(balance, 'notCovered')).toBe(150000);
  });

  it('FR-BL-003: the approved amount as benefit (the earlier form) is read as what the insurer covers: the co-pay is still taken out', async () => {
    const patient = await createPatient(t, 'Legacy');
    await coverage(patient, [copaypct(20)]);
    const { claim } = await claimed(patient, 1);
    const adjudicated = await create<ClaimResponse>(t, response(claim, 'complete', { total: 150000, category: 'benefit' }), insurer);
    expect(figures(adjudicated.total)).toEqual({ submitted: 150000, copay: 30000, eligible: 150000, benefit: 120000 });
  });

  it('FR-BL-003: refused adjudications — an item not on the claim, an item above its claimed amount, a bad co-insurance on the Coverage; nothing is paid', async () => {
    const patient = await createPatient(t, 'Refused');
    const cov = await coverage(patient, [copaypct(20)]);
    const { invoice, claim } = await claimed(patient, 1);
    const post = (body: ClaimResponse) => t.request({ method: 'POST', url: '/fhir/ClaimResponse', payload: body, headers: { authorization: `Bearer ${insurer}` } });
    expectBusinessRule(await post(response(claim, 'complete', { items: [[7, 1000]] })), 422, /itemSequence 7 is not an item of the claim/);
    expectBusinessRule(await post(response(claim, 'complete', { items: [[1, 150001]] })), 422, /between 0 and the 150,000 VND claimed/);
    expectBusinessRule(await post(response(claim, 'complete', {})), 422, /eligible/);
    const stored = await read<Coverage>(t, 'Coverage', cov);
    const put = await t.request({ method: 'PUT', url: `/fhir/Coverage/${cov}`, payload: { ...stored, costToBeneficiary: [copaypct(120)] } });
    expect(put.statusCode, put.body).toBe(200);
    const bad = await post(response(claim, 'complete', { items: [[1, 150000]] }));
    expectBusinessRule(bad, 422, /between 0 and 100/);
    const payments = (await t.request({ method: 'GET', url: `/fhir/PaymentReconciliation?invoice=Invoice/${invoice.id}` })).json() as Bundle;
    expect(payments.entry ?? []).toHaveLength(0);
    const eobs = (await t.request({ method: 'GET', url: `/fhir/ExplanationOfBenefit?claim=Claim/${claim.id}` })).json() as Bundle;
    expect(eobs.entry ?? []).toHaveLength(0);
  });
});
