import { sql } from 'kysely';
import { errors } from '../../fhir/errors.js';
import { DATE, NUMBER, QUANTITY, REFERENCE, STRING, TOKEN, URI } from '../index-tables.js';
import type { SortKey } from '../request.js';
import { and, col, FALSE, or, type Cond } from './util.js';

/** One ORDER BY key: its SQL expression, the type to cast cursor values to, its direction. */
export interface OrderKey {
  expr: Cond;
  type: 'text' | 'timestamptz' | 'numeric';
  desc: boolean;
  /** never NULL: ORDER BY may then use the plain btree order (no NULLS clause). */
  notNull?: boolean;
  /** the key is the constant NULL (segment of rows without a value) */
  constNull?: boolean;
}

export interface SortPlan {
  joins: Cond[];
  /** table of the first key's sort row (alias `o0`), when it is a search parameter */
  firstTable?: string;
  keys: OrderKey[];
  /**
   * When the first key is a search parameter, the page is read in two segments so the first
   * can be driven by the sort index: rows HAVING a value (`firstJoin` = inner join) and, only if
   * that segment does not fill the page, rows WITHOUT one (`firstMissing`, key = NULL).
   */
  split?: { firstJoin: Cond; firstMissing: Cond; restJoins: Cond[]; nullKeys: OrderKey[]; valueKeys: OrderKey[] };
}

/**
 * Tables with a `<table>_multi` partial index on the rows of resources that have more than one
 * row for a param (`NOT (sort_asc AND sort_desc)`: a lone row carries both flags, and of two or
 * more rows at least one lacks one). See `sortRowFilter` in search-service.ts.
 */
export const MULTI_ROW_INDEXED = new Set([DATE, STRING]);

/** `valueNotNull`: the sort column is never NULL on an index row (token code and reference can be). */
const sortColumn: Record<string, { table: string; asc: string; desc: string; type: OrderKey['type']; valueNotNull: boolean }> = {
  token: { table: TOKEN, asc: 'code', desc: 'code', type: 'text', valueNotNull: false },
  string: { table: STRING, asc: 'value', desc: 'value', type: 'text', valueNotNull: true },
  date: { table: DATE, asc: 'low', desc: 'high', type: 'timestamptz', valueNotNull: true },
  number: { table: NUMBER, asc: 'low', desc: 'high', type: 'numeric', valueNotNull: true },
  quantity: { table: QUANTITY, asc: 'low', desc: 'high', type: 'numeric', valueNotNull: true },
  uri: { table: URI, asc: 'value', desc: 'value', type: 'text', valueNotNull: true },
  reference: { table: REFERENCE, asc: '', desc: '', type: 'text', valueNotNull: false },
};

/**
 * `_sort` keys → LEFT JOINs on the ONE index row flagged as the sort row of each (resource,
 * param) (`sort_asc` / `sort_desc`, set at index time), plus the tiebreakers
 * (resource_type, id) that make the order total — required for keyset paging.
 * `valueGuaranteed`: params every match has a row of (a positive filter on them).
 */
