import { sql } from 'kysely';
import type { DateValue } from '../request.js';
import { and, col, or, type Cond } from './util.js';

const DAY = 86_400_000;

/** `high - low` of a `search_date` row, NULL when a bound is infinite (see migration 0002 `search_date_span`). */
const SPAN = (a: string) => sql`(CASE WHEN isfinite(${col(a, 'low')}) AND isfinite(${col(a, 'high')}) THEN ${col(a, 'high')} - ${col(a, 'low')} END)`;
const LONG = (a: string) => sql`(CASE WHEN isfinite(${col(a, 'low')}) AND isfinite(${col(a, 'high')}) THEN ${col(a, 'high')} - ${col(a, 'low')} > interval '24 hours' ELSE true END)`;

/**
 * The widest [low, high) of a param's `search_date` rows: lets a condition on one column bound
 * the other (a row with `high > X` has `low > X - widest`), so `_sort` walks and ranges on the
 * other index start where the matches start instead of at the index's beginning. Rows up to 24 h
 * wide (instants, dates) are not in the partial index `search_date_span`; the widest of the rest
 * is one backward index step (an InitPlan, run once per statement). Open or very wide rows make
 * the bound ±infinity (correct, just no help).
 */
export interface RowWidth {
  type: string;
  param: string;
}

function widest(w: RowWidth, bound: Cond, dir: 'floor' | 'ceil'): Cond {
  const [op, inf] = dir === 'floor' ? [sql.raw('-'), sql.raw(`'-infinity'`)] : [sql.raw('+'), sql.raw(`'infinity'`)];
  return sql`coalesce((SELECT CASE WHEN x.s IS NULL OR x.s > interval '1000 years' THEN ${inf}::timestamptz
      ELSE ${bound} ${op} make_interval(secs => extract(epoch from x.s)) END
    FROM (SELECT ${SPAN('w')} AS s FROM search_date w WHERE w.resource_type = ${w.type} AND w.param = ${w.param} AND ${LONG('w')}
      ORDER BY 1 DESC NULLS FIRST LIMIT 1) x), ${bound} ${op} interval '24 hours')`;
}

/**
 * Range semantics of https://hl7.org/fhir/R4/search.html#prefix: the search value is the range
 * [sl, sh) implied by its precision, the stored value the range [low, high).
 * `width`: the (type, param) of `search_date` rows, for implied bounds (see `widest`).
 */
export function dateCond(alias: string, lowCol: string, highCol: string, v: DateValue, now = Date.now(), width?: RowWidth): Cond {
  const low = col(alias, lowCol);
  const high = col(alias, highCol);
  const sl = sql`${v.low}::timestamptz`;
  const sh = sql`${v.high}::timestamptz`;
  if (lowCol === highCol) return pointCond(low, sl, sh, v, now);
  // Redundant bounds (implied, as low <= high) give the planner index ranges on both columns.
  const lowAbove = (x: Cond) => (width ? [sql`${low} >= ${widest(width, x, 'floor')}`] : []);
  const highBelow = (x: Cond) => (width ? [sql`${high} <= ${widest(width, x, 'ceil')}`] : []);
  const contained = and([sql`${low} >= ${sl}`, sql`${low} < ${sh}`, sql`${high} <= ${sh}`]);
  switch (v.prefix) {
    case 'eq':
      return and([contained, sql`${high} >= ${sl}`]);
    case 'ne':
      return sql`NOT ${contained}`;
    case 'gt':
      return and([sql`${high} > ${sh}`, ...lowAbove(sh)]);
    case 'lt':
      return and([sql`${low} < ${sl}`, ...highBelow(sl)]);
    case 'ge':
      return and([sql`${high} > ${sl}`, or([sql`${high} > ${sh}`, contained]), ...lowAbove(sl)]);
    case 'le':
      return and([sql`${low} < ${sh}`, or([sql`${low} < ${sl}`, contained]), ...highBelow(sh)]);
    case 'sa':
      return and([sql`${low} >= ${sh}`, sql`${high} >= ${sh}`]);
    case 'eb':
      return and([sql`${high} <= ${sl}`, sql`${low} < ${sl}`]);
    case 'ap': {
      // within 10% of the distance between the value and now (at least a day) either side
      const l = Date.parse(v.low);
      const h = v.high === 'infinity' ? l + DAY : Date.parse(v.high);
      const delta = Math.max(DAY, Math.abs(now - l) * 0.1);
      const wl = sql`${new Date(Math.max(l - delta, -62135596800000)).toISOString()}::timestamptz`;
      const wh = sql`${new Date(Math.min(h + delta, 253402300799000)).toISOString()}::timestamptz`;
      return and([sql`${low} < ${wh}`, sql`${high} > ${wl}`, ...lowAbove(wl), ...highBelow(wh)]);
    }
  }
}

/** A stored instant (e.g. `resource.last_updated`): every comparison is on the one column. */
function pointCond(t: Cond, sl: Cond, sh: Cond, v: DateValue, now: number): Cond {
  switch (v.prefix) {
    case 'eq':
      return and([sql`${t} >= ${sl}`, sql`${t} < ${sh}`]);
    case 'ne':
      return or([sql`${t} < ${sl}`, sql`${t} >= ${sh}`]);
    case 'gt':
    case 'sa':
      return sql`${t} >= ${sh}`;
    case 'lt':
    case 'eb':
      return sql`${t} < ${sl}`;
    case 'ge':
      return sql`${t} >= ${sl}`;
    case 'le':
      return sql`${t} < ${sh}`;
    case 'ap': {
      const l = Date.parse(v.low);
      const h = v.high === 'infinity' ? l + DAY : Date.parse(v.high);
      const delta = Math.max(DAY, Math.abs(now - l) * 0.1);
      return and([sql`${t} >= ${new Date(l - delta).toISOString()}::timestamptz`, sql`${t} < ${new Date(h + delta).toISOString()}::timestamptz`]);
    }
  }
}
