import { sql } from 'kysely';
import { COMPOSITE, DATE, FULLTEXT, NUMBER, QUANTITY, REFERENCE, STRING, TOKEN, URI } from '../index-tables.js';
import { fullTextCond } from './full-text.js';
import { indexCodes, type CompiledSearchParam } from '../registry.js';
import type { ChainFilter, Filter, HasFilter, LogicFilter, ParamFilter, ParamValue, ReferenceValue, SpecialParam } from '../request.js';
import type { SearchTerminology } from '../terminology.js';
import { dateCond } from './date.js';
import { lateralListFrom, longListGroup, orValues } from './lists.js';
import { numberCond } from './number.js';
import { quantityCond } from './quantity.js';
import { referenceCond } from './reference.js';
import { stringCond } from './string.js';
import { ofTypeCond, textCond, tokenCond } from './token.js';
import { uriCond } from './uri.js';
import { accessSql, type AccessFilter } from './access.js';
import { Aliases, and, col, FALSE, or, paramIs, TRUE, type Cond } from './util.js';

/**
 * A filter as an uncorrelated row source of the ids of ONE resource type that match it:
 * `SELECT <id> FROM <from> WHERE <where>`. The planner can then drive a search from the
 * smallest set (or probe it), and counts can be answered from index rows alone.
 */
export interface IdSource {
  from: Cond;
  /** the id column (may repeat: one resource can have several matching index rows) */
  id: Cond;
  /** the resource type column, for a set over several types (system search, `Patient/x/*`) */
  type?: Cond;
  where: Cond;
  /**
   * Every id is a current (not deleted) resource of the type: true for sets read from the type's
   * own index rows, which exist only for current versions (a write replaces them, a delete
   * removes them). False for `_has` (ids are reference targets, possibly deleted).
   */
  live: boolean;
  /** rough selectivity rank, lower = usually fewer rows (driver choice for counts) */
  rank: number;
  /** at most one row per resource (search_text): a count over it needs no DISTINCT */
  unique?: boolean;
}

export function idSelect(s: IdSource): Cond {
  return sql`SELECT ${s.id} FROM ${s.from} WHERE ${s.where}`;
}

/** `target` is in the set: by id for a set of one type, by (type, id) for a set of several. */
export function inSource(target: Pick<Target, 'type' | 'id'>, s: IdSource): Cond {
  return s.type ? sql`(${target.type}, ${target.id}) IN (SELECT ${s.type}, ${s.id} FROM ${s.from} WHERE ${s.where})` : sql`${target.id} IN (${idSelect(s)})`;
}

/** Rank of a parameter type as a driver: equality-like lookups first, ranges last. */
const rankByType: Record<string, number> = { token: 0, reference: 0, uri: 0, string: 2, composite: 2, date: 3, number: 3, quantity: 3 };

/** The resource a filter is evaluated for, as SQL expressions (a row of `resource` or an index row). */
export interface Target {
  type: Cond;
  id: Cond;
  /** Alias of a `resource` row when the target is one (gives `last_updated` directly). */
  resourceAlias?: string;
}

/**
 * SMART scope filtering. Every place that lets a resource into a result — matches, includes,
 * chain targets, `_has` sources — calls this ONE function, so the token's type limits and its
 * Patient-compartment confinement (`patient/` scopes) reach them all (see `access.ts`).
 * Out-of-scope resources are dropped silently: no error, not counted in totals.
 */
export function accessCondition(accessFilter: AccessFilter | undefined, target: Target, compiler?: FilterCompiler): Cond {
  return accessFilter ? accessSql(accessFilter, target, compiler ? (f, t) => compiler.compile(f, t) : undefined) : TRUE;
}

/** The resource types a set is for: one (type search) or several (system search, `Patient/x/*`). */
export type TypeSet = string | readonly string[];

function typeIs(c: Cond, type: TypeSet): Cond {
  return typeof type === 'string' ? sql`${c} = ${type}` : sql`${c} = ANY(${[...type]}::text[])`;
}

function typeColumn(c: Cond, type: TypeSet): { type?: Cond } {
  return typeof type === 'string' ? {} : { type: c };
}

