import { sql } from 'kysely';
import { arrayCompilable } from '../parse.js';
import type { ParamValue } from '../request.js';
import { and, col, or, type Cond } from './util.js';

/**
 * The OR of a parameter's values (`code=a,b,c`) on one index row (alias `alias`). Values that
 * differ only in one column are grouped into ONE array parameter — `code = ANY($1)` per token
 * system, `target_id = ANY($1)` per reference type, `value = ANY($1)` for uris — so a list of
 * 1,000 codes is one index condition (an index-only scan over the sorted array) instead of an
 * OR chain the planner turns into a BitmapOr of 1,000 scans (and that must be planned first).
 * Other values (prefixes, ranges, `:of-type`, versions, …) stay one condition each (`one`).
 */
export function orValues(alias: string, values: readonly ParamValue[], modifier: string | undefined, one: (v: ParamValue) => Cond): Cond {
  const conds: Cond[] = [];
  // token codes by system: undefined = any system, null = no system (`|code`)
  const codesBySystem = new Map<string | null | undefined, string[]>();
  // reference ids by target type (undefined: any type)
  const idsByType = new Map<string | undefined, string[]>();
  const uris: string[] = [];
  const typeModifier = modifier && /^[A-Z]/.test(modifier) ? modifier : undefined;
  for (const v of values) {
    if (!arrayCompilable(v, modifier)) {
      conds.push(one(v));
      continue;
    }
    if (v.kind === 'token') push(codesBySystem, v.v.system, v.v.code!);
    else if (v.kind === 'reference') push(idsByType, v.v.type ?? typeModifier, v.v.id!);
    else if (v.kind === 'uri') uris.push(v.v);
  }
  for (const [system, codes] of codesBySystem) {
    const sys = system === undefined ? undefined : system === null ? sql`${col(alias, 'system')} IS NULL` : sql`${col(alias, 'system')} = ${system}`;
    conds.push(and([anyOf(col(alias, 'code'), codes), ...(sys ? [sys] : [])]));
  }
  for (const [type, ids] of idsByType) {
    conds.push(and([anyOf(col(alias, 'target_id'), ids), ...(type ? [sql`${col(alias, 'target_type')} = ${type}`] : [])]));
  }
  if (uris.length) conds.push(anyOf(col(alias, 'value'), uris));
  return or(conds);
}

function push<K>(m: Map<K, string[]>, key: K, value: string): void {
  const list = m.get(key);
  if (list) list.push(value);
  else m.set(key, [value]);
}

/** `c = v` for one value (best estimated), `c = ANY($1::text[])` for several. */
function anyOf(c: Cond, values: string[]): Cond {
  const distinct = [...new Set(values)];
  return distinct.length === 1 ? sql`${c} = ${distinct[0]!}` : sql`${c} = ANY(${distinct}::text[])`;
}

/**
 * Lists at least this long, when they are the whole filter and one group (all codes of one
 * system, all ids of one reference type, all exact uris), are read as a nested loop: one
 * index-only descent per value. The planner cannot estimate `code = ANY(<1,000 codes>)` (it
 * assumes every code exists: 1,000 codes of 200 distinct values estimated at half the table)
 * and then seq-scans the index table; the per-value selectivity estimation also took 20–60 ms
 * of planning for 1,000 values.
 */
export const LATERAL_LIST_MIN = 64;

export interface ListGroup {
  /** the column the values are compared with */
  column: 'code' | 'target_id' | 'value';
  values: string[];
  /** the other fixed column of the group (token system, reference target type) */
  fixed?: { column: 'system' | 'target_type'; value: string | null };
}

/** The filter's values as ONE long list group, or undefined (see LATERAL_LIST_MIN). */
export function longListGroup(values: readonly ParamValue[], modifier: string | undefined): ListGroup | undefined {
  if (values.length < LATERAL_LIST_MIN || modifier === 'not') return undefined;
  if (!values.every((v) => arrayCompilable(v, modifier))) return undefined;
  const first = values[0]!;
  const typeModifier = modifier && /^[A-Z]/.test(modifier) ? modifier : undefined;
  if (first.kind === 'token') {
    const system = first.v.system;
    if (!values.every((v) => v.kind === 'token' && v.v.system === system)) return undefined;
    const codes = [...new Set(values.map((v) => (v.kind === 'token' ? v.v.code! : '')))];
    return { column: 'code', values: codes, ...(system !== undefined ? { fixed: { column: 'system', value: system } } : {}) };
  }
  if (first.kind === 'reference') {
    const type = first.v.type ?? typeModifier;
    if (!values.every((v) => v.kind === 'reference' && (v.v.type ?? typeModifier) === type)) return undefined;
    const ids = [...new Set(values.map((v) => (v.kind === 'reference' ? v.v.id! : '')))];
    return { column: 'target_id', values: ids, ...(type !== undefined ? { fixed: { column: 'target_type', value: type } } : {}) };
  }
  if (first.kind === 'uri') return { column: 'value', values: [...new Set(values.map((v) => (v.kind === 'uri' ? v.v : '')))] };
  return undefined;
}

/**
 * `unnest($values) CROSS JOIN LATERAL (SELECT … FROM <table> a WHERE <where> AND a.<column> =
 * value OFFSET 0) a`: the rows of `table` matching the group, one index descent per value
 * (OFFSET 0 keeps the subquery from being flattened into a join the planner could turn around).
 * `where` holds the conditions on `a` other than the group (type, param).
 */
export function lateralListFrom(table: string, alias: string, group: ListGroup, where: Cond, columns: string[]): Cond {
  const l = `${alias}l`;
  const fixed = group.fixed
    ? group.fixed.value === null
      ? sql`${col(alias, group.fixed.column)} IS NULL`
      : sql`${col(alias, group.fixed.column)} = ${group.fixed.value}`
    : sql`TRUE`;
  return sql`unnest(${group.values}::text[]) AS ${sql.raw(l)}(v) CROSS JOIN LATERAL (SELECT ${sql.join(columns.map((c) => col(alias, c)))}
    FROM ${sql.raw(table)} ${sql.raw(alias)} WHERE ${where} AND ${col(alias, group.column)} = ${sql.raw(`${l}.v`)} AND ${fixed} OFFSET 0) ${sql.raw(alias)}`;
}
