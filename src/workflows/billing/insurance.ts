import { createHash } from 'node:crypto';
import type {
  Claim,
  ClaimResponse,
  ClaimResponseItem,
  Coverage,
  CoverageEligibilityRequest,
  CoverageEligibilityResponse,
  CoverageEligibilityResponseInsuranceItemBenefit,
  Extension,
  Reference,
} from 'fhir/r4.js';
import { referencing } from '../../storage/front-desk-store.js';
import { newResourceId, type BeforeWriteHook, type StoreTransaction } from '../../storage/resource-store.js';
import { businessRule, referenceTo, replacedVersion } from '../scheduling-rules.js';
import { divRound, formatMoney, minorOf, money } from './money.js';
import { linesOf, readInvoice } from './invoices.js';
import { accountOf, paymentFor } from './payments.js';
import { CHARGE_CODE_SYSTEM, type PriceList } from './price-list.js';
import { ADJUDICATION_SYSTEM, adjudicate, adjudicationEntries, adjudicationTotals, categoryOf, costShareOf, coveredAmounts, isComputed, sumOf, type AdjudicatedLine, type ClaimLine } from './adjudication.js';
import { explanationIdFor, explanationOfBenefit, withdrawExplanation, writeExplanation } from './explanation-of-benefit.js';

/**
 * Insurance (seed 004 FR-BL-003).
 *
 * Coverage carries the benefit data the hospital checks: `status` active, `period`, `payor`
 * (the insurer Organization), `costToBeneficiary` of type `copaypct` (the patient's share in
 * percent, valueQuantity) or `copay` (valueMoney), and the yearly benefit limit as the extension
 * COVERAGE_LIMIT_URL (valueMoney).
 *
 * - Eligibility: `CoverageEligibilityRequest/$check` stores the request and the server's
 *   CoverageEligibilityResponse (in force or not, the benefits above) in one transaction.
 * - Claims: `Invoice/[id]/$claim` makes one Claim per invoice (id `claim-<invoice>`), items =
 *   the invoice lines (net = line total with tax), total = invoice totalGross, insurance = the
 *   Coverage in force on the invoice date (422 when none).
 * - Adjudication: the insurer writes a ClaimResponse (request = the Claim) with outcome
 *   `complete` or `partial` and the approved amount as `total` (or item `adjudication`) of
 *   category `benefit`. Before commit the server records the insurer's payment of the approved
 *   amount on the invoice (a PaymentReconciliation of method insurance, paymentHook rules
 *   apply); the rest stays outstanding, owed by the patient. Outcome `queued` = pending,
 *   `error` = denied (nothing paid). An adjudication once paid is final (422 on change).
 */
export const COVERAGE_LIMIT_URL = 'https://fhir.hospital.example.org/StructureDefinition/coverage-benefit-limit';
export const CLAIM_NUMBER_SYSTEM = 'https://fhir.hospital.example.org/sid/claim-number';
const BENEFIT_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/benefit-type';
const ADJUDICATED = new Set(['complete', 'partial']);

export function claimIdFor(invoiceId: string): string {
  return invoiceId.length <= 58 ? `claim-${invoiceId}` : `claim-${createHash('sha256').update(invoiceId).digest('hex').slice(0, 40)}`;
}

export function inForce(coverage: Coverage, date: string): boolean {
  const day = date.slice(0, 10);
  if (coverage.status !== 'active' || (coverage.payor ?? []).length === 0) return false;
  if (coverage.period?.start && coverage.period.start.slice(0, 10) > day) return false;
  if (coverage.period?.end && coverage.period.end.slice(0, 10) < day) return false;
  return true;
}

async function readCoverage(tx: StoreTransaction, id: string): Promise<(Coverage & { id: string }) | undefined> {
  const stored = await tx.read('Coverage', id);
  return stored?.json && !stored.deleted ? (JSON.parse(stored.json) as Coverage & { id: string }) : undefined;
}

