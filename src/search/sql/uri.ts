import { sql } from 'kysely';
import { col, likeEscape, type Cond } from './util.js';

/** uri: exact; `:below` = stored value starts with the search value; `:above` = the reverse. */
export function uriCond(alias: string, valueCol: string, v: string, modifier?: string): Cond {
  const c = col(alias, valueCol);
  if (modifier === 'below') return sql`${c} LIKE ${`${likeEscape(v)}%`}`;
  if (modifier === 'above') return sql`(length(${c}) <= ${v.length} AND ${c} = left(${v}, length(${c})))`;
  return sql`${c} = ${v}`;
}