const tableByType: Record<string, string> = {
  token: TOKEN,
  string: STRING,
  date: DATE,
  number: NUMBER,
  quantity: QUANTITY,
  reference: REFERENCE,
  uri: URI,
  composite: COMPOSITE,
};

function refCode(v: ReferenceValue): string {
  return v.type && v.id ? `${v.type}/${v.id}` : (v.url ?? v.id ?? '');
}

export class FilterCompiler {
  constructor(
    private readonly terminology: SearchTerminology,
    private readonly aliases: Aliases,
    private readonly accessFilter: AccessFilter | undefined,
    private readonly now = Date.now(),
  ) {}

  compile(f: Filter, target: Target): Cond {
    switch (f.kind) {
      case 'param':
        return 'special' in f.param ? this.special(f, f.param, target) : this.param(f, f.param, target);
      case 'chain':
        return this.chain(f, target);
      case 'has':
        return this.has(f, target);
      case 'logic':
        return this.logic(f, target);
    }
  }

  /** `_filter` and / or / not of ordinary filters (a NOT of EXISTS conditions is never NULL). */
  private logic(f: LogicFilter, target: Target): Cond {
    const parts = f.parts.map((p) => this.compile(p, target));
    if (f.op === 'not') return sql`NOT ${parts[0] ?? FALSE}`;
    return f.op === 'and' ? and(parts) : or(parts);
  }

  /**
   * A `_filter` and / or as an id set: `or` = UNION ALL of its parts' sets (when each has one),
   * `and` = the smallest-ranked part's set, the other parts probed on its ids. `not`: none.
   */
  private logicSource(f: LogicFilter, type: TypeSet): IdSource | undefined {
    if (f.op === 'not') return undefined;
    const sources = f.parts.map((p) => this.idSource(p, type));
    const multi = typeof type !== 'string';
    if (f.op === 'or') {
      if (sources.some((s) => !s)) return undefined;
      const u = this.aliases.next('u');
      const branches = (sources as IdSource[]).map((s) => sql`SELECT ${multi ? sql`${s.type!} AS rtype, ` : sql``}${s.id} AS rid FROM ${s.from} WHERE ${s.where}`);
      return {
        from: sql`(${sql.join(branches, sql` UNION ALL `)}) ${sql.raw(u)}`,
        id: col(u, 'rid'),
        ...(multi ? { type: col(u, 'rtype') } : {}),
        where: TRUE,
        live: sources.every((s) => s!.live),
        rank: Math.max(...sources.map((s) => s!.rank)),
      };
    }
    let best = -1;
    sources.forEach((s, i) => {
      if (s && (best < 0 || s.rank < sources[best]!.rank)) best = i;
    });
    if (best < 0) return undefined;
    const d = sources[best]!;
    const target: Target = { type: multi ? d.type! : sql`${type}::text`, id: d.id };
    const rest = f.parts.flatMap((p, i) => (i === best ? [] : [sources[i] ? inSource(target, sources[i]!) : this.compile(p, target)]));
    return { ...d, where: and([d.where, ...rest]) };
  }

  private special(f: ParamFilter, p: SpecialParam, target: Target): Cond {
    if (p.code === '_content' || p.code === '_text' || p.code === '_score') {
      const a = this.aliases.next('x');
      return sql`EXISTS (SELECT 1 FROM ${sql.raw(FULLTEXT)} ${sql.raw(a)} WHERE ${col(a, 'resource_type')} = ${target.type} AND ${col(a, 'resource_id')} = ${target.id} AND ${fullTextCond(a, p.code, f.values)})`;
    }
    if (p.code === '_id') {
      if (f.values[0]?.kind === 'missing') return f.values[0].v ? FALSE : TRUE;
      const ids = f.values.flatMap((v) => (v.kind === 'token' && v.v.code !== undefined ? [v.v.code] : []));
      const c = sql`${target.id} = ANY(${ids}::text[])`;
      return f.modifier === 'not' ? sql`NOT ${c}` : c;
    }
    // _lastUpdated
    if (f.values[0]?.kind === 'missing') return f.values[0].v ? FALSE : TRUE;
    if (target.resourceAlias) {
      const r = target.resourceAlias;
      return or(f.values.map((v) => (v.kind === 'date' ? dateCond(r, 'last_updated', 'last_updated', v.v, this.now) : FALSE)));
    }
    const a = this.aliases.next('lu');
    return sql`EXISTS (SELECT 1 FROM resource ${sql.raw(a)} WHERE ${col(a, 'resource_type')} = ${target.type} AND ${col(a, 'id')} = ${target.id} AND ${or(
      f.values.map((v) => (v.kind === 'date' ? dateCond(a, 'last_updated', 'last_updated', v.v, this.now) : FALSE)),
    )})`;
  }

