import type { Claim, ClaimResponse, Coverage, CoverageEligibilityResponse, Invoice, Organization, Parameters, PaymentReconciliation } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COVERAGE_LIMIT_URL } from '../../src/workflows/billing/insurance.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { createPatient, signInAs } from './smart-helpers.js';
import { copay, copaypct, create, createCoverage, expectBusinessRule, finishedVisit, moneyOf, op, read, startInsuranceApp } from './billing-helpers.js';

/**
 * Insurance (seed 004 FR-BL-003; issue 14 §4; src/workflows/billing/insurance.ts): eligibility
 * against the patient's Coverage, claims generated from invoices, status tracking through
 * ClaimResponse, partial approval paid by the insurer and the rest billed to the patient.
 */

let t: TestApp;
let accountant: string;
let insurer: string;
let insurerOrg: string;

beforeAll(async () => {
  ({ t, accountant, insurer, insurerOrg } = await startInsuranceApp('Bao Viet Insurance', 'Practitioner/acc-9'));
}, 60_000);
afterAll(async () => {
  await t?.close();
});

/** A Coverage with a 20 % co-insurance and a 50,000,000 VND yearly limit (`extra` replaces parts). */
function coverage(patient: string, extra: Partial<Coverage> = {}): Promise<string> {
  return createCoverage(t, insurerOrg, patient, {
    costToBeneficiary: [copaypct(20)],
    extension: [{ url: COVERAGE_LIMIT_URL, valueMoney: { value: 50_000_000, currency: 'VND' } }],
    ...extra,
  });
}

function eligibilityRequest(patient: string, coverageId?: string) {
  return {
    resourceType: 'CoverageEligibilityRequest',
    status: 'active',
    purpose: ['validation', 'benefits'],
    patient: { reference: `Patient/${patient}` },
    created: new Date().toISOString(),
    insurer: { reference: `Organization/${insurerOrg}` },
    ...(coverageId ? { insurance: [{ coverage: { reference: `Coverage/${coverageId}` } }] } : {}),
  };
}