/** The named Coverage, else the patient's coverages with one in force on `date` first. */
async function coveragesFor(tx: StoreTransaction, patientId: string, named: string | undefined, date: string): Promise<Array<Coverage & { id: string }>> {
  if (named) {
    const coverage = await readCoverage(tx, named);
    if (!coverage) throw businessRule('invalid', `Coverage/${named} does not exist.`, ['insurance.coverage']);
    if (referenceTo('Patient', coverage.beneficiary.reference) !== patientId) throw businessRule('invalid', `Coverage/${named} is not Patient/${patientId}'s.`, ['insurance.coverage']);
    return [coverage];
  }
  const rows = await referencing(await tx.executor(), 'Coverage', 'beneficiary', 'Patient', patientId);
  const all = rows.map((r) => JSON.parse(r.json) as Coverage & { id: string });
  return all.sort((a, b) => Number(inForce(b, date)) - Number(inForce(a, date)));
}

function insurerOf(coverage: Coverage | undefined): Reference | undefined {
  const payor = coverage?.payor?.find((p) => referenceTo('Organization', p.reference));
  return payor ? { reference: `Organization/${referenceTo('Organization', payor.reference)}`, ...(payor.display ? { display: payor.display } : {}) } : undefined;
}

function benefitsOf(coverage: Coverage, prices: PriceList): CoverageEligibilityResponseInsuranceItemBenefit[] {
  const benefits: CoverageEligibilityResponseInsuranceItemBenefit[] = [];
  const limit = coverage.extension?.find((e: Extension) => e.url === COVERAGE_LIMIT_URL)?.valueMoney;
  if (limit) benefits.push({ type: { coding: [{ system: BENEFIT_TYPE_SYSTEM, code: 'benefit', display: 'Benefit' }] }, allowedMoney: money(minorOf(limit, prices.currency, 'Coverage.extension.valueMoney'), prices.currency) });
  // The share as adjudication reads it (the same entries, the same refusals of invalid ones),
  // so the answer of $check is what a claim is then charged.
  const share = costShareOf(coverage, prices.currency);
  if (share.percent) {
    // allowedUnsignedInt holds whole percents: a fractional rate is rounded half up here only.
    const percent = divRound(share.percent.units, 10n ** BigInt(share.percent.scale));
    benefits.push({ type: { coding: [{ system: BENEFIT_TYPE_SYSTEM, code: 'copay-percent', display: 'Copayment percent per service' }] }, allowedUnsignedInt: Number(percent) });
  }
  if (share.copay !== undefined) {
    benefits.push({ type: { coding: [{ system: BENEFIT_TYPE_SYSTEM, code: 'copay-maximum', display: 'Copayment maximum per service' }] }, allowedMoney: money(share.copay, prices.currency) });
  }
  return benefits;
}

