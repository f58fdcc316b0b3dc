import { sql } from 'kysely';
import type { NumberValue } from '../request.js';
import { and, col, type Cond } from './util.js';

/**
 * number / quantity value comparison on (low, high) columns (a point stores low = high; a
 * Range may leave one side NULL = open). `eq` uses the implicit precision of the search value
 * (`100` = [99.5, 100.5)); the other prefixes compare with the exact value.
 */
export function numberCond(alias: string, lowCol: string, highCol: string, v: Pick<NumberValue, 'prefix' | 'value' | 'low' | 'high'>): Cond {
  // Open Range ends are stored as ±Infinity, so no NULL handling is needed.
  const low = col(alias, lowCol);
  const high = col(alias, highCol);
  const val = sql`${v.value}::numeric`;
  // `low < high bound` is implied by `high < bound` but gives the planner an index range on low.
  const inRange = and([sql`${low} >= ${v.low}::numeric`, sql`${low} < ${v.high}::numeric`, sql`${high} < ${v.high}::numeric`]);
  switch (v.prefix) {
    case 'eq':
      return inRange;
    case 'ne':
      return sql`NOT COALESCE(${inRange}, FALSE)`;
    case 'gt':
      return sql`${high} > ${val}`;
    case 'lt':
      return sql`${low} < ${val}`;
    case 'ge':
      return sql`${high} >= ${val}`;
    case 'le':
      return sql`${low} <= ${val}`;
    case 'sa':
      return sql`${low} > ${val}`;
    case 'eb':
      return sql`${high} < ${val}`;
    case 'ap':
      // ±10% of the value
      return and([sql`${low} >= ${val} - abs(${val}) * 0.1`, sql`${high} <= ${val} + abs(${val}) * 0.1`]);
  }
}
