import type { ClaimResponse, ClaimResponseItemAdjudication, CodeableConcept, Coverage } from 'fhir/r4.js';
import { businessRule } from '../scheduling-rules.js';
import { allocate, applyRate, formatMoney, minorOf, money, parseDecimal, type Decimal } from './money.js';

/**
 * The patient's share at adjudication (seed 004 `insurance.copay_amount` / `coverage_percentage`,
 * FR-BL-003 "partial approvals"): pure money arithmetic, no database.
 *
 * The insurer states what it covers of each claim item (`eligible`); the server takes the
 * patient's share out of it by the Coverage's `costToBeneficiary`:
 *
 *   copay    = min(fixed co-payment `copay`, eligible)            — per claim item (service line)
 *   coins    = round((eligible − copay) × `copaypct` / 100)        — half away from zero, once per item
 *   share    = copay + coins            (the patient's; stays outstanding on the invoice)
 *   benefit  = eligible − share         (what the insurer pays)
 *
 * A Coverage without costToBeneficiary leaves share 0: the insurer pays all it covers. What the
 * insurer does not cover (submitted − eligible) is the patient's as well, but it is not a co-payment.
 */

export const ADJUDICATION_SYSTEM = 'http://terminology.hl7.org/CodeSystem/adjudication';
export const COPAY_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/coverage-copay-type';
export type AdjudicationCategory = 'submitted' | 'copay' | 'eligible' | 'benefit';
const OURS: readonly string[] = ['submitted', 'copay', 'eligible', 'benefit'];

export interface CostShare {
  /** Fixed co-payment per claim item, minor units (costToBeneficiary type `copay`). */
  copay?: bigint;
  /** Co-insurance in percent (costToBeneficiary type `copaypct`). */
  percent?: Decimal;
}

export interface ClaimLine {
  sequence: number;
  /** The claimed amount of the item (Claim.item.net), minor units. */
  net: bigint;
}

export interface AdjudicatedLine {
  sequence: number;
  submitted: bigint;
  eligible: bigint;
  copay: bigint;
  benefit: bigint;
}

export function categoryOf(concept: CodeableConcept | undefined): string | undefined {
  const coding = (concept?.coding ?? []).find((c) => (c.system === undefined || c.system === ADJUDICATION_SYSTEM) && c.code !== undefined && OURS.includes(c.code));
  return coding?.code;
}

/** The Coverage's cost to the beneficiary: the first `copay` (Money) and the first `copaypct` (percent). */
export function costShareOf(coverage: Coverage, currency: string): CostShare {
  const share: CostShare = {};
  (coverage.costToBeneficiary ?? []).forEach((cost, i) => {
    const code = (cost.type?.coding ?? []).find((c) => c.system === undefined || c.system === COPAY_TYPE_SYSTEM)?.code;
    const path = `Coverage.costToBeneficiary[${i}]`;
    if (code === 'copay' && share.copay === undefined) {
      if (!cost.valueMoney) throw businessRule('invalid', `Coverage/${coverage.id ?? ''}: a copay is a fixed amount (valueMoney).`, [`${path}.valueMoney`]);
      const amount = minorOf(cost.valueMoney, currency, `${path}.valueMoney`);
      if (amount < 0n) throw businessRule('invalid', `Coverage/${coverage.id ?? ''}: the co-payment cannot be negative.`, [`${path}.valueMoney`]);
      share.copay = amount;
    } else if (code === 'copaypct' && share.percent === undefined) {
      const value = cost.valueQuantity?.value;
      const percent = value === undefined ? undefined : parseDecimal(value);
      if (!percent || percent.units < 0n || percent.units > 100n * 10n ** BigInt(percent.scale)) {
        throw businessRule('invalid', `Coverage/${coverage.id ?? ''}: the co-insurance (copaypct) is a percentage between 0 and 100 (valueQuantity.value).`, [`${path}.valueQuantity`]);
      }
      share.percent = percent;
    }
  });
  return share;
}

/** The patient's share of one item's eligible amount. */
export function patientShare(eligible: bigint, share: CostShare): bigint {
  const fixed = share.copay === undefined ? 0n : share.copay < eligible ? share.copay : eligible;
  const rest = eligible - fixed;
  // percent / 100: two more decimal places on the rate.
  const coins = share.percent ? applyRate(rest, { units: share.percent.units, scale: share.percent.scale + 2 }) : 0n;
  return fixed + coins;
}

export function adjudicate(lines: readonly ClaimLine[], eligible: readonly bigint[], share: CostShare): AdjudicatedLine[] {
  return lines.map((line, i) => {
    const covered = eligible[i] ?? 0n;
    const copay = patientShare(covered, share);
    return { sequence: line.sequence, submitted: line.net, eligible: covered, copay, benefit: covered - copay };
  });
}

