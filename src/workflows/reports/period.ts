import { errors } from '../../fhir/errors.js';
import type { Period } from '../../storage/report-queries.js';

/**
 * The reporting period of every report: `periodStart` and `periodEnd`, whole days
 * (YYYY-MM-DD, UTC), both included. In SQL it is the instant range
 * [periodStart 00:00Z, periodEnd + 1 day 00:00Z).
 */
export interface ReportPeriod extends Period {
  firstDay: string;
  lastDay: string;
  /** Number of days in the period. */
  days: number;
}

const DAY = /^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$/;
/** Ten years: a longer report is a mistake more often than a need, and costs a full scan. */
export const MAX_PERIOD_DAYS = 3660;
const GENERAL = ['_format', '_pretty'];

function day(query: URLSearchParams, name: string): Date {
  const values = query.getAll(name);
  if (values.length !== 1 || !values[0]) throw errors.incorrect(`the report needs exactly one ${name} (YYYY-MM-DD)`, [name]);
  const raw = values[0];
  const m = DAY.exec(raw);
  const date = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
  if (!date || date.getUTCDate() !== Number(m![3])) throw errors.incorrect(`${name} must be a date YYYY-MM-DD, got "${raw.slice(0, 40)}"`, [name]);
  return date;
}

/** Reads the period; any parameter other than `extra` and the general ones is refused (400). */
export function reportPeriod(query: URLSearchParams, extra: readonly string[] = []): ReportPeriod {
  const known = new Set(['periodStart', 'periodEnd', ...GENERAL, ...extra]);
  const unknown = [...query.keys()].find((k) => !known.has(k));
  if (unknown) throw errors.incorrect(`unknown parameter "${unknown.slice(0, 40)}": this report takes ${[...known].filter((k) => !k.startsWith('_')).join(', ')}`, [unknown.slice(0, 40)]);
  const start = day(query, 'periodStart');
  const last = day(query, 'periodEnd');
  if (last < start) throw errors.incorrect('periodEnd is before periodStart', ['periodEnd']);
  const days = Math.round((last.getTime() - start.getTime()) / 86_400_000) + 1;
  if (days > MAX_PERIOD_DAYS) throw errors.incorrect(`the period is limited to ${MAX_PERIOD_DAYS} days`, ['periodEnd']);
  const end = new Date(last.getTime() + 86_400_000);
  return { start: start.toISOString(), end: end.toISOString(), firstDay: start.toISOString().slice(0, 10), lastDay: last.toISOString().slice(0, 10), days };
}

/** An optional single-valued parameter matching `pattern`. */
export function optionalParam(query: URLSearchParams, name: string, pattern: RegExp): string | undefined {
  const values = query.getAll(name);
  if (values.length === 0) return undefined;
  if (values.length > 1 || !pattern.test(values[0]!)) throw errors.incorrect(`${name} is not valid: "${(values[0] ?? '').slice(0, 40)}"`, [name]);
  return values[0];
}
