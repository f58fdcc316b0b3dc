import { sql } from 'kysely';
import type { DateValue } from '../request.js';
import { and, col, or, type Cond } from './util.js';

const DAY = 86_400_000;

/**
 * Range semantics of https://hl7.org/fhir/R4/search.html#prefix: the search value is the range
 * [sl, sh) implied by its precision, the stored value the range [low, high).
 */
export function dateCond(alias: string, lowCol: string, highCol: string, v: DateValue, now = Date.now()): Cond {
  const low = col(alias, lowCol);
  const high = col(alias, highCol);
  const sl = sql`${v.low}::timestamptz`;
  const sh = sql`${v.high}::timestamptz`;
  if (lowCol === highCol) return pointCond(low, sl, sh, v, now);
  // `low < sh` / `high > sl` below are implied but give the planner an index range.
  const contained = and([sql`${low} >= ${sl}`, sql`${low} < ${sh}`, sql`${high} <= ${sh}`]);
  switch (v.prefix) {
    case 'eq':
      return contained;
    case 'ne':
      return sql`NOT ${contained}`;
    case 'gt':
      return sql`${high} > ${sh}`;
    case 'lt':
      return sql`${low} < ${sl}`;
    case 'ge':
      return and([sql`${high} > ${sl}`, or([sql`${high} > ${sh}`, contained])]);
    case 'le':
      return and([sql`${low} < ${sh}`, or([sql`${low} < ${sl}`, contained])]);
    case 'sa':
      return sql`${low} >= ${sh}`;
    case 'eb':
      return sql`${high} <= ${sl}`;
    case 'ap': {
      // within 10% of the distance between the value and now (at least a day) either side
      const l = Date.parse(v.low);
      const h = v.high === 'infinity' ? l + DAY : Date.parse(v.high);
      const delta = Math.max(DAY, Math.abs(now - l) * 0.1);
      const wl = new Date(Math.max(l - delta, -62135596800000)).toISOString();
      const wh = new Date(Math.min(h + delta, 253402300799000)).toISOString();
      return and([sql`${low} < ${wh}::timestamptz`, sql`${high} > ${wl}::timestamptz`]);
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
