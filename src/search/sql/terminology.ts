import { sql } from 'kysely';
import type { TokenValue } from '../request.js';
import { tokenCond } from './token.js';
import { col, type Cond } from './util.js';

/**
 * Token `:in` / `:not-in` / `:below` / `:above` against the terminology tables
 * (migrations/0019-terminology.ts), inside the search statement: a semi-join on the value
 * set's expansion or the code system's closure, never a list of codes sent from here.
 * The expansion must exist before the statement runs (`SearchTerminology.prepare`).
 */

/** Canonical URL without `|version` (one version of each value set is held). */
export function canonicalOnly(url: string): string {
  const bar = url.indexOf('|');
  return bar < 0 ? url : url.slice(0, bar);
}

/**
 * Index row `a` has a coding in the value set (a member with code '' is a whole code system).
 * A row without a system (a `code` element, whose system is implied by its binding) matches by code.
 */
export function valueSetMemberCond(alias: string, url: string): Cond {
  const system = col(alias, 'system');
  const code = col(alias, 'code');
  const vs = canonicalOnly(url);
  // Two index probes (primary key; (value_set, code)) rather than one condition no index serves.
  return sql`(EXISTS (SELECT 1 FROM terminology_vs_member tvm WHERE tvm.value_set = ${vs} AND tvm.system = ${system} AND tvm.code IN (${code}, ''))
    OR (${system} IS NULL AND EXISTS (SELECT 1 FROM terminology_vs_member tvm WHERE tvm.value_set = ${vs} AND tvm.code = ${code})))`;
}

/**
 * `:below` (the code and what it subsumes) / `:above` (the code and what subsumes it) through
 * the closure table. Without a system, the code in any code system holding it. A code the server
 * does not know matches itself only (as a plain token would).
 */
export function closureCond(alias: string, v: TokenValue, direction: 'above' | 'below'): Cond {
  if (v.code === undefined || v.system === null) return tokenCond(alias, 'system', 'code', v);
  const [from, to] = direction === 'below' ? ['ancestor', 'descendant'] : ['descendant', 'ancestor'];
  const code = col(alias, 'code');
  if (v.system !== undefined) {
    return sql`(${col(alias, 'system')} = ${v.system} AND (${code} = ${v.code} OR ${code} IN (SELECT ${sql.raw(`tcl.${to}`)} FROM terminology_closure tcl WHERE tcl.system = ${v.system} AND ${sql.raw(`tcl.${from}`)} = ${v.code})))`;
  }
  return sql`(${code} = ${v.code} OR (${col(alias, 'system')}, ${code}) IN (SELECT tcl.system, ${sql.raw(`tcl.${to}`)} FROM terminology_closure tcl WHERE ${sql.raw(`tcl.${from}`)} = ${v.code}))`;
}
