/**
 * Value normalisation shared by indexing (write time) and searching (query time), so both
 * sides always agree: string folding, date ranges, decimal precision ranges.
 */

/** Case- and accent-insensitive form used by string search: NFD, strip marks, lower-case. */
export function normalizeString(s: string): string {
  // Fast path: plain ASCII needs no decomposition.
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(s)) return s.toLowerCase();
  return s
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .normalize('NFC');
}

// ---------------------------------------------------------------- dates

export const MIN_TS = '-infinity';
export const MAX_TS = 'infinity';

/** A date range [low, high) as ISO strings (or ±infinity); high is exclusive. */
export interface DateRange {
  low: string;
  high: string;
}

const dateRe =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

function utc(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number {
  const dt = new Date(0);
  dt.setUTCFullYear(y, mo, d);
  dt.setUTCHours(h, mi, s, ms);
  return dt.getTime();
}

const maxMs = utc(9999, 11, 31, 23, 59, 59, 999);

function iso(ms: number): string {
  if (ms > maxMs) return MAX_TS;
  return new Date(ms).toISOString();
}

/**
 * Parses a FHIR date / dateTime / instant (or a search value of the same shape) into the range
 * it covers, respecting its precision: `2020` → [2020-01-01, 2021-01-01).
 *
 * Rule for values without a time zone (partial dates and zone-less times): they are read as
 * UTC. The same rule applies to stored values and to search values, so they compare
 * consistently; a hospital in another zone should send offsets (Synthea and most systems do).
 * Returns null when the string is not a valid date.
 */
export function parseDateRange(s: string): DateRange | null {
  const m = dateRe.exec(s);
  if (!m) return null;
  const y = Number(m[1]);
  const mo = m[2] ? Number(m[2]) - 1 : 0;
  const d = m[3] ? Number(m[3]) : 1;
  const h = m[4] ? Number(m[4]) : 0;
  const mi = m[5] ? Number(m[5]) : 0;
  const sec = m[6] ? Number(m[6]) : 0;
  const frac = m[7] ?? '';
  if (mo > 11 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return null;
  if (m[3]) {
    const check = new Date(utc(y, mo, d, 0, 0, 0, 0));
    if (check.getUTCDate() !== d) return null; // 2021-02-30
  }
  if (m[4] && !m[5]) return null;
  const ms = frac ? Number(frac.slice(0, 3).padEnd(3, '0')) : 0;
  let offsetMin = 0;
  const tz = m[8];
  if (tz && tz !== 'Z') {
    const sign = tz[0] === '-' ? -1 : 1;
    const oh = Number(tz.slice(1, 3));
    const om = Number(tz.slice(4, 6));
    if (oh > 14 || om > 59) return null;
    offsetMin = sign * (oh * 60 + om);
  }
  const start = utc(y, mo, d, h, mi, Math.min(sec, 59), ms) - offsetMin * 60_000;
  let end: number;
  if (!m[2]) end = utc(y + 1, 0, 1, 0, 0, 0, 0);
  else if (!m[3]) end = utc(y, mo + 1, 1, 0, 0, 0, 0);
  else if (!m[4]) end = utc(y, mo, d + 1, 0, 0, 0, 0);
  else if (!m[6]) end = start + 60_000;
  else if (!frac) end = start + 1000;
  else end = start + Math.max(1, 10 ** (3 - Math.min(frac.length, 3)));
  return { low: iso(start), high: iso(end) };
}

// ---------------------------------------------------------------- decimals

/** An exact decimal: value = mantissa × 10^-scale. */
export interface Decimal {
  mantissa: bigint;
  scale: number;
}

const decimalRe = /^([+-]?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d{1,4}))?$/;

export function parseDecimal(s: string): Decimal | null {
  if (s.length > 64) return null;
  const m = decimalRe.exec(s);
  if (!m) return null;
  const digits = m[2]! + (m[3] ?? '');
  let scale = (m[3] ?? '').length - (m[4] ? Number(m[4]) : 0);
  let mantissa = BigInt(digits) * (m[1] === '-' ? -1n : 1n);
  if (scale < -64 || scale > 64) return null;
  if (scale < 0 && mantissa === 0n) scale = 0;
  return { mantissa, scale };
}

export function decimalToString(d: Decimal): string {
  if (d.scale <= 0) return (d.mantissa * 10n ** BigInt(-d.scale)).toString();
  const neg = d.mantissa < 0n;
  const abs = (neg ? -d.mantissa : d.mantissa).toString().padStart(d.scale + 1, '0');
  const s = `${abs.slice(0, abs.length - d.scale)}.${abs.slice(abs.length - d.scale)}`;
  return neg ? `-${s}` : s;
}

/** The implicit precision range of a decimal: `100` → [99.5, 100.5), `1.50` → [1.495, 1.505). */
export function precisionRange(d: Decimal): { low: string; high: string } {
  const m10 = d.mantissa * 10n;
  return {
    low: decimalToString({ mantissa: m10 - 5n, scale: d.scale + 1 }),
    high: decimalToString({ mantissa: m10 + 5n, scale: d.scale + 1 }),
  };
}

/** JSON numbers → exact decimal string (JSON.parse already lost nothing for sane values). */
export function numberToString(n: number): string | null {
  if (!Number.isFinite(n)) return null;
  const s = String(n);
  if (!s.includes('e')) return s;
  const d = parseDecimal(s);
  return d ? decimalToString(d) : null;
}
