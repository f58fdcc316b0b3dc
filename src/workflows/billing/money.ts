import type { Money } from 'fhir/r4.js';
import { businessRule } from '../scheduling-rules.js';

/**
 * Money as whole minor units (bigint): a VND amount in đồng, a USD amount in cents. FHIR JSON
 * carries decimals as JSON numbers; they are turned into minor units through their shortest
 * decimal text (`String(value)`), never through floating-point arithmetic, so 0.1 + 0.2 is 30
 * cents exactly. Rates (tax, discount percentages) are decimal texts too, applied as exact
 * fractions and rounded once per line, half away from zero.
 */

/** ISO 4217 minor-unit exponents that are not 2. */
const EXPONENTS: Record<string, number> = { VND: 0, JPY: 0, KRW: 0, CLP: 0, ISK: 0, UGX: 0, XAF: 0, XOF: 0, BHD: 3, KWD: 3, OMR: 3, JOD: 3, TND: 3 };

export function exponentOf(currency: string): number {
  return EXPONENTS[currency] ?? 2;
}

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/** An exact fraction from a decimal text or JSON number: numerator / 10^scale. */
export interface Decimal {
  units: bigint;
  scale: number;
}

export function parseDecimal(value: number | string): Decimal | undefined {
  const text = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : '') : value.trim();
  const match = DECIMAL.exec(text);
  if (!match) return undefined;
  const fraction = match[3] ?? '';
  const units = BigInt(`${match[2]}${fraction}`);
  return { units: match[1] ? -units : units, scale: fraction.length };
}

/** Minor units of a decimal amount; undefined when it has more decimals than the currency has. */
export function toMinor(value: number | string, currency: string): bigint | undefined {
  const d = parseDecimal(value);
  if (!d) return undefined;
  const exp = exponentOf(currency);
  if (d.scale > exp) {
    const extra = 10n ** BigInt(d.scale - exp);
    if (d.units % extra !== 0n) return undefined;
    return d.units / extra;
  }
  return d.units * 10n ** BigInt(exp - d.scale);
}

/** The decimal text of minor units ("1250000", "12.30"). */
export function minorToText(minor: bigint, currency: string): string {
  const exp = exponentOf(currency);
  if (exp === 0) return minor.toString();
  const negative = minor < 0n;
  const digits = (negative ? -minor : minor).toString().padStart(exp + 1, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -exp)}.${digits.slice(-exp)}`;
}

/** FHIR Money of minor units (a JSON number; exact for any amount below 2^53 minor units). */
export function money(minor: bigint, currency: string): Money {
  return { value: Number(minorToText(minor, currency)), currency };
}

/** Minor units of a FHIR Money in `currency`; a 422 naming `path` when it is missing, foreign or too precise. */
export function minorOf(value: Money | undefined, currency: string, path: string): bigint {
  if (value?.value === undefined) throw businessRule('invalid', `${path} is required.`, [path]);
  if (value.currency !== undefined && value.currency !== currency) throw businessRule('invalid', `${path} must be in ${currency}, not ${value.currency}.`, [path]);
  const minor = toMinor(value.value, currency);
  if (minor === undefined) throw businessRule('invalid', `${path} has more decimals than ${currency} allows.`, [path]);
  return minor;
}

/** Division rounded half away from zero. */
export function divRound(numerator: bigint, denominator: bigint): bigint {
  const negative = numerator < 0n !== denominator < 0n;
  const n = numerator < 0n ? -numerator : numerator;
  const d = denominator < 0n ? -denominator : denominator;
  const q = (2n * n + d) / (2n * d);
  return negative ? -q : q;
}

/** amount × rate, rounded half away from zero to minor units. */
export function applyRate(amount: bigint, rate: Decimal): bigint {
  return divRound(amount * rate.units, 10n ** BigInt(rate.scale));
}

/** Human text: "1,250,000 VND", "12.30 USD". */
export function formatMoney(minor: bigint, currency: string): string {
  const [whole, fraction] = minorToText(minor, currency).split('.');
  const sign = whole!.startsWith('-') ? '-' : '';
  const grouped = whole!.replace('-', '').replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}${grouped}${fraction ? `.${fraction}` : ''} ${currency}`;
}

/**
 * `total` split over `weights` in proportion, summing to exactly `total` (largest remainder):
 * an invoice-level discount spread over its lines.
 */
export function allocate(total: bigint, weights: readonly bigint[]): bigint[] {
  const sum = weights.reduce((a, b) => a + b, 0n);
  if (sum === 0n) return weights.map(() => 0n);
  const shares = weights.map((w) => (total * w) / sum);
  let rest = total - shares.reduce((a, b) => a + b, 0n);
  const order = weights.map((w, i) => ({ i, r: (total * w) % sum })).sort((a, b) => (b.r > a.r ? 1 : b.r < a.r ? -1 : a.i - b.i));
  for (const { i } of order) {
    if (rest === 0n) break;
    shares[i]! += 1n;
    rest -= 1n;
  }
  return shares;
}
