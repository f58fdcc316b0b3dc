import { errors } from '../fhir/errors.js';

/**
 * `_at` on history (R4 http.html#history): "only include resource versions that were current at
 * some point during the time period specified in the date time value", a date searched as in
 * search.html#date — so its precision is its period: `_at=2024-05` means May 2024.
 */

/** Half-open period [start, end) as ISO instants; an open side is undefined. */
export interface HistoryPeriod {
  start?: string;
  end?: string;
}

/** `[prefix]` + a FHIR date or dateTime; a time needs a zone (R4 datatypes.html#dateTime). */
const AT = /^(eq|ge|gt|le|lt)?(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

/** Date.UTC, without its mapping of years 0–99 to 1900–1999. */
function utc(year: number, monthIndex: number, day: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, monthIndex, day);
  return date.getTime();
}

/** The period a value denotes by its precision, in UTC for dates (the server's zone). */
function precisionRange(match: RegExpExecArray, raw: string): { lo: number; hi: number } {
  const [, , y, mo, d, h, mi, s, fraction, zone] = match;
  const year = Number(y);
  const month = mo === undefined ? undefined : Number(mo);
  const day = d === undefined ? undefined : Number(d);
  const invalid = () => errors.incorrect(`_at "${raw.slice(0, 40)}" is not a real date`, ['_at']);
  if (month !== undefined && (month < 1 || month > 12)) throw invalid();
  if (day !== undefined && (day < 1 || day > new Date(utc(year, month!, 0)).getUTCDate())) throw invalid();
  if (h === undefined) {
    const lo = utc(year, (month ?? 1) - 1, day ?? 1);
    const hi = day !== undefined ? utc(year, month! - 1, day + 1) : month !== undefined ? utc(year, month, 1) : utc(year + 1, 0, 1);
    return { lo, hi };
  }
  if (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 59)) throw invalid();
  const lo = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s ?? '00'}${fraction ?? ''}${zone}`);
  if (Number.isNaN(lo)) throw invalid();
  // Milliseconds are the finest step JavaScript dates (and our lastUpdated values) carry.
  const step = s === undefined ? 60_000 : fraction === undefined ? 1000 : Math.max(1, 10 ** (4 - fraction.length));
  return { lo, hi: lo + step };
}

/**
 * The period of every `_at` value, intersected (`_at=ge2024-01&_at=lt2024-07` is the first half
 * of 2024). Undefined when there is none; 400 for anything that is not a date.
 */
export function parseHistoryPeriod(values: readonly string[]): HistoryPeriod | undefined {
  let start = -Infinity;
  let end = Infinity;
  let any = false;
  for (const raw of values) {
    if (raw === '') continue;
    const match = AT.exec(raw);
    if (!match) {
      throw errors.incorrect(`_at must be a date or dateTime with an optional eq, ge, gt, le or lt prefix (such as 2024-05 or ge2024-05-01T10:00:00Z), got "${raw.slice(0, 40)}"`, ['_at']);
    }
    any = true;
    const { lo, hi } = precisionRange(match, raw);
    switch (match[1] ?? 'eq') {
      case 'eq':
        start = Math.max(start, lo);
        end = Math.min(end, hi);
        break;
      case 'ge':
        start = Math.max(start, lo);
        break;
      case 'gt':
        start = Math.max(start, hi);
        break;
      case 'le':
        end = Math.min(end, hi);
        break;
      case 'lt':
        end = Math.min(end, lo);
        break;
    }
  }
  if (!any) return undefined;
  // Instants PostgreSQL takes: beyond years 1–9999 a side is as good as open (or as empty).
  return {
    start: start <= FIRST_INSTANT ? undefined : new Date(Math.min(start, LAST_INSTANT)).toISOString(),
    end: end > LAST_INSTANT ? undefined : new Date(Math.max(end, FIRST_INSTANT)).toISOString(),
  };
}

const FIRST_INSTANT = utc(1, 0, 1);
const LAST_INSTANT = utc(10000, 0, 1) - 1;