  private param(f: ParamFilter, p: CompiledSearchParam, target: Target): Cond {
    const table = tableByType[p.type];
    if (!table) return FALSE;
    const a = this.aliases.next('s');
    const base = sql`SELECT 1 FROM ${sql.raw(table)} ${sql.raw(a)} WHERE ${col(a, 'resource_type')} = ${target.type} AND ${col(a, 'resource_id')} = ${target.id} AND ${paramIs(a, indexCodes(p))}`;
    const first = f.values[0];
    if (first?.kind === 'missing') return first.v ? sql`NOT EXISTS (${base})` : sql`EXISTS (${base})`;
    const negate = f.modifier === 'not' || f.modifier === 'not-in';
    const exists = sql`EXISTS (${base} AND ${this.values(a, p, f)})`;
    return negate ? sql`NOT ${exists}` : exists;
  }

  /** The OR of a filter's values on index row `a` (lists grouped into array parameters). */
  private values(a: string, p: CompiledSearchParam, f: ParamFilter, type?: string): Cond {
    return orValues(a, f.values, f.modifier, (v) => this.value(a, p, f.modifier, v, type));
  }

  /** `type`: the one resource type the row belongs to, when known (enables implied date bounds). */
  private value(a: string, p: CompiledSearchParam, modifier: string | undefined, v: ParamValue, type?: string): Cond {
    switch (v.kind) {
      case 'token':
        if (modifier === 'of-type') return ofTypeCond(a, v.v);
        if (modifier === 'above' || modifier === 'below') return this.terminology.hierarchyCond(a, v.v, modifier);
        return tokenCond(a, 'system', 'code', v.v);
      case 'text':
        // token: the folded display / text; reference: the folded Reference.display
        return textCond(a, v.v, p.type === 'reference' ? 'display' : 'text');
      case 'valueset':
        return this.terminology.valueSetCond(a, v.url);
      case 'string':
        return stringCond(a, 'value', 'exact', v.v, modifier);
      case 'uri':
        return uriCond(a, 'value', v.v, modifier);
      case 'date':
        // (the implied bound reads one param's rows: none for a parameter derived from several)
        return dateCond(a, 'low', 'high', v.v, this.now, type && !p.storedAs ? { type, param: p.code } : undefined);
      case 'number':
        return numberCond(a, 'low', 'high', v.v);
      case 'quantity':
        return quantityCond(a, v.v);
      case 'reference':
        return referenceCond(a, v.v, modifier && /^[A-Z]/.test(modifier) ? modifier : undefined);
      case 'composite':
        return this.composite(a, p, v.parts);
      case 'missing':
        return TRUE;
      case 'fulltext':
        return FALSE; // special parameter: compiled by `special` / `fullTextSource`
    }
  }