function adjudication(claimId: string, patient: string, outcome: ClaimResponse['outcome'], approved?: number): ClaimResponse {
  return {
    resourceType: 'ClaimResponse',
    status: 'active',
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'institutional' }] },
    use: 'claim',
    patient: { reference: `Patient/${patient}` },
    created: new Date().toISOString(),
    insurer: { reference: `Organization/${insurerOrg}` },
    request: { reference: `Claim/${claimId}` },
    outcome,
    // What the insurer covers (eligible); the server takes the co-payment out (workflows-insurance-copay.test.ts).
    ...(approved !== undefined ? { total: [{ category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/adjudication', code: 'eligible' }] }, amount: { value: approved, currency: 'VND' } }] } : {}),
  };
}

async function invoiced(patient: string, visits: number): Promise<Invoice & { id: string }> {
  for (let i = 0; i < visits; i++) await finishedVisit(t, patient);
  const res = await op(t, 'POST', `/fhir/Patient/${patient}/$invoice`, accountant);
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as Invoice & { id: string };
}

describe('eligibility (FR-BL-003)', () => {
  it('FR-BL-003: $check answers from the patient\'s Coverage: in force, benefit limit, co-payment', async () => {
    const patient = await createPatient(t, 'Covered');
    const cov = await coverage(patient);
    const res = await op(t, 'POST', '/fhir/CoverageEligibilityRequest/$check', accountant);
    expect(res.statusCode).toBe(400);
    const checked = await t.request({ method: 'POST', url: '/fhir/CoverageEligibilityRequest/$check', payload: eligibilityRequest(patient), headers: { authorization: `Bearer ${accountant}` } });
    expect(checked.statusCode, checked.body).toBe(200);
    const answer = checked.json() as CoverageEligibilityResponse;
    expect(answer.outcome).toBe('complete');
    expect(answer.insurance?.[0]?.coverage.reference).toBe(`Coverage/${cov}`);
    expect(answer.insurance?.[0]?.inforce).toBe(true);
    const benefits = answer.insurance?.[0]?.item?.[0]?.benefit ?? [];
    expect(benefits.find((b) => b.type.coding?.[0]?.code === 'benefit')?.allowedMoney?.value).toBe(50_000_000);
    expect(benefits.find((b) => b.type.coding?.[0]?.code === 'copay-percent')?.allowedUnsignedInt).toBe(20);
    // Both are stored: the request and the server's response to it.
    const stored = await read<CoverageEligibilityResponse>(t, 'CoverageEligibilityResponse', answer.id!);
    expect(stored.request.reference).toMatch(/^CoverageEligibilityRequest\//);
  });

  it('FR-BL-003: $check reads the co-payment as adjudication does: the coverage-copay-type entries, the first of each; an invalid one is refused', async () => {
    const patient = await createPatient(t, 'OddCoverage');
    const cov = await coverage(patient, {
      costToBeneficiary: [
        // Another system's "copay" is not the co-payment adjudication charges: not reported.
        { type: { coding: [{ system: 'http://insurer.example.org/cost-types', code: 'copay' }] }, valueMoney: { value: 99_000, currency: 'VND' } },
        copay(15_000),
        copaypct(12.5),
        // A second entry of a kind is not charged either.
        copaypct(40),
      ],
    });
    const checked = await t.request({ method: 'POST', url: '/fhir/CoverageEligibilityRequest/$check', payload: eligibilityRequest(patient, cov), headers: { authorization: `Bearer ${accountant}` } });
    expect(checked.statusCode, checked.body).toBe(200);
    const benefits = (checked.json() as CoverageEligibilityResponse).insurance?.[0]?.item?.[0]?.benefit ?? [];
    expect(benefits.filter((b) => b.type.coding?.[0]?.code === 'copay-maximum').map((b) => b.allowedMoney)).toEqual([{ value: 15_000, currency: 'VND' }]);
    // Whole percents: 12.5 % is reported as 13.
    expect(benefits.filter((b) => b.type.coding?.[0]?.code === 'copay-percent').map((b) => b.allowedUnsignedInt)).toEqual([13]);

    const invalid = await createPatient(t, 'InvalidCoverage');
    const bad = await coverage(invalid, { costToBeneficiary: [copaypct(140)] });
    const refused = await t.request({ method: 'POST', url: '/fhir/CoverageEligibilityRequest/$check', payload: eligibilityRequest(invalid, bad), headers: { authorization: `Bearer ${accountant}` } });
    expectBusinessRule(refused, 422, /between 0 and 100/);
  });

  it('FR-BL-003: an expired or cancelled coverage is not in force; no coverage at all is an error outcome', async () => {
    const patient = await createPatient(t, 'Lapsed');
    const cov = await coverage(patient, { period: { start: '2020-01-01', end: '2021-12-31' } });
    const lapsed = (await t.request({ method: 'POST', url: '/fhir/CoverageEligibilityRequest/$check', payload: eligibilityRequest(patient, cov), headers: { authorization: `Bearer ${insurer}` } })).json() as CoverageEligibilityResponse;
    expect(lapsed.insurance?.[0]?.inforce).toBe(false);
    expect(lapsed.disposition).toMatch(/not in force/);
    const none = await createPatient(t, 'Uninsured');
    const answer = (await t.request({ method: 'POST', url: '/fhir/CoverageEligibilityRequest/$check', payload: eligibilityRequest(none), headers: { authorization: `Bearer ${accountant}` } })).json() as CoverageEligibilityResponse;
    expect(answer.outcome).toBe('error');
    expect(answer.disposition).toMatch(/no insurance coverage/);
  });
});

describe('claims (FR-BL-003)', () => {
  it('FR-BL-003: a claim is generated from an invoice; not without coverage in force; not twice', async () => {
    const uninsured = await createPatient(t, 'NoClaim');
    const bill = await invoiced(uninsured, 1);
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${bill.id}/$claim`, accountant), 422, /Not eligible/);

    const patient = await createPatient(t, 'Claimant');
    const cov = await coverage(patient);
    const invoice = await invoiced(patient, 2);
    const res = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$claim`, accountant);
    expect(res.statusCode, res.body).toBe(201);
    const claim = res.json() as Claim;
    expect(claim.status).toBe('active');
    expect(claim.insurance[0]?.coverage.reference).toBe(`Coverage/${cov}`);
    expect(claim.insurer?.reference).toBe(`Organization/${insurerOrg}`);
    expect(claim.item?.map((i) => [i.productOrService.coding?.[0]?.code, i.net?.value])).toEqual([['CONS-GP', 150000], ['CONS-GP', 150000]]);
    expect(claim.total).toEqual({ value: 300000, currency: 'VND' });
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$claim`, accountant), 409, /already claimed/);
  });

  it('FR-BL-003: partial approval — the insurer pays the approved part less the co-insurance, the patient owes exactly the rest', async () => {
    const patient = await createPatient(t, 'Partial');
    await coverage(patient);
    const invoice = await invoiced(patient, 3); // 450 000 VND
    const claim = (await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$claim`, accountant)).json() as Claim & { id: string };

    // Pending: the whole claim is expected from the insurer.
    let balance = (await op(t, 'GET', `/fhir/Patient/${patient}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(balance, 'outstanding')).toBe(450000);
    expect(moneyOf(balance, 'pendingInsurance')).toBe(450000);
    expect(moneyOf(balance, 'patientResponsibility')).toBe(0);

    // Status tracking: queued first, then adjudicated by the insurer.
    const queued = await create<ClaimResponse>(t, adjudication(claim.id, patient, 'queued'), insurer);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).status).toBe('issued');
    // An approval above the claim is refused, nothing is paid.
    const tooMuch = await t.request({ method: 'PUT', url: `/fhir/ClaimResponse/${queued.id}`, payload: { ...adjudication(claim.id, patient, 'partial', 450001), id: queued.id }, headers: { authorization: `Bearer ${insurer}` } });
    expectBusinessRule(tooMuch, 422, /between 0 and the 450,000 VND claimed/);

    const partial = await t.request({ method: 'PUT', url: `/fhir/ClaimResponse/${queued.id}`, payload: { ...adjudication(claim.id, patient, 'partial', 333333), id: queued.id }, headers: { authorization: `Bearer ${insurer}` } });
    expect(partial.statusCode, partial.body).toBe(200);
    // 333 333 covered, spread 111 111 per visit; the coverage's 20 % co-insurance (22 222.2 → 22 222 each) is the patient's.
    expect((partial.json() as ClaimResponse).payment?.amount?.value).toBe(266667);

    const payments = (await t.request({ method: 'GET', url: `/fhir/PaymentReconciliation?invoice=Invoice/${invoice.id}` })).json() as { entry?: Array<{ resource: PaymentReconciliation }> };
    expect(payments.entry).toHaveLength(1);
    const payout = payments.entry![0]!.resource;
    expect(payout.paymentAmount).toEqual({ value: 266667, currency: 'VND' });
    expect(payout.detail?.[0]?.type?.coding?.map((c) => c.code)).toContain('insurance');
    expect(payout.paymentIssuer?.reference).toBe(`Organization/${insurerOrg}`);

    const invoiceBalance = (await op(t, 'GET', `/fhir/Invoice/${invoice.id}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(invoiceBalance, 'paidByInsurance')).toBe(266667);
    expect(moneyOf(invoiceBalance, 'outstanding')).toBe(183333);
    expect(moneyOf(invoiceBalance, 'patientCopay')).toBe(66666);
    expect(moneyOf(invoiceBalance, 'notCovered')).toBe(116667);
    balance = (await op(t, 'GET', `/fhir/Patient/${patient}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(balance, 'pendingInsurance')).toBe(0);
    expect(moneyOf(balance, 'patientResponsibility')).toBe(183333);

    // The adjudication is final once paid.
    const changed = await t.request({ method: 'PUT', url: `/fhir/ClaimResponse/${queued.id}`, payload: { ...adjudication(claim.id, patient, 'complete', 450000), id: queued.id }, headers: { authorization: `Bearer ${insurer}` } });
    expectBusinessRule(changed, 422, /final/);

    // The patient pays the rest: balanced, nothing owed.
    expectBusinessRule(await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 183334 }, { name: 'method', valueCode: 'card' }]), 422, /Over-payment/);
    const paid = await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$pay`, accountant, [{ name: 'amount', valueDecimal: 183333 }, { name: 'method', valueCode: 'card' }]);
    expect(paid.statusCode, paid.body).toBe(201);
    expect((await read<Invoice>(t, 'Invoice', invoice.id)).status).toBe('balanced');
    balance = (await op(t, 'GET', `/fhir/Patient/${patient}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(balance, 'outstanding')).toBe(0);
  });

  it('FR-BL-003: a denied claim (outcome error) pays nothing; the patient owes the whole invoice', async () => {
    const patient = await createPatient(t, 'Denied');
    await coverage(patient);
    const invoice = await invoiced(patient, 1);
    const claim = (await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$claim`, accountant)).json() as Claim & { id: string };
    await create<ClaimResponse>(t, { ...adjudication(claim.id, patient, 'error'), disposition: 'not covered' }, insurer);
    const balance = (await op(t, 'GET', `/fhir/Patient/${patient}/$balance`, accountant)).json() as Parameters;
    expect(moneyOf(balance, 'pendingInsurance')).toBe(0);
    expect(moneyOf(balance, 'patientResponsibility')).toBe(150000);
  });

  it('FR-BL-003: an accountant cannot adjudicate (ClaimResponse is written by the insurer)', async () => {
    const patient = await createPatient(t, 'Scope');
    await coverage(patient);
    const invoice = await invoiced(patient, 1);
    const claim = (await op(t, 'POST', `/fhir/Invoice/${invoice.id}/$claim`, accountant)).json() as Claim & { id: string };
    const res = await t.request({ method: 'POST', url: '/fhir/ClaimResponse', payload: adjudication(claim.id, patient, 'complete', 150000), headers: { authorization: `Bearer ${accountant}` } });
    expect(res.statusCode).toBe(403);
  });
});
