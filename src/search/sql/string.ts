import { sql } from 'kysely';
import { normalizeString } from '../values.js';
import { MAX_INDEXED_TEXT } from '../indexer.js';
import { col, likeEscape, type Cond } from './util.js';

/**
 * string: default = case/accent-insensitive "starts with"; `:exact` = exact (as stored, values
 * longer than the index limit are compared on their indexed prefix); `:contains` = anywhere.
 */
export function stringCond(alias: string, valueCol: string, exactCol: string | undefined, v: string, modifier?: string): Cond {
  if (modifier === 'exact' && exactCol) {
    const exact = sql`${col(alias, exactCol)} = ${v.slice(0, MAX_INDEXED_TEXT)}`;
    // A value shorter than the cut was stored whole, so its folded form is known: an index range.
    if (v.length < MAX_INDEXED_TEXT) return sql`(${exact} AND ${col(alias, valueCol)} = ${normalizeString(v)})`;
    return exact;
  }
  const folded = likeEscape(normalizeString(v).slice(0, MAX_INDEXED_TEXT));
  if (modifier === 'contains') return sql`${col(alias, valueCol)} LIKE ${`%${folded}%`}`;
  // `_filter` string `eq` / `ew` (filter-expression.ts): whole folded value / its end; no URL modifier.
  if (modifier === 'filter-eq') return sql`${col(alias, valueCol)} = ${normalizeString(v).slice(0, MAX_INDEXED_TEXT)}`;
  if (modifier === 'filter-ew') return sql`${col(alias, valueCol)} LIKE ${`%${folded}`}`;
  return sql`${col(alias, valueCol)} LIKE ${`${folded}%`}`;
}