  private composite(a: string, p: CompiledSearchParam, parts: ParamValue[]): Cond {
    const conds: Cond[] = [];
    parts.forEach((part, i) => {
      const c = i === 0 ? 'c1' : i === 1 ? 'c2' : 'c3';
      switch (part.kind) {
        case 'token':
          conds.push(tokenCond(a, `${c}_system`, `${c}_code`, part.v));
          break;
        case 'reference':
          conds.push(sql`${col(a, `${c}_code`)} = ${refCode(part.v)}`);
          break;
        case 'string':
          conds.push(stringCond(a, `${c}_code`, undefined, part.v));
          break;
        case 'uri':
          conds.push(sql`${col(a, `${c}_code`)} = ${part.v}`);
          break;
        case 'quantity': {
          const q = part.v;
          if (q.canon) {
            conds.push(sql`${col(a, `${c}_code`)} = ${q.canon.code}`);
            conds.push(numberCond(a, `${c}_low`, `${c}_high`, { prefix: q.prefix, value: q.canon.value, low: q.canon.low, high: q.canon.high }));
          } else if (q.system === undefined && q.code === undefined && c === 'c2') {
            // No unit: the value as written (c2_low/high may hold the UCUM-canonical value).
            conds.push(numberCond(a, 'c2_value_low', 'c2_value_high', q));
          } else {
            if (q.system !== undefined) conds.push(sql`${col(a, `${c}_system`)} = ${q.system}`);
            if (q.code !== undefined) conds.push(sql`${col(a, `${c}_code`)} = ${q.code}`);
            conds.push(numberCond(a, `${c}_low`, `${c}_high`, q));
          }
          break;
        }
        case 'date':
          conds.push(dateCond(a, `${c}_date_low`, `${c}_date_high`, part.v, this.now));
          break;
        case 'number':
          conds.push(numberCond(a, `${c}_low`, `${c}_high`, part.v));
          break;
        default:
          conds.push(FALSE);
      }
    });
    void p;
    return and(conds);
  }

  /**
   * The filter as an id source for `type`, or undefined when it cannot be one (negations,
   * `:missing=true`, `_id`, `_lastUpdated`: those stay correlated conditions on the resource).
   */
  idSource(f: Filter, type: TypeSet): IdSource | undefined {
    switch (f.kind) {
      case 'param':
        if ('special' in f.param) return f.param.code === '_content' || f.param.code === '_text' ? this.fullTextSource(f, f.param.code, type) : undefined;
        return this.paramSource(f, f.param, type);
      case 'chain':
        return this.chainSource(f, type);
      case 'has':
        return this.hasSource(f, type);
      case 'logic':
        return this.logicSource(f, type);
    }
  }

  /**
   * The value conditions of a positive param filter evaluated on ONE given index row (alias
   * `a` of the param's table), e.g. the row flagged as the resource's sort row.
   */
  valuesOn(f: ParamFilter, a: string, type: string): Cond {
    if ('special' in f.param || f.values[0]?.kind === 'missing') return TRUE;
    return this.values(a, f.param, f, type);
  }

  private paramSource(f: ParamFilter, p: CompiledSearchParam, type: TypeSet): IdSource | undefined {
    const table = tableByType[p.type];
    if (!table || f.modifier === 'not' || f.modifier === 'not-in') return undefined;
    const first = f.values[0];
    if (first?.kind === 'missing' && first.v) return undefined;
    const a = this.aliases.next('s');
    const conds: Cond[] = [typeIs(col(a, 'resource_type'), type), paramIs(a, indexCodes(p))];
    const long = first?.kind !== 'missing' ? longListGroup(f.values, f.modifier) : undefined;
    if (long) {
      // one index descent per value (see LATERAL_LIST_MIN)
      const from = lateralListFrom(table, a, long, and(conds), ['resource_type', 'resource_id']);
      return { from, id: col(a, 'resource_id'), ...typeColumn(col(a, 'resource_type'), type), where: TRUE, live: true, rank: rankByType[p.type] ?? 3 };
    }
    // `:missing=false`: any row of the param
    if (first?.kind !== 'missing') conds.push(this.values(a, p, f, typeof type === 'string' ? type : undefined));
    return { from: sql`${sql.raw(table)} ${sql.raw(a)}`, id: col(a, 'resource_id'), ...typeColumn(col(a, 'resource_type'), type), where: and(conds), live: true, rank: rankByType[p.type] ?? 3 };
  }

  /** `_content` / `_text`: the ids whose search_text row matches (GIN on the tsvector). */
  private fullTextSource(f: ParamFilter, code: string, type: TypeSet): IdSource {
    const a = this.aliases.next('x');
    return {
      from: sql`${sql.raw(FULLTEXT)} ${sql.raw(a)}`,
      id: col(a, 'resource_id'),
      ...typeColumn(col(a, 'resource_type'), type),
      where: and([typeIs(col(a, 'resource_type'), type), fullTextCond(a, code, f.values)]),
      live: true,
      rank: 2,
      unique: true,
    };
  }