export function sortPlan(sort: SortKey[], r: string, valueGuaranteed: ReadonlySet<string> = new Set()): SortPlan {
  const joins: Cond[] = [];
  const keys: OrderKey[] = [];
  let first: { firstJoin: Cond; firstMissing: Cond; valueNotNull: boolean } | undefined;
  sort.forEach((s, i) => {
    if ('special' in s.param) {
      keys.push(s.param.code === '_id' ? { expr: col(r, 'id'), type: 'text', desc: s.desc } : { expr: col(r, 'last_updated'), type: 'timestamptz', desc: s.desc });
      return;
    }
    const spec = sortColumn[s.param.type];
    if (!spec) throw errors.incorrect(`Cannot sort on ${s.param.type} parameter '${s.name}'`, ['_sort']);
    const a = `o${i}`;
    const on = sql`${col(a, 'resource_type')} = ${col(r, 'resource_type')} AND ${col(a, 'resource_id')} = ${col(r, 'id')} AND ${col(a, 'param')} = ${s.param.code} AND ${col(a, s.desc ? 'sort_desc' : 'sort_asc')}`;
    joins.push(sql`LEFT JOIN ${sql.raw(spec.table)} ${sql.raw(a)} ON ${on}`);
    if (i === 0) {
      first = {
        firstJoin: sql`JOIN ${sql.raw(spec.table)} ${sql.raw(a)} ON ${on}`,
        firstMissing: sql`NOT EXISTS (SELECT 1 FROM ${sql.raw(spec.table)} ${sql.raw(a)} WHERE ${on})`,
        valueNotNull: spec.valueNotNull,
      };
    }
    const expr =
      s.param.type === 'reference'
        ? sql`COALESCE(${col(a, 'target_type')} || '/' || ${col(a, 'target_id')}, ${col(a, 'url')})`
        : col(a, s.desc ? spec.desc : spec.asc);
    keys.push({ expr, type: spec.type, desc: s.desc });
  });
  keys.push({ expr: col(r, 'resource_type'), type: 'text', desc: false, notNull: true });
  keys.push({ expr: col(r, 'id'), type: 'text', desc: false, notNull: true });
  if (!first) return { joins, keys };
  // A positive filter on the first sort parameter means every match has a value: one segment.
  const p0 = sort[0]!.param;
  if (!('special' in p0) && valueGuaranteed.has(p0.code)) {
    const valueKeys = keys.map((k, i) => (i === 0 && first!.valueNotNull ? { ...k, notNull: true } : k));
    return { joins: [first.firstJoin, ...joins.slice(1)], keys: valueKeys, firstTable: sortColumn[p0.type]!.table };
  }
  // In the segment of rows that have a value the first key is never NULL (inner join).
  const valueKeys = keys.map((k, i) => (i === 0 && first!.valueNotNull ? { ...k, notNull: true } : k));
  const nullKeys = keys.map((k, i) => (i === 0 ? { ...k, expr: sql`CAST(NULL AS ${sql.raw(k.type)})`, notNull: true, constNull: true } : k));
  return { joins, keys, split: { firstJoin: first.firstJoin, firstMissing: first.firstMissing, restJoins: joins.slice(1), nullKeys, valueKeys } };
}

/** ORDER BY clause; `reverse` walks backwards (for `previous` pages). NULLs always sort last. */
export function orderBy(keys: OrderKey[], reverse: boolean): Cond {
  return sql.join(
    keys.map((k) => {
      const desc = k.desc !== reverse;
      if (k.notNull) return sql`${k.expr} ${sql.raw(desc ? 'DESC' : 'ASC')}`;
      return sql`${k.expr} ${sql.raw(desc ? 'DESC' : 'ASC')} ${sql.raw(reverse ? 'NULLS FIRST' : 'NULLS LAST')}`;
    }),
    sql`, `,
  );
}

function cast(v: string, type: OrderKey['type']): Cond {
  return sql`CAST(${v} AS ${sql.raw(type)})`;
}

/**
 * Keyset condition: rows strictly after (or before, when `reverse`) the cursor row in the
 * total order of `keys`, with NULLs last. Stable while others write: no OFFSET involved.
 */
export function keysetCondition(keys: OrderKey[], values: ReadonlyArray<string | null>, reverse: boolean): Cond {
  const branches: Cond[] = [];
  for (let i = 0; i < keys.length; i++) {
    const prefix: Cond[] = [];
    for (let j = 0; j < i; j++) {
      const v = values[j] ?? null;
      prefix.push(v === null ? sql`${keys[j]!.expr} IS NULL` : sql`${keys[j]!.expr} = ${cast(v, keys[j]!.type)}`);
    }
    const k = keys[i]!;
    const v = values[i] ?? null;
    let step: Cond;
    if (!reverse) {
      if (v === null) step = FALSE;
      else step = or([sql`${k.expr} ${sql.raw(k.desc ? '<' : '>')} ${cast(v, k.type)}`, sql`${k.expr} IS NULL`]);
    } else {
      if (v === null) step = sql`${k.expr} IS NOT NULL`;
      else step = sql`${k.expr} ${sql.raw(k.desc ? '>' : '<')} ${cast(v, k.type)}`;
    }
    if (step === FALSE) continue;
    branches.push(and([...prefix, step]));
  }
  const k0 = keys[0];
  const v0 = values[0] ?? null;
  // Implied by the branches, but gives the planner an index range on the first key.
  if (k0?.notNull && !k0.constNull && v0 !== null && branches.length > 1) {
    const bound = sql`${k0.expr} ${sql.raw(k0.desc !== reverse ? '<=' : '>=')} ${cast(v0, k0.type)}`;
    return and([bound, or(branches)]);
  }
  return or(branches);
}