function amountOf(adjudications: ReadonlyArray<{ category: CodeableConcept; amount?: { value?: number; currency?: string } }>, category: string, currency: string, path: string): bigint | undefined {
  const found = adjudications.find((a) => categoryOf(a.category) === category && a.amount);
  return found ? minorOf(found.amount, currency, path) : undefined;
}

/**
 * What the insurer covers of each claim line, from its ClaimResponse: per item
 * (`item.adjudication` with itemSequence = Claim.item.sequence) the `eligible` amount, else
 * the `benefit` amount (the form before eligible was read: the approved amount); items not
 * listed are not covered. Without item amounts, the `total` of category eligible (else
 * benefit) spread over the lines in proportion to their claimed amounts. Undefined when the
 * response states no amount at all. 422 for an item that is not on the claim, an amount
 * below 0 or above what was claimed for the item.
 */
export function coveredAmounts(response: ClaimResponse, lines: readonly ClaimLine[], currency: string): bigint[] | undefined {
  const claimed = lines.reduce((a, l) => a + l.net, 0n);
  const fmt = (m: bigint) => formatMoney(m, currency);
  const items = response.item ?? [];
  if (items.some((item) => (item.adjudication ?? []).some((a) => (categoryOf(a.category) === 'eligible' || categoryOf(a.category) === 'benefit') && a.amount))) {
    const covered = lines.map(() => 0n);
    const seen = new Set<number>();
    items.forEach((item, i) => {
      const path = `ClaimResponse.item[${i}]`;
      const index = lines.findIndex((l) => l.sequence === item.itemSequence);
      if (index < 0) throw businessRule('invalid', `ClaimResponse.item[${i}].itemSequence ${item.itemSequence} is not an item of the claim (items ${lines.map((l) => l.sequence).join(', ')}).`, [`${path}.itemSequence`]);
      if (seen.has(item.itemSequence)) throw businessRule('invalid', `Claim item ${item.itemSequence} is adjudicated twice.`, [`${path}.itemSequence`]);
      seen.add(item.itemSequence);
      const amount = amountOf(item.adjudication, 'eligible', currency, `${path}.adjudication.amount`) ?? amountOf(item.adjudication, 'benefit', currency, `${path}.adjudication.amount`) ?? 0n;
      const line = lines[index]!;
      if (amount < 0n || amount > line.net) {
        throw businessRule('invalid', `The eligible ${fmt(amount)} of claim item ${line.sequence} must be between 0 and the ${fmt(line.net)} claimed.`, [`${path}.adjudication`]);
      }
      covered[index] = amount;
    });
    return covered;
  }
  const totals = response.total ?? [];
  const total = amountOf(totals, 'eligible', currency, 'ClaimResponse.total.amount') ?? amountOf(totals, 'benefit', currency, 'ClaimResponse.total.amount');
  if (total === undefined) return undefined;
  if (total < 0n || total > claimed) throw businessRule('invalid', `The approved ${fmt(total)} must be between 0 and the ${fmt(claimed)} claimed.`, ['ClaimResponse.total']);
  return allocate(total, lines.map((l) => l.net));
}

/** Σ of one category over adjudicated lines. */
export function sumOf(lines: readonly AdjudicatedLine[], key: Exclude<keyof AdjudicatedLine, 'sequence'>): bigint {
  return lines.reduce((a, l) => a + l[key], 0n);
}

/** Whether an adjudication entry is one of the four the server computes (the insurer's others are kept). */
export function isComputed(concept: CodeableConcept | undefined): boolean {
  return categoryOf(concept) !== undefined;
}

export function adjudicationEntry(category: AdjudicationCategory, amount: bigint, currency: string): ClaimResponseItemAdjudication {
  return { category: { coding: [{ system: ADJUDICATION_SYSTEM, code: category, display: CATEGORY_DISPLAY[category] }] }, amount: money(amount, currency) };
}

const CATEGORY_DISPLAY: Record<AdjudicationCategory, string> = { submitted: 'Submitted Amount', copay: 'CoPay', eligible: 'Eligible Amount', benefit: 'Benefit Amount' };
const CATEGORIES: readonly AdjudicationCategory[] = ['submitted', 'copay', 'eligible', 'benefit'];

/** The four computed adjudication entries of a line (or of the totals), in a fixed order. */
export function adjudicationEntries(line: Omit<AdjudicatedLine, 'sequence'>, currency: string): ClaimResponseItemAdjudication[] {
  return CATEGORIES.map((c) => adjudicationEntry(c, line[c], currency));
}

export function adjudicationTotals(lines: readonly AdjudicatedLine[]): Omit<AdjudicatedLine, 'sequence'> {
  return { submitted: sumOf(lines, 'submitted'), copay: sumOf(lines, 'copay'), eligible: sumOf(lines, 'eligible'), benefit: sumOf(lines, 'benefit') };
}