  /**
   * Condition that the chain's inner filter holds for the reference target of index row `a`,
   * and that the target is a current resource (a reference may point at a deleted one).
   */
  private chainTargetCond(f: ChainFilter, a: string): Cond {
    const one = f.targetTypes.length === 1 ? f.targetTypes[0]! : undefined;
    const inner: Target = { type: one ? sql`${one}::text` : col(a, 'target_type'), id: col(a, 'target_id') };
    const conds: Cond[] = [];
    const set = one ? this.idSource(f.inner, one) : undefined;
    // A set read from the target type's own index rows holds current resources only.
    conds.push(set ? sql`${col(a, 'target_id')} IN (${idSelect(set)})` : this.compile(f.inner, inner));
    if (!set?.live) {
      const t = `${a}t`;
      conds.push(sql`EXISTS (SELECT 1 FROM resource ${sql.raw(t)} WHERE ${col(t, 'resource_type')} = ${inner.type} AND ${col(t, 'id')} = ${inner.id} AND ${col(t, 'deleted')} = false)`);
    }
    conds.push(accessCondition(this.accessFilter, inner, this));
    return and(conds);
  }

  private chainSource(f: ChainFilter, type: TypeSet): IdSource {
    const a = this.aliases.next('c');
    const where = and([
      typeIs(col(a, 'resource_type'), type),
      sql`${col(a, 'param')} = ${f.param.code}`,
      f.targetTypes.length === 1 ? sql`${col(a, 'target_type')} = ${f.targetTypes[0]!}` : sql`${col(a, 'target_type')} = ANY(${f.targetTypes}::text[])`,
      sql`${col(a, 'target_id')} IS NOT NULL`,
      this.chainTargetCond(f, a),
    ]);
    return { from: sql`search_reference ${sql.raw(a)}`, id: col(a, 'resource_id'), ...typeColumn(col(a, 'resource_type'), type), where, live: true, rank: 1 };
  }

  /** Condition that the source resource of reference row `a` matches the `_has` inner filter. */
  private hasSourceCond(f: HasFilter, a: string): Cond {
    const source: Target = { type: sql`${f.sourceType}::text`, id: col(a, 'resource_id') };
    // The reference row itself proves the source is current (index rows exist only for those).
    const inner = this.idSource(f.inner, f.sourceType);
    const match = inner ? sql`${col(a, 'resource_id')} IN (${idSelect(inner)})` : this.compile(f.inner, source);
    return and([match, accessCondition(this.accessFilter, source, this)]);
  }

  private hasSource(f: HasFilter, type: TypeSet): IdSource {
    const a = this.aliases.next('h');
    const where = and([
      sql`${col(a, 'resource_type')} = ${f.sourceType}`,
      sql`${col(a, 'param')} = ${f.referenceParam.code}`,
      typeIs(col(a, 'target_type'), type),
      sql`${col(a, 'target_id')} IS NOT NULL`,
      this.hasSourceCond(f, a),
    ]);
    return { from: sql`search_reference ${sql.raw(a)}`, id: col(a, 'target_id'), ...typeColumn(col(a, 'target_type'), type), where, live: false, rank: 1 };
  }

  private chain(f: ChainFilter, target: Target): Cond {
    const a = this.aliases.next('c');
    return sql`EXISTS (SELECT 1 FROM search_reference ${sql.raw(a)} WHERE ${col(a, 'resource_type')} = ${target.type} AND ${col(a, 'resource_id')} = ${target.id} AND ${col(a, 'param')} = ${f.param.code} AND ${col(a, 'target_type')} = ANY(${f.targetTypes}::text[]) AND ${col(a, 'target_id')} IS NOT NULL AND ${this.chainTargetCond(f, a)})`;
  }

  private has(f: HasFilter, target: Target): Cond {
    const a = this.aliases.next('h');
    return sql`EXISTS (SELECT 1 FROM search_reference ${sql.raw(a)} WHERE ${col(a, 'resource_type')} = ${f.sourceType} AND ${col(a, 'param')} = ${f.referenceParam.code} AND ${col(a, 'target_type')} = ${target.type} AND ${col(a, 'target_id')} = ${target.id} AND ${this.hasSourceCond(f, a)})`;
  }
}
