import { sql } from 'kysely';
import { errors } from '../../fhir/errors.js';
import { DATE, FULLTEXT, NUMBER, QUANTITY, REFERENCE, STRING, TOKEN, URI } from '../index-tables.js';
import { rankExpr } from './full-text.js';
import type { SortKey } from '../request.js';
import { and, col, FALSE, or, type Cond } from './util.js';

/** One ORDER BY key: its SQL expression, the type to cast cursor values to, its direction. */
export interface OrderKey {
  expr: Cond;
  type: 'text' | 'timestamptz' | 'numeric' | 'float8';
  desc: boolean;
  /** never NULL: ORDER BY may then use the plain btree order (no NULLS clause). */
  notNull?: boolean;
  /** the key is the constant NULL (segment of rows without a value) */
  constNull?: boolean;
}

/** The row being sorted: a `resource` row, or (hub mode) the first key's own sort row. */
export interface SortTarget {
  type: Cond;
  id: Cond;
  /** `resource.last_updated`; absent in hub mode (no `_sort=_lastUpdated` there) */
  lastUpdated?: Cond;
}

export interface SortPlan {
  joins: Cond[];
  /** table of the first key's sort row (alias `o0`), when it is a search parameter */
  firstTable?: string;
  /**
   * Hub mode: the first key's sort rows (alias `o0`) are the FROM item of the id query instead of
   * `resource` (every match has one, and index rows exist only for current resources), so no
   * probe of `resource` per row walked. `from` and `where` select them; `joins` are the others.
   */
  hub?: { from: Cond; where: Cond };
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
export function sortPlan(sort: SortKey[], r: SortTarget, valueGuaranteed: ReadonlySet<string> = new Set(), hub = false): SortPlan {
  const joins: Cond[] = [];
  const keys: OrderKey[] = [];
  let first: { firstJoin: Cond; firstMissing: Cond; valueNotNull: boolean; hubWhere: Cond } | undefined;
  sort.forEach((s, i) => {
    if ('special' in s.param) {
      if (s.param.code === '_score') {
        // Relevance (ts_rank) of the full-text filters, highest first for `_score` (`-_score`:
        // lowest first). The row is joined once; every match has one (the filter needs it).
        const a = `sc${i}`;
        joins.push(sql`LEFT JOIN ${sql.raw(FULLTEXT)} ${sql.raw(a)} ON ${col(a, 'resource_type')} = ${r.type} AND ${col(a, 'resource_id')} = ${r.id}`);
        const ranks = (s.textFilters ?? []).map((f) => sql`COALESCE(${rankExpr(a, f.param.code, f.values)}, 0)`);
        const expr = ranks.length ? sql`(${sql.join(ranks, sql` + `)})::float8` : sql`0::float8`;
        keys.push({ expr, type: 'float8', desc: !s.desc, notNull: true });
        return;
      }
      if (s.param.code === '_id') keys.push({ expr: r.id, type: 'text', desc: s.desc, notNull: true });
      else if (r.lastUpdated) keys.push({ expr: r.lastUpdated, type: 'timestamptz', desc: s.desc, notNull: true });
      else throw new Error('_sort=_lastUpdated needs the resource row');
      return;
    }
    const spec = sortColumn[s.param.type];
    if (!spec) throw errors.incorrect(`Cannot sort on ${s.param.type} parameter '${s.name}'`, ['_sort']);
    // Sort rows are flagged per stored parameter; one derived from several has none of its own.
    if (s.param.storedAs) {
      throw errors.incorrect(`Cannot sort on '${s.name}': it is searched through ${s.param.storedAs.join(', ')}; sort on one of those`, ['_sort']);
    }
    const a = `o${i}`;
    const flag = col(a, s.desc ? 'sort_desc' : 'sort_asc');
    const on = sql`${col(a, 'resource_type')} = ${r.type} AND ${col(a, 'resource_id')} = ${r.id} AND ${col(a, 'param')} = ${s.param.code} AND ${flag}`;
    joins.push(sql`LEFT JOIN ${sql.raw(spec.table)} ${sql.raw(a)} ON ${on}`);
    if (i === 0) {
      first = {
        firstJoin: sql`JOIN ${sql.raw(spec.table)} ${sql.raw(a)} ON ${on}`,
        firstMissing: sql`NOT EXISTS (SELECT 1 FROM ${sql.raw(spec.table)} ${sql.raw(a)} WHERE ${on})`,
        valueNotNull: spec.valueNotNull,
        hubWhere: sql`${col(a, 'param')} = ${s.param.code} AND ${flag}`,
      };
    }
    const expr =
      s.param.type === 'reference'
        ? sql`COALESCE(${col(a, 'target_type')} || '/' || ${col(a, 'target_id')}, ${col(a, 'url')})`
        : col(a, s.desc ? spec.desc : spec.asc);
    keys.push({ expr, type: spec.type, desc: s.desc });
  });
  keys.push({ expr: r.type, type: 'text', desc: false, notNull: true });
  keys.push({ expr: r.id, type: 'text', desc: false, notNull: true });
  if (!first) return { joins, keys };
  // A positive filter on the first sort parameter means every match has a value: one segment.
  const p0 = sort[0]!.param;
  if (!('special' in p0) && valueGuaranteed.has(p0.code)) {
    const valueKeys = keys.map((k, i) => (i === 0 && first!.valueNotNull ? { ...k, notNull: true } : k));
    const table = sortColumn[p0.type]!.table;
    if (hub) return { joins: joins.slice(1), keys: valueKeys, firstTable: table, hub: { from: sql`${sql.raw(table)} o0`, where: first.hubWhere } };
    return { joins: [first.firstJoin, ...joins.slice(1)], keys: valueKeys, firstTable: table };
  }
  if (hub) throw new Error('hub mode needs a value of the first sort key on every match');
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
  // No NULL anywhere and one direction: a row comparison, which btree takes as ONE index range
  // (`(resource_type, id) > ($1, $2)` starts the walk at the cursor; the OR form below only
  // bounds the first key, so each page re-read the first key's earlier rows).
  if (keys.length > 1 && keys.every((k, i) => k.notNull && !k.constNull && values[i] != null && k.desc === keys[0]!.desc)) {
    const op = sql.raw(keys[0]!.desc !== reverse ? '<' : '>');
    return sql`(${sql.join(keys.map((k) => k.expr))}) ${op} (${sql.join(keys.map((k, i) => cast(values[i]!, k.type)))})`;
  }
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
