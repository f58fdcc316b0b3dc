import { sql } from 'kysely';
import type { TokenValue } from '../request.js';
import type { Terminology } from '../terminology.js';
import { normalizeString } from '../values.js';
import { and, col, likeEscape, or, type Cond } from './util.js';

/** `[system|]code` on (system, code) columns; also used by composite components. */
export function tokenCond(alias: string, systemCol: string, codeCol: string, v: TokenValue): Cond {
  const parts: Cond[] = [];
  if (v.code !== undefined) parts.push(sql`${col(alias, codeCol)} = ${v.code}`);
  if (v.system === null) parts.push(sql`${col(alias, systemCol)} IS NULL`);
  else if (v.system !== undefined) parts.push(sql`${col(alias, systemCol)} = ${v.system}`);
  return and(parts);
}

/** `:of-type` — identifier type coding plus value. */
export function ofTypeCond(alias: string, v: TokenValue): Cond {
  return and([
    sql`${col(alias, 'type_system')} = ${v.typeSystem ?? ''}`,
    sql`${col(alias, 'type_code')} = ${v.typeCode ?? ''}`,
    sql`${col(alias, 'code')} = ${v.code ?? ''}`,
  ]);
}

/** `:text` — folded text starts with the value, or has a word starting with it. */
export function textCond(alias: string, text: string, column: 'text' | 'display' = 'text'): Cond {
  const t = likeEscape(normalizeString(text));
  return or([sql`${col(alias, column)} LIKE ${`${t}%`}`, sql`${col(alias, column)} LIKE ${`% ${t}%`}`]);
}

/** `:in` / `:below` / `:above` — membership in a set of (system, code) pairs and whole systems. */
export function codeSetCond(alias: string, set: { pairs: Array<[string, string]>; systems: string[] }): Cond {
  const conds: Cond[] = [];
  if (set.pairs.length) {
    conds.push(
      sql`(${col(alias, 'system')}, ${col(alias, 'code')}) IN (SELECT * FROM unnest(${set.pairs.map((p) => p[0])}::text[], ${set.pairs.map((p) => p[1])}::text[]))`,
    );
  }
  if (set.systems.length) conds.push(sql`${col(alias, 'system')} = ANY(${set.systems}::text[])`);
  return or(conds);
}

export function hierarchyCond(alias: string, terminology: Terminology, v: TokenValue, direction: 'above' | 'below'): Cond {
  if (v.code === undefined) return tokenCond(alias, 'system', 'code', v);
  const codes = terminology.related(v.system ?? undefined, v.code, direction);
  if (!codes) return tokenCond(alias, 'system', 'code', v);
  return codeSetCond(alias, { pairs: codes, systems: [] });
}