/** `CoverageEligibilityRequest/$check`: stores the request and the server's answer. */
export async function checkEligibility(tx: StoreTransaction, prices: PriceList, input: CoverageEligibilityRequest): Promise<CoverageEligibilityResponse & { id: string }> {
  const patientId = referenceTo('Patient', input.patient?.reference);
  if (!patientId) throw businessRule('invalid', 'CoverageEligibilityRequest.patient must name a Patient.', ['CoverageEligibilityRequest.patient']);
  const patient = await tx.read('Patient', patientId);
  if (!patient?.json || patient.deleted) throw businessRule('invalid', `Patient/${patientId} does not exist.`, ['CoverageEligibilityRequest.patient']);
  const now = new Date().toISOString();
  const date = input.servicedDate ?? now;
  const named = referenceTo('Coverage', input.insurance?.[0]?.coverage?.reference);
  const coverages = await coveragesFor(tx, patientId, named, date);
  const chosen = coverages[0];
  const insurer = input.insurer ?? insurerOf(chosen) ?? { display: 'unknown insurer' };
  const purpose = input.purpose?.length ? input.purpose : (['validation', 'benefits'] as CoverageEligibilityRequest['purpose']);
  const requestId = newResourceId();
  const request: CoverageEligibilityRequest = {
    ...input,
    status: 'active',
    purpose,
    patient: { reference: `Patient/${patientId}` },
    created: input.created ?? now,
    insurer,
    ...(chosen && !input.insurance?.length ? { insurance: [{ focal: true, coverage: { reference: `Coverage/${chosen.id}` } }] } : {}),
  };
  delete request.id;
  delete request.meta;
  await tx.create(request, 'POST', requestId);
  const forced = chosen ? inForce(chosen, date) : false;
  const response: CoverageEligibilityResponse & { id: string } = {
    resourceType: 'CoverageEligibilityResponse',
    id: newResourceId(),
    status: 'active',
    purpose,
    patient: { reference: `Patient/${patientId}` },
    ...(input.servicedDate ? { servicedDate: input.servicedDate } : {}),
    created: now,
    request: { reference: `CoverageEligibilityRequest/${requestId}` },
    outcome: chosen ? 'complete' : 'error',
    disposition: chosen
      ? forced
        ? `Coverage/${chosen.id} is in force on ${date.slice(0, 10)}.`
        : `Coverage/${chosen.id} is not in force on ${date.slice(0, 10)} (status ${chosen.status}${chosen.period ? `, period ${chosen.period.start ?? '…'} to ${chosen.period.end ?? '…'}` : ''}).`
      : `Patient/${patientId} has no insurance coverage on record.`,
    insurer,
    ...(chosen
      ? {
          insurance: [
            {
              coverage: { reference: `Coverage/${chosen.id}` },
              inforce: forced,
              ...(chosen.period ? { benefitPeriod: chosen.period } : {}),
              item: [{ category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/ex-benefitcategory', code: '1', display: 'Medical Care' }] }, benefit: benefitsOf(chosen, prices) }],
            },
          ],
        }
      : { error: [{ code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/adjudication-error', code: 'a001', display: 'Missing Identifier' }], text: 'no coverage on record' } }] }),
  };
  await tx.create(response, 'POST', response.id);
  return response;
}

/** `Invoice/[id]/$claim`: the insurance claim of an issued invoice. */
export async function claimInvoice(tx: StoreTransaction, prices: PriceList, invoiceId: string, coverageId: string | undefined): Promise<Claim & { id: string }> {
  const invoice = await readInvoice(tx, invoiceId, true);
  if (invoice.status !== 'issued') throw businessRule('invalid', `Invoice/${invoiceId} is ${invoice.status}; only an issued invoice with a balance is claimed.`, ['Invoice.status']);
  const id = claimIdFor(invoiceId);
  const existing = await tx.read('Claim', id);
  if (existing?.json && !existing.deleted) throw businessRule('conflict', `Invoice/${invoiceId} is already claimed (Claim/${id}).`);
  const patientId = referenceTo('Patient', invoice.subject?.reference);
  if (!patientId) throw businessRule('invalid', `Invoice/${invoiceId} has no patient.`);
  const date = invoice.date ?? new Date().toISOString();
  const coverage = (await coveragesFor(tx, patientId, coverageId, date))[0];
  if (!coverage || !inForce(coverage, date)) {
    throw businessRule('invalid', `Not eligible: Patient/${patientId} has no insurance coverage in force on ${date.slice(0, 10)}${coverage ? ` (Coverage/${coverage.id} is ${coverage.status})` : ''}.`, ['Claim.insurance']);
  }
  const insurer = insurerOf(coverage);
  const lines = linesOf(invoice, prices);
  const nets = (invoice.lineItem ?? []).map((item) => {
    let total = 0n;
    for (const p of item.priceComponent ?? []) {
      const amount = p.amount ? minorOf(p.amount, prices.currency, 'Invoice.lineItem.priceComponent.amount') : 0n;
      total += p.type === 'discount' ? -amount : p.type === 'base' || p.type === 'tax' || p.type === 'surcharge' ? amount : 0n;
    }
    return total;
  });
  const now = new Date().toISOString();
  const claim: Claim & { id: string } = {
    resourceType: 'Claim',
    id,
    identifier: [{ system: CLAIM_NUMBER_SYSTEM, value: `CLM-${invoice.identifier?.[0]?.value ?? invoiceId}` }],
    status: 'active',
    type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'institutional', display: 'Institutional' }] },
    use: 'claim',
    patient: { reference: `Patient/${patientId}` },
    created: now,
    ...(insurer ? { insurer } : {}),
    provider: { display: prices.hospital.name },
    priority: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/processpriority', code: 'normal' }] },
    supportingInfo: [{ sequence: 1, category: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claiminformationcategory', code: 'info', display: 'Information' }] }, valueReference: { reference: `Invoice/${invoiceId}` } }],
    insurance: [{ sequence: 1, focal: true, coverage: { reference: `Coverage/${coverage.id}` } }],
    item: lines.map((line, i) => ({
      sequence: i + 1,
      productOrService: { coding: [{ system: CHARGE_CODE_SYSTEM, code: line.code, display: prices.display(line.code) }] },
      quantity: { value: line.quantity },
      net: money(nets[i]!, prices.currency),
    })),
    total: money(nets.reduce((a, b) => a + b, 0n), prices.currency),
  };
  await tx.create(claim, 'POST', id);
  return claim;
}

function isOurClaim(claim: Claim): boolean {
  return (claim.identifier ?? []).some((i) => i.system === CLAIM_NUMBER_SYSTEM);
}

/** The invoice a claim of ours is for. */
export function invoiceOfClaim(claim: Claim): string | undefined {
  for (const info of claim.supportingInfo ?? []) {
    const id = referenceTo('Invoice', info.valueReference?.reference);
    if (id) return id;
  }
  return undefined;
}

export function insurancePaymentId(claimResponseId: string): string {
  return `ins-${createHash('sha256').update(claimResponseId).digest('hex').slice(0, 40)}`;
}

/** The claim's lines as adjudication sees them: sequence and claimed net (minor units). */
function claimLines(claim: Claim, prices: PriceList): ClaimLine[] {
  return (claim.item ?? []).map((item, i) => ({ sequence: item.sequence, net: item.net ? minorOf(item.net, prices.currency, `Claim.item[${i}].net`) : 0n }));
}

/** The insurer's ClaimResponse with the server's figures: every claim item's four amounts, the totals and the payment. */
function withFigures(response: ClaimResponse, lines: readonly AdjudicatedLine[], currency: string, date: string): ClaimResponse {
  const items: ClaimResponseItem[] = lines.map((line) => {
    const given = response.item?.find((i) => i.itemSequence === line.sequence);
    const kept = (given?.adjudication ?? []).filter((a) => !isComputed(a.category));
    return { ...given, itemSequence: line.sequence, adjudication: [...adjudicationEntries(line, currency), ...kept] };
  });
  const totals = adjudicationTotals(lines);
  const keptTotals = (response.total ?? []).filter((t) => !isComputed(t.category));
  const next: ClaimResponse = {
    ...response,
    item: items,
    total: [...adjudicationEntries(totals, currency).map((a) => ({ category: a.category, amount: a.amount! })), ...keptTotals],
  };
  if (totals.benefit > 0n) {
    next.payment = {
      ...response.payment,
      type: response.payment?.type ?? { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/ex-paymenttype', code: response.outcome === 'complete' ? 'complete' : 'partial' }] },
      date: response.payment?.date ?? date,
      amount: money(totals.benefit, currency),
    };
  } else {
    delete next.payment;
  }
  return next;
}

/** What the insurer pays on a stored adjudication (the server's benefit total). */
function benefitPaid(response: ClaimResponse | undefined, prices: PriceList): bigint {
  if (!response || response.status !== 'active' || !ADJUDICATED.has(response.outcome)) return 0n;
  const total = response.total?.find((t) => categoryOf(t.category) === 'benefit');
  return total ? minorOf(total.amount, prices.currency, 'ClaimResponse.total.amount') : 0n;
}

function sameAmounts(a: readonly bigint[] | undefined, b: readonly bigint[] | undefined): boolean {
  return a !== undefined && b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Adjudication of our claims, before commit in the insurer's write of its ClaimResponse:
 * the patient's share (Coverage.costToBeneficiary, src/workflows/billing/adjudication.ts) is
 * taken out of what the insurer covers, the insurer's payment of the rest (the benefit) is
 * recorded on the invoice, the ClaimResponse gets the server's figures and an
 * ExplanationOfBenefit is written for the patient — all in the same transaction.
 */
export function claimResponseHook(prices: PriceList): BeforeWriteHook {
  return async (tx, change) => {
    if (change.resourceType !== 'ClaimResponse') return;
    const after = change.resource as ClaimResponse | undefined;
    const before = await replacedVersion<ClaimResponse>(tx, change);
    const claimId = referenceTo('Claim', (after ?? before)?.request?.reference);
    if (!claimId) return;
    const stored = await tx.read('Claim', claimId);
    if (!stored?.json || stored.deleted) return;
    const claim = JSON.parse(stored.json) as Claim & { id: string };
    const invoiceId = invoiceOfClaim(claim);
    if (!isOurClaim(claim) || !invoiceId) return;
    const currency = prices.currency;
    const lines = claimLines(claim, prices);
    const adjudicated = (r: ClaimResponse | undefined): r is ClaimResponse => r !== undefined && r.status === 'active' && ADJUDICATED.has(r.outcome);

    if (benefitPaid(before, prices) > 0n) {
      if (!adjudicated(after) || !sameAmounts(coveredAmounts(after, lines, currency), coveredAmounts(before!, lines, currency))) {
        throw businessRule('invalid', `ClaimResponse/${change.id} has been paid on Invoice/${invoiceId}; the adjudication is final (a correction is a refund by the accountant).`, ['ClaimResponse.outcome']);
      }
      // A resend (or a change of its text) keeps the figures the payment was made from.
      change.resource = { ...after, item: before!.item, total: before!.total, payment: before!.payment } as ClaimResponse;
      return;
    }
    const eobId = explanationIdFor(change.id);
    const decided = after !== undefined && after.status === 'active' && (ADJUDICATED.has(after.outcome) || after.outcome === 'error');
    if (!decided) {
      // Back to queued (or withdrawn) before anything was paid: the explanation no longer holds.
      if (before && (ADJUDICATED.has(before.outcome) || before.outcome === 'error')) await withdrawExplanation(tx, eobId);
      return;
    }
    const coverageId = referenceTo('Coverage', (claim.insurance ?? []).find((i) => i.focal)?.coverage.reference ?? claim.insurance?.[0]?.coverage.reference);
    const coverage = coverageId ? await readCoverage(tx, coverageId) : undefined;
    if (!coverage) throw businessRule('invalid', `The Coverage of Claim/${claimId} (${coverageId ? `Coverage/${coverageId}` : 'none'}) no longer exists; the claim cannot be adjudicated.`, ['ClaimResponse.request']);
    let figures: AdjudicatedLine[];
    let response: ClaimResponse = after;
    if (after.outcome === 'error') {
      figures = adjudicate(lines, [], {});
    } else {
      const covered = coveredAmounts(after, lines, currency);
      if (covered === undefined) {
        throw businessRule('invalid', 'An adjudicated ClaimResponse (outcome complete or partial) states what the insurer covers: item.adjudication (or total) of category eligible.', ['ClaimResponse.total']);
      }
      figures = adjudicate(lines, covered, costShareOf(coverage, currency));
      response = withFigures(after, figures, currency, change.lastUpdated.slice(0, 10));
      change.resource = response;
      const benefit = sumOf(figures, 'benefit');
      if (benefit > 0n) {
        const invoice = await readInvoice(tx, invoiceId, true);
        const account = await accountOf(await tx.executor(), prices, invoice);
        if (benefit > account.outstanding) {
          throw businessRule('invalid', `The insurer's ${formatMoney(benefit, currency)} is more than the ${formatMoney(account.outstanding, currency)} still outstanding on Invoice/${invoiceId}; refund the patient first.`, ['ClaimResponse.total']);
        }
        const payment = paymentFor(prices, invoiceId, benefit, 'insurance', { note: `Insurance payout of ClaimResponse/${change.id} (Claim/${claimId})`, ...(after.insurer ? { issuer: after.insurer } : {}) });
        await tx.create(payment, 'POST', insurancePaymentId(change.id));
      }
    }
    await writeExplanation(tx, explanationOfBenefit({ id: eobId, claim, number: claim.identifier?.find((i) => i.system === CLAIM_NUMBER_SYSTEM)?.value, claimResponseId: change.id, response, coverageId: coverage.id, invoiceId, lines: figures, currency, now: change.lastUpdated }));
  };
}
