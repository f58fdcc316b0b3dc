import { sql } from 'kysely';
import type { ReferenceValue } from '../request.js';
import { and, col, type Cond } from './util.js';

/** reference: `Type/id[/_history/v]`, bare `id`, absolute/canonical url[|version], `:identifier`. */
export function referenceCond(alias: string, v: ReferenceValue, typeModifier?: string): Cond {
  const parts: Cond[] = [];
  if (v.identValue !== undefined || v.identSystem !== undefined) {
    if (v.identSystem === null) parts.push(sql`${col(alias, 'ident_system')} IS NULL`);
    else if (v.identSystem !== undefined) parts.push(sql`${col(alias, 'ident_system')} = ${v.identSystem}`);
    if (v.identValue !== undefined) parts.push(sql`${col(alias, 'ident_value')} = ${v.identValue}`);
    else parts.push(sql`${col(alias, 'ident_value')} IS NOT NULL`);
    return and(parts);
  }
  if (v.url !== undefined) {
    parts.push(sql`${col(alias, 'url')} = ${v.url}`);
    if (v.version !== undefined) parts.push(sql`${col(alias, 'target_version')} = ${v.version}`);
    return and(parts);
  }
  parts.push(sql`${col(alias, 'target_id')} = ${v.id ?? ''}`);
  const type = v.type ?? typeModifier;
  if (type) parts.push(sql`${col(alias, 'target_type')} = ${type}`);
  if (v.version !== undefined) parts.push(sql`${col(alias, 'target_version')} = ${v.version}`);
  return and(parts);
}
