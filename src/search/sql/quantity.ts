import { sql } from 'kysely';
import type { QuantityValue } from '../request.js';
import { numberCond } from './number.js';
import { and, col, or, type Cond } from './util.js';

/**
 * quantity: `value` (any unit), `value|system|code`, `value||code` (code or unit). Convertible
 * UCUM units compare on the canonical columns, so `5|…|mg` finds `0.005 g`.
 */
export function quantityCond(alias: string, v: QuantityValue): Cond {
  if (v.canon) {
    return and([
      sql`${col(alias, 'canon_code')} = ${v.canon.code}`,
      numberCond(alias, 'canon_low', 'canon_high', { prefix: v.prefix, value: v.canon.value, low: v.canon.low, high: v.canon.high }),
    ]);
  }
  const unit: Cond[] = [];
  if (v.system !== undefined) unit.push(sql`${col(alias, 'system')} = ${v.system}`);
  if (v.code !== undefined) {
    unit.push(v.system !== undefined ? sql`${col(alias, 'code')} = ${v.code}` : or([sql`${col(alias, 'code')} = ${v.code}`, sql`${col(alias, 'unit')} = ${v.code}`]));
  }
  return and([...unit, numberCond(alias, 'low', 'high', v)]);
}
