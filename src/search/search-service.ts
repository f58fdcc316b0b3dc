import type { Bundle, BundleEntry, BundleLink, FhirResource, Meta, OperationOutcome, Resource } from 'fhir/r4.js';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { errors, FhirError, isFhirError } from '../fhir/errors.js';
import { applyElements, applySummary } from '../fhir/summary/index.js';
import { parseSearch } from './parse.js';
import { filterTerminologyPairs } from './filter-expression.js';
import type { SearchParameterRegistry } from './registry.js';
import type { Filter, IncludeSpec, ParamFilter, SearchRequest } from './request.js';
import { rowRestricted, type AccessFilter } from './sql/access.js';
import { accessCondition, FilterCompiler, idSelect, inSource, type IdSource, type Target, type TypeSet } from './sql/filter.js';
import { allResourceTypes } from './fhir-model.js';
import { keysetCondition, MULTI_ROW_INDEXED, orderBy, sortPlan, type OrderKey, type SortPlan } from './sql/sort.js';
import { Aliases, and, col, TRUE, type Cond } from './sql/util.js';
import { Terminology, type SearchTerminology } from './terminology.js';
import { compartmentCondition, compartmentSource, compartmentTypes, resourceInCompartment } from './compartment.js';
import { versionVisible } from './version-access.js';
import { memoryMatcher } from './memory-match.js';
import { metaSummary } from './meta-summary.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

export interface SearchInput {
  resourceType?: string;
  compartment?: { type: string; id: string };
  params: [string, string][];
  /** e.g. http://localhost:8080/fhir */
  baseUrl: string;
  strict?: boolean;
  /** The caller's SMART scope filter (undefined: sees everything), applied in `sql/filter.ts#accessCondition`. */
  accessFilter?: AccessFilter;
}

/**
 * A type stored outside `resource` and the index tables, searched by its own store (the audit
 * trail: src/audit/audit-search.ts). Reads and history still go through `resource`/`resource_history`.
 */
export interface OwnTypeSearch {
  search(req: SearchRequest, input: SearchInput): Promise<Bundle>;
  /** `_revinclude=<Type>:param` on a page of other resources. */
  revinclude(spec: IncludeSpec, targets: readonly Resource[], accessFilter: AccessFilter | undefined): Promise<Resource[]>;
}

interface Row {
  resource_type: string;
  id: string;
  content: Resource | string;
  [k: `k${number}`]: string | null;
}

interface Cursor {
  /** sort key values of the boundary row (text), incl. resource_type and id tiebreakers */
  k: Array<string | null>;
  /** n = rows after the boundary, p = rows before it */
  d: 'n' | 'p';
}

/** Includes per path are capped so one page cannot pull in an unbounded graph. */
const MAX_INCLUDES_PER_PATH = 1000;
const MAX_ITERATE_DEPTH = 4;

function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c), 'utf8').toString('base64url');
}

function decodeCursor(s: string, keyCount: number): Cursor {
  try {
    const c = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as Cursor;
    if ((c.d === 'n' || c.d === 'p') && Array.isArray(c.k) && c.k.length === keyCount && c.k.every((v) => v === null || typeof v === 'string')) return c;
  } catch {
    // fall through
  }
  throw errors.incorrect('Invalid _cursor (it belongs to a different search or was altered)', ['_cursor']);
}

let everyType: readonly string[] | undefined;

/**
 * The types index-row sets are read for: the one type, the listed ones, or — system search
 * without `_type` — every resource type, so the sets' (resource_type, param, …) indexes stay
 * usable (one descent per type) where no type at all would mean a full index scan.
 */
function setTypes(req: SearchRequest): TypeSet {
  if (req.types.length === 1) return req.types[0]!;
  if (req.types.length > 1) return req.types;
  return (everyType ??= allResourceTypes().sort());
}

function contentOf(row: { content: Resource | string }): Resource {
  return typeof row.content === 'string' ? (JSON.parse(row.content) as Resource) : row.content;
}

/**
 * The access condition on a search's own matches. A search of ONE type the caller sees every
 * resource of (a `user/*.rs` token, say) needs none: the type condition already confines the
 * target, and the filter's other parts (hidden types, private messages, compartment) concern
 * other types. Left out, the statement is the one a caller without restrictions runs (no
 * `<> ALL`, no participants sub-select to plan on every search). Includes, chains and `_has`
 * still get the full condition from the compiler.
 */
function mainAccessCondition(accessFilter: AccessFilter | undefined, single: string | undefined, target: Target, compiler: FilterCompiler): Cond {
  if (single !== undefined && !rowRestricted(accessFilter, single)) return TRUE;
  return accessCondition(accessFilter, target, compiler);
}

/** See SearchService.countBesidePageAfterMs: fast pages (most) never start a count they may not need. */
export const COUNT_BESIDE_PAGE_AFTER_MS = 5;

/**
 * FHIR R4 search over the `resource` table and the search index tables. One SQL statement for
 * the page (filters as EXISTS semi-joins, `_sort` as joins on flagged sort rows, keyset paging),
 * one for the total when asked, and one per include path (per `:iterate` level).
 */
export class SearchService {
  private readonly db: AnyDb;
  private readonly registry: SearchParameterRegistry;
  private readonly terminology: SearchTerminology;
  private readonly ownTypes = new Map<string, OwnTypeSearch>();

  /** Progress of a back-fill after an upgrade (src/storage/backfill.ts); undefined once it is complete. */
  private readonly backfillProgress: (name: 'search-text' | 'reference-display') => { done: number; total: number } | undefined;

  /**
   * The count of a first page starts beside the page when the page takes longer than this (ms);
   * undefined: after it, as one connection runs one statement at a time (the embedded database).
   */
  private readonly countBesidePageAfterMs: number | undefined;

  constructor(deps: {
    db: AnyDb;
    registry: SearchParameterRegistry;
    terminology?: SearchTerminology;
    backfillProgress?: (name: 'search-text' | 'reference-display') => { done: number; total: number } | undefined;
    /**
     * Several connections (a PostgreSQL pool): a page still running after this many ms gets its
     * count started beside it, on another connection (COUNT_BESIDE_PAGE_AFTER_MS in the server).
     */
    countBesidePageAfterMs?: number;
  }) {
    this.db = deps.db;
    this.registry = deps.registry;
    this.terminology = deps.terminology ?? new Terminology();
    this.backfillProgress = deps.backfillProgress ?? (() => undefined);
    this.countBesidePageAfterMs = deps.countBesidePageAfterMs;
  }

  /**
   * `_content` / `_text`, and `:text` on references, while resources stored before the upgrade
   * that introduced their rows are still being given them (src/storage/backfill.ts): a 503 that
   * says how far it is, never a silently partial answer.
   */
  private requireBackfilled(req: SearchRequest): void {
    const fullText = req.filters.some((f) => f.kind === 'param' && 'special' in f.param && (f.param.code === '_content' || f.param.code === '_text'));
    const referenceText = req.filters.some((f) => f.kind === 'param' && !('special' in f.param) && f.param.type === 'reference' && f.modifier === 'text');
    const waiting: Array<['search-text' | 'reference-display', string]> = [];
    if (fullText) waiting.push(['search-text', 'full-text search (_content, _text)']);
    if (referenceText) waiting.push(['reference-display', ':text on reference parameters']);
    for (const [name, what] of waiting) {
      const progress = this.backfillProgress(name);
      if (progress) throw new FhirError('unavailable', `${what} is being prepared after an upgrade: ${progress.done} of about ${progress.total} resources done; retry later`, { 'Retry-After': '60' });
    }
  }

  /**
   * Parses the queries of granular scopes into filters. Only plain parameters count (no chains,
   * `_has` or result parameters); a query that is not grants nothing.
   */
  private resolveAccess(filter: AccessFilter | undefined, baseUrl: string): AccessFilter | undefined {
    if (!filter?.granular) return filter;
    const granular = filter.granular.map((g) => {
      if (g.filters) return g;
      try {
        const req = this.parse({ resourceType: g.type, params: [...new URLSearchParams(g.query)] as [string, string][], strict: true, baseUrl });
        const plain = req.filters.length > 0 && req.filters.every((f) => f.kind === 'param') && !req.includes.length && !req.revincludes.length;
        return plain ? { ...g, filters: req.filters } : g;
      } catch {
        return g;
      }
    });
    return { ...filter, granular };
  }

  /** Searches of `type` (type and compartment searches, reverse includes of it) go to `own`. */
  searchOwnType(type: string, own: OwnTypeSearch): void {
    this.ownTypes.set(type, own);
  }

  /** Whether a resource body (not yet stored) is in compartment `c` (checks writes under `patient/` scopes). */
  inCompartment(resource: Resource, c: { type: string; id: string }): boolean {
    return resourceInCompartment(this.registry, resource, c);
  }

  /**
   * Judges single versions (vread, history: any version, not only the current one) in memory
   * against `filter`, its granular queries parsed once here (see `version-access.ts`).
   */
  versionJudge(filter: AccessFilter, baseUrl: string): (resource: Resource) => boolean {
    const resolved = this.resolveAccess(filter, baseUrl) ?? filter;
    return (resource) => versionVisible(this.registry, resolved, resource, [baseUrl]);
  }

  /**
   * The access filter as a condition on a row of `resource` (alias `resourceAlias`), granular scopes
   * compiled: for queries outside the search engine that must show only what the caller may
   * see ($everything). Undefined when the caller sees everything.
   */
  accessSql(filter: AccessFilter | undefined, baseUrl: string, resourceAlias: string): Cond | undefined {
    if (!filter) return undefined;
    const target: Target = { type: col(resourceAlias, 'resource_type'), id: col(resourceAlias, 'id'), resourceAlias };
    const resolved = this.resolveAccess(filter, baseUrl);
    return accessCondition(resolved, target, new FilterCompiler(this.terminology, new Aliases(), resolved));
  }

  /**
   * A matcher deciding in memory, on a current resource, exactly what `search` with `params`
   * and `accessFilter` would decide for it; undefined when some filter or the access filter
   * needs SQL (see `memory-match.ts`). Throws the parse errors `search` would.
   */
  memoryMatcher(resourceType: string, params: [string, string][], accessFilter: AccessFilter | undefined, baseUrl: string): ((resource: Resource) => boolean) | undefined {
    if (this.ownTypes.has(resourceType)) return undefined;
    const req = this.parse({ resourceType, params, baseUrl });
    return memoryMatcher(this.registry, resourceType, req.filters, accessFilter, [baseUrl]);
  }

  /**
   * For several searches of one type at once (Subscription criteria, each with its subscriber's
   * access filter): which of `ids` each one matches, as `search(params&_id=ids)` would find
   * them — in ONE statement (a UNION ALL branch per search over the same id list) instead of
   * a round trip, plan and content read per search. Answers current (id, version) pairs per
   * search, or the FhirError a search the engine refuses would have raised.
   */
  async matchEach(
    resourceType: string,
    ids: readonly string[],
    searches: ReadonlyArray<{ params: [string, string][]; accessFilter?: AccessFilter }>,
    baseUrl: string,
  ): Promise<Array<Array<{ id: string; versionId: string }> | FhirError>> {
    const out: Array<Array<{ id: string; versionId: string }> | FhirError> = searches.map(() => []);
    if (ids.length === 0 || searches.length === 0) return out;
    const own = this.ownTypes.get(resourceType);
    if (own) {
      // Stored outside `resource` (the audit trail): its own search, one per criteria.
      for (const [g, s] of searches.entries()) {
        try {
          const bundle = await this.search({ resourceType, params: [...s.params, ['_id', ids.join(',')], ['_count', String(ids.length)], ['_total', 'none']], baseUrl, accessFilter: s.accessFilter });
          out[g] = (bundle.entry ?? []).flatMap((e) => (e.search?.mode === 'match' && e.resource?.id ? [{ id: e.resource.id, versionId: e.resource.meta?.versionId ?? '' }] : []));
        } catch (e) {
          if (!isFhirError(e)) throw e;
          out[g] = e;
        }
      }
      return out;
    }
    const aliases = new Aliases();
    const branches: Cond[] = [];
    // The id list is bound once; each branch reads it through the InitPlan, an Index Cond on the primary key.
    const idList = sql`(SELECT mc.ids FROM mc)::text[]`;
    for (const [g, s] of searches.entries()) {
      try {
        // Per search: a value set one of them names that cannot be expanded fails that one alone.
        await this.terminology.prepare?.([...s.params, ...filterTerminologyPairs(s.params)]);
        const accessFilter = this.resolveAccess(s.accessFilter, baseUrl);
        const req = this.parse({ resourceType, params: s.params, baseUrl });
        const where = this.whereClause(req, new FilterCompiler(this.terminology, aliases, accessFilter), { resourceType, accessFilter });
        branches.push(sql`SELECT ${g}::int AS g, r.id, r.version_id::text AS version_id FROM resource r WHERE r.id = ANY(${idList}) AND ${where}`);
      } catch (e) {
        if (!isFhirError(e)) throw e;
        out[g] = e;
      }
    }
    if (branches.length === 0) return out;
    const q = sql<{ g: number; id: string; version_id: string }>`WITH mc AS (SELECT ${[...ids]}::text[] AS ids)
      ${sql.join(branches, sql` UNION ALL `)}`;
    for (const row of (await q.execute(this.db)).rows) {
      const list = out[Number(row.g)];
      if (Array.isArray(list)) list.push({ id: row.id, versionId: String(row.version_id) });
    }
    return out;
  }

  /** Parses without running (e.g. to validate a query early or to match in memory later). */
  parse(input: Pick<SearchInput, 'resourceType' | 'params' | 'strict' | 'baseUrl'>): SearchRequest {
    return parseSearch(this.registry, input.params, { resourceType: input.resourceType, strict: input.strict, baseUrl: input.baseUrl });
  }

  /**
   * Compiles a search (shared by `search` and `explain`): the page (one statement, of one or two
   * segments, see `SortPlan.split`) and the count.
   *
   * Each page segment finds the page's ids first, in an inner query that needs no resource
   * content (so it can run on index-only scans: the filters' index rows, the sort rows and the
   * `resource_live` index), and only then reads the content of those ids.
   */
  private compilePage(input: SearchInput) {
    // `Patient/123/*`: every type of the compartment (narrowed by `_type` when given).
    const everyType = input.compartment !== undefined && (input.resourceType === undefined || input.resourceType === '*');
    const req = this.parse({ ...input, resourceType: everyType ? undefined : input.resourceType });
    if (everyType) {
      const inCompartment = compartmentTypes(input.compartment!.type);
      // no type left: compartmentCondition gives FALSE for an empty list
      req.types = req.types.length ? req.types.filter((t) => inCompartment.includes(t)) : inCompartment;
    }
    const aliases = new Aliases();
    const compiler = new FilterCompiler(this.terminology, aliases, input.accessFilter);
    const single = req.types.length === 1 ? req.types[0]! : undefined;
    const guaranteed = new Set(req.filters.flatMap((f) => (single && f.kind === 'param' && !('special' in f.param) && compiler.idSource(f, single) ? [f.param.code] : [])));
    const rTarget: Target = { type: col('r', 'resource_type'), id: col('r', 'id'), resourceAlias: 'r' };
    const where = this.whereClause(req, compiler, input, { target: rTarget });
    const plan = sortPlan(req.sort, { ...rTarget, lastUpdated: col('r', 'last_updated') }, guaranteed);
    const cursor = req.cursor ? decodeCursor(req.cursor, plan.keys.length) : undefined;
    const reverse = cursor?.d === 'p';

    /** One id query ordered by `keys` over `from`, for each disjoint branch of `wheres`, then the content. */
    const segment = (s: { from: Cond; target: Target; joins: Cond[]; keys: OrderKey[]; wheres: Cond[] }) => {
      const keyset = cursor ? keysetCondition(s.keys, cursor.k, reverse) : sql`TRUE`;
      const innerCols = sql.join(
        s.keys.map((k, i) => sql`${k.expr} AS ${sql.raw(`s${i}`)}`),
        sql`, `,
      );
      const keysOf = (alias: string) => s.keys.map((k, i) => ({ ...k, expr: sql.raw(`${alias}.s${i}`) }));
      const outerKeys = keysOf('m');
      const keyCols = sql.join(
        outerKeys.map((k, i) => sql`(${k.expr})::text AS ${sql.raw(`k${i}`)}`),
        sql`, `,
      );
      const joinSql = s.joins.length ? sql.join(s.joins, sql` `) : sql``;
      const ids = (w: Cond, limit: number) => sql`SELECT ${s.target.type} AS resource_type, ${s.target.id} AS id, ${innerCols}
          FROM ${s.from} ${joinSql}
          WHERE ${w} AND ${keyset}
          ORDER BY ${orderBy(s.keys, reverse)}
          LIMIT ${limit}`;
      const inner = (limit: number) =>
        s.wheres.length === 1
          ? ids(s.wheres[0]!, limit)
          : sql`SELECT * FROM (${sql.join(
              s.wheres.map((b) => sql`(${ids(b, limit)})`),
              sql` UNION ALL `,
            )}) ab ORDER BY ${orderBy(keysOf('ab'), reverse)} LIMIT ${limit}`;
      return (limit: number) => sql<Row>`SELECT r.resource_type, r.id, r.content, ${keyCols},
          row_number() OVER (ORDER BY ${orderBy(outerKeys, reverse)}) AS ord
        FROM (${inner(limit)}) m
        JOIN resource r ON r.resource_type = m.resource_type AND r.id = m.id`;
    };

    // Rows that have a value of the first sort param: read in hub mode when possible (see
    // SortPlan.hub) — the sort rows themselves drive, no `resource` probe per row walked.
    const p0 = req.sort[0]?.param;
    const hubbable = single !== undefined && p0 !== undefined && !('special' in p0) && !req.sort.some((k) => 'special' in k.param && k.param.code === '_lastUpdated');
    const valueSegment = () => {
      if (hubbable) {
        const hTarget: Target = { type: col('o0', 'resource_type'), id: col('o0', 'resource_id') };
        const hPlan = sortPlan(req.sort, hTarget, new Set([...guaranteed, p0.code]), true);
        const hWhere = this.whereClause(req, compiler, input, { target: hTarget });
        const wheres = this.sortRowBranches(req, compiler, input, hPlan, hWhere, hTarget).map((w) => and([hPlan.hub!.where, w]));
        return segment({ from: hPlan.hub!.from, target: hTarget, joins: hPlan.joins, keys: hPlan.keys, wheres });
      }
      if (plan.split) return segment({ from: sql`resource r`, target: rTarget, joins: [plan.split.firstJoin, ...plan.split.restJoins], keys: plan.split.valueKeys, wheres: [where] });
      return segment({ from: sql`resource r`, target: rTarget, joins: plan.joins, keys: plan.keys, wheres: this.sortRowBranches(req, compiler, input, plan, where, rTarget) });
    };
    /**
     * The default order (type, id) with a `_content` / `_text` filter: the page's ids come from
     * the `search_text` rows themselves, which exist once per current resource (no `resource`
     * probe per match to prove it current, no DISTINCT), the other filters as semi-joins on the
     * id; only the page's ids read `resource`. At 1 M resources the `resource_live` probes of a
     * phrase's 10,000 matches were 27 ms of the 62 ms page (phrase + status).
     */
    const textDriven = () => {
      if (!single || input.compartment || req.sort.length > 0) return undefined;
      for (const f of req.filters) {
        if (f.kind !== 'param' || !('special' in f.param) || (f.param.code !== '_content' && f.param.code !== '_text')) continue;
        // Named as a set of one type, the source gives its own type column: the keys and the
        // keyset condition are then on the row's (resource_type, resource_id) index.
        const d = compiler.idSource(f, [single]);
        if (!d?.live || !d.unique || !d.type) continue;
        const dTarget: Target = { type: d.type, id: d.id };
        const dWhere = this.whereClause(req, compiler, input, { target: dTarget, override: (g) => (g === f ? d.where : undefined) });
        return segment({ from: d.from, target: dTarget, joins: [], keys: sortPlan([], dTarget).keys, wheres: [dWhere] });
      }
      return undefined;
    };
    let page: (limit: number) => RawBuilder<Row>;
    if (plan.split) {
      const withValue = valueSegment();
      const withoutValue = segment({ from: sql`resource r`, target: rTarget, joins: plan.split.restJoins, keys: plan.split.nullKeys, wheres: [and([where, plan.split.firstMissing])] });
      // NULLs sort last: forward pages read rows with a value first, backward pages the reverse.
      const [first, second] = reverse ? [withoutValue, withValue] : [withValue, withoutValue];
      // One round trip: the second segment sits behind a one-time filter, so it only runs when
      // the first one did not fill the page (the last page of a sort on a sparse param).
      page = (limit) => sql<Row>`WITH p1 AS MATERIALIZED (${first(limit)})
        SELECT * FROM (
          SELECT 1 AS seg, p1.* FROM p1
          UNION ALL
          SELECT 2 AS seg, p2.* FROM (${second(limit)}) p2 WHERE (SELECT count(*) FROM p1) < ${limit}
        ) u ORDER BY seg, ord LIMIT ${limit}`;
    } else {
      const only = p0 && !('special' in p0) ? valueSegment() : (textDriven() ?? segment({ from: sql`resource r`, target: rTarget, joins: plan.joins, keys: plan.keys, wheres: [where] }));
      page = (limit) => sql<Row>`SELECT * FROM (${only(limit)}) u ORDER BY ord`;
    }
    const count = this.countQuery(req, compiler, input, where);
    return { req, where, plan, cursor, reverse, page, count };
  }

  /**
   * `_sort=P` with a filter on P (`date=ge2020&date=lt2022&_sort=date`): as two disjoint
   * branches of the page query, so the sort index can be walked over the filter's range
   * instead of from its start.
   *   A: the resource's sort row itself satisfies the filters on P (an index range on the sort
   *      index, in sort order) — every match whose P has one value is here;
   *   B: it does not, yet another row of P does — only possible for resources with several rows
   *      of P, read from the small `<table>_multi` partial index.
   * Undefined conditions (no such filter, several types, a split sort) keep the one `where`.
   */
  private sortRowBranches(req: SearchRequest, compiler: FilterCompiler, input: SearchInput, plan: SortPlan, where: Cond, target: Target): Cond[] {
    const single = req.types.length === 1 ? req.types[0]! : undefined;
    const p0 = req.sort[0]?.param;
    if (!single || !p0 || 'special' in p0 || plan.split || !plan.firstTable || !MULTI_ROW_INDEXED.has(plan.firstTable)) return [where];
    const onSort = req.filters.filter((f): f is ParamFilter => f.kind === 'param' && !('special' in f.param) && f.param.code === p0.code && compiler.idSource(f, single) !== undefined);
    if (onSort.length === 0) return [where];
    const onRow = and(onSort.map((f) => compiler.valuesOn(f, 'o0', single)));
    const whereA = this.whereClause(req, compiler, input, {
      target,
      override: (f) => (onSort.includes(f as ParamFilter) ? compiler.valuesOn(f as ParamFilter, 'o0', single) : undefined),
    });
    const multi = sql`${target.id} IN (SELECT z.resource_id FROM ${sql.raw(plan.firstTable)} z WHERE z.resource_type = ${single} AND z.param = ${p0.code} AND NOT (z.sort_asc AND z.sort_desc))`;
    return [whereA, and([where, sql`(${onRow}) IS NOT TRUE`, multi])];
  }

  /**
   * `SELECT count(*)` of the matches. When a filter reads the type's own index rows (which
   * exist only for current resources), the count runs on index rows alone, driven by the filter
   * most likely to be small, the others as semi-joins: no visit of `resource` per match.
   */
  private countQuery(req: SearchRequest, compiler: FilterCompiler, input: SearchInput, where: Cond): RawBuilder<{ n: string | number }> {
    const single = req.types.length === 1 ? req.types[0]! : undefined;
    if (!single && !input.compartment) {
      // Several types (system search): the same, on (type, id) pairs of the index rows.
      const types = setTypes(req);
      const sources = req.filters.map((f) => ({ f, s: compiler.idSource(f, types) }));
      let driver: (typeof sources)[number] | undefined;
      for (const x of sources) if (x.s?.live && (!driver || x.s.rank < driver.s!.rank)) driver = x;
      if (driver) {
        const d = driver.s!;
        const target: Target = { type: d.type!, id: d.id };
        const rest: Cond[] = [];
        for (const x of sources) if (x !== driver) rest.push(x.s ? inSource(target, x.s) : compiler.compile(x.f, target));
        rest.push(accessCondition(input.accessFilter, target, compiler));
        return sql`SELECT count(*) AS n FROM (SELECT DISTINCT ${d.type!}, ${d.id} FROM ${d.from} WHERE ${d.where} AND ${and(rest)}) x`;
      }
    }
    if (single) {
      const sources = req.filters.map((f) => ({ f, s: compiler.idSource(f, single) }));
      // Patient/123/Patient also holds the owner itself: not a set of reference rows.
      const ownerType = input.compartment?.type === single;
      const compartment = input.compartment && !ownerType ? compartmentSource(input.compartment, single) : undefined;
      if (compartment) sources.push({ f: undefined as unknown as Filter, s: compartment });
      // A set with one row per resource (full text) drives first: it needs no DISTINCT, and the
      // others stay semi-joins the planner may still read first.
      const before = (a: IdSource, b: IdSource) => (a.unique ? 0 : 1) - (b.unique ? 0 : 1) || a.rank - b.rank;
      let driver: (typeof sources)[number] | undefined;
      for (const x of sources) if (x.s?.live && (!driver || before(x.s, driver.s!) < 0)) driver = x;
      if (driver && (!input.compartment || compartment)) {
        const d = driver.s!;
        const target: Target = { type: sql`${single}::text`, id: d.id };
        const rest: Cond[] = [];
        for (const x of sources) {
          if (x === driver) continue;
          rest.push(x.s ? sql`${d.id} IN (${idSelect(x.s)})` : compiler.compile(x.f, target));
        }
        rest.push(mainAccessCondition(input.accessFilter, single, target, compiler));
        // (A set with one row per resource, such as full text's, is counted as it is: hashing
        // 100,000 ids for DISTINCT was a quarter of a common word's count at 1 M.)
        if (d.unique) return sql`SELECT count(*) AS n FROM ${d.from} WHERE ${d.where} AND ${and(rest)}`;
        return sql`SELECT count(*) AS n FROM (SELECT DISTINCT ${d.id} FROM ${d.from} WHERE ${d.where} AND ${and(rest)}) x`;
      }
    }
    return sql`SELECT count(*) AS n FROM resource r WHERE ${where}`;
  }

  /** System- and type-level `$meta`: the profiles, tags and security labels in use on `types` (meta-summary.ts). */
  metaSummary(types: readonly string[]): Promise<Meta> {
    return metaSummary(this.db, types.filter((t) => !this.ownTypes.has(t)));
  }

  /** EXPLAIN (ANALYZE) of the first page segment and the count query, for plan checks. */
  async explain(input: SearchInput, analyze = true): Promise<{ page: string; count: string }> {
    await this.terminology.prepare?.([...input.params, ...filterTerminologyPairs(input.params)]);
    const { req, page, count } = this.compilePage({ ...input, accessFilter: this.resolveAccess(input.accessFilter, input.baseUrl) });
    const opts = sql.raw(analyze ? '(ANALYZE, BUFFERS, COSTS OFF)' : '(COSTS OFF)');
    const text = async (q: Cond) =>
      (await sql<Record<string, string>>`EXPLAIN ${opts} ${q}`.execute(this.db)).rows.map((r) => Object.values(r)[0]).join('\n');
    return { page: await text(page(req.count + 1)), count: await text(count) };
  }

  async search(input: SearchInput): Promise<Bundle> {
    input = { ...input, accessFilter: this.resolveAccess(input.accessFilter, input.baseUrl) };
    // Value set expansions named by `:in` / `:not-in` exist before the statement uses them.
    await this.terminology.prepare?.([...input.params, ...filterTerminologyPairs(input.params)]);
    const own = input.resourceType ? this.ownTypes.get(input.resourceType) : undefined;
    if (own) return own.search(this.parse(input), input);
    const { req, where, plan, cursor, reverse, page, count } = this.compilePage(input);
    this.requireBackfilled(req);
    const db = this.db;
    const summaryCount = req.summary === 'count' || req.count === 0;

    const totalMode = req.total ?? (cursor ? 'none' : 'accurate');
    // The count, started once: beside a slow page, or after the page when the page did not hold
    // every match. Page and count are separate statements either way (no shared snapshot).
    let counting: Promise<number> | undefined;
    const countMatches = () => (counting ??= count.execute(db).then((r) => Number(r.rows[0]!.n)));
    let rows: Row[] = [];
    let hasMoreForward = false;
    let hasMoreBackward = false;
    if (!summaryCount) {
      // A page that is still running after a few ms walks many rows (a common word, a phrase and
      // another filter): its count, needed unless the page turns out to hold every match, runs
      // on a second connection meanwhile, so the answer waits for the slower of the two, not for
      // both (phrase + status at 1 M resources: page ~60 ms, count ~50 ms).
      const early = totalMode === 'accurate' && this.countBesidePageAfterMs !== undefined ? setTimeout(() => void countMatches().catch(() => undefined), this.countBesidePageAfterMs) : undefined;
      try {
        rows = (await page(req.count + 1).execute(db)).rows;
      } finally {
        clearTimeout(early);
      }
      const more = rows.length > req.count;
      if (more) rows = rows.slice(0, req.count);
      if (reverse) {
        rows.reverse();
        hasMoreBackward = more;
        hasMoreForward = true;
      } else {
        hasMoreForward = more;
        hasMoreBackward = cursor !== undefined;
      }
    }

    let total: number | undefined;
    if (totalMode === 'accurate' && !summaryCount && !cursor && !hasMoreForward) {
      // The first page holds every match: no count query needed (one started beside it is left
      // to finish on its own).
      total = rows.length;
    } else if (summaryCount || totalMode === 'accurate') {
      total = await countMatches();
    } else if (totalMode === 'estimate') {
      const r = await sql<{ 'QUERY PLAN': unknown }>`EXPLAIN (FORMAT JSON) SELECT 1 FROM resource r WHERE ${where}`.execute(db);
      const plan0 = r.rows[0]?.['QUERY PLAN'];
      const parsed = (typeof plan0 === 'string' ? JSON.parse(plan0) : plan0) as Array<{ Plan: { 'Plan Rows': number } }>;
      total = parsed?.[0]?.Plan?.['Plan Rows'];
    }

    const matches = rows.map(contentOf);
    const included = summaryCount ? [] : await this.includes(req, matches, input.accessFilter);

    const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset' };
    if (total !== undefined) bundle.total = total;
    bundle.link = this.links(input, req, rows, plan.keys.length, hasMoreForward, hasMoreBackward);
    const entries: BundleEntry[] = [];
    for (const r of matches) entries.push({ fullUrl: `${input.baseUrl}/${r.resourceType}/${r.id}`, resource: this.shape(r, req) as FhirResource, search: { mode: 'match' } });
    for (const r of included) entries.push({ fullUrl: `${input.baseUrl}/${r.resourceType}/${r.id}`, resource: this.shape(r, req) as FhirResource, search: { mode: 'include' } });
    if (req.unknown.length) {
      const oo: OperationOutcome = {
        resourceType: 'OperationOutcome',
        issue: req.unknown.map((name) => ({
          severity: 'warning',
          code: 'not-supported',
          diagnostics: `Search parameter '${name}' is not known and was ignored`,
          expression: [name],
        })),
      };
      entries.push({ resource: oo, search: { mode: 'outcome' } });
    }
    if (entries.length) bundle.entry = entries;
    return bundle;
  }

  /**
   * Ids of current resources matching `query` (`identifier=sys|val&…`, as in If-None-Exist),
   * at most `limit`, run on `executor` (the caller's transaction) when given. Unknown
   * parameters are refused: a conditional write must never match more than the client meant.
   */
  async findIds(resourceType: string, query: string, opts: { limit: number; executor?: AnyDb }): Promise<string[]> {
    const params = [...new URLSearchParams(query.startsWith('?') ? query.slice(1) : query)] as [string, string][];
    if (params.length === 0) throw errors.incorrect('A conditional request needs search parameters');
    const req = parseSearch(this.registry, params, { resourceType, strict: true });
    const compiler = new FilterCompiler(this.terminology, new Aliases(), undefined);
    const where = this.whereClause(req, compiler, { resourceType });
    const limit = Math.max(1, Math.min(opts.limit, 1000));
    const r = await sql<{ id: string }>`SELECT r.id FROM resource r WHERE ${where} ORDER BY r.id LIMIT ${limit}`.execute(opts.executor ?? this.db);
    return r.rows.map((x) => x.id);
  }

  /**
   * The filters on `target`: a `resource` row (alias r, checked not deleted), or an index row
   * (hub mode: a row of the type's own index tables is proof the resource is current).
   * `override` may compile a filter differently (undefined: the usual way).
   */
  private whereClause(
    req: SearchRequest,
    compiler: FilterCompiler,
    input: Pick<SearchInput, 'compartment' | 'accessFilter' | 'resourceType'>,
    opts: { target?: Target; override?: (f: Filter) => Cond | undefined } = {},
  ): Cond {
    const target: Target = opts.target ?? { type: col('r', 'resource_type'), id: col('r', 'id'), resourceAlias: 'r' };
    const conds: Cond[] = [];
    const single = req.types.length === 1 ? req.types[0]! : undefined;
    if (single) conds.push(sql`${target.type} = ${single}`);
    else if (req.types.length > 1) conds.push(sql`${target.type} = ANY(${req.types}::text[])`);
    if (target.resourceAlias) conds.push(sql`${col(target.resourceAlias, 'deleted')} = false`);
    if (input.compartment) conds.push(compartmentCondition(input.compartment, req.types, single, target));
    const types = setTypes(req);
    for (const f of req.filters) {
      const o = opts.override?.(f);
      if (o) {
        conds.push(o);
        continue;
      }
      // Positive filters as id sets (`id IN (…)`): the planner may drive from the smallest.
      const s = compiler.idSource(f, types);
      conds.push(s ? inSource(target, s) : compiler.compile(f, target));
      // `_id` over every type: name the types too, so the (type, id) indexes can be used.
      if (req.types.length === 0 && f.kind === 'param' && 'special' in f.param && f.param.code === '_id' && f.modifier === undefined && f.values[0]?.kind !== 'missing') {
        conds.push(sql`${target.type} = ANY(${[...types]}::text[])`);
      }
    }
    conds.push(mainAccessCondition(input.accessFilter, single, target, compiler));
    return and(conds);
  }

  private async includes(req: SearchRequest, matches: Resource[], accessFilter: AccessFilter | undefined): Promise<Resource[]> {
    if (matches.length === 0 || (req.includes.length === 0 && req.revincludes.length === 0)) return [];
    const seen = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
    const out: Resource[] = [];
    let current = matches;
    for (let depth = 0; depth <= MAX_ITERATE_DEPTH && current.length; depth++) {
      const specs = depth === 0 ? { inc: req.includes, rev: req.revincludes } : { inc: req.includes.filter((s) => s.iterate), rev: req.revincludes.filter((s) => s.iterate) };
      if (!specs.inc.length && !specs.rev.length) break;
      const next: Resource[] = [];
      for (const spec of specs.inc) for (const r of await this.includePath(spec, current, false, accessFilter)) addNew(r);
      for (const spec of specs.rev) for (const r of await this.includePath(spec, current, true, accessFilter)) addNew(r);
      current = next;
      function addNew(r: Resource) {
        const key = `${r.resourceType}/${r.id}`;
        if (seen.has(key)) return;
        seen.add(key);
        out.push(r);
        next.push(r);
      }
    }
    return out;
  }

  /** ONE query for one include path over a whole page (never a query per resource). */
  private async includePath(spec: IncludeSpec, from: Resource[], rev: boolean, accessFilter: AccessFilter | undefined): Promise<Resource[]> {
    const source = spec.sourceType === '*' ? undefined : spec.sourceType;
    const own = rev && source ? this.ownTypes.get(source) : undefined;
    if (own) return own.revinclude(spec, from, accessFilter);
    const resources = rev ? from : from.filter((r) => !source || r.resourceType === source);
    if (resources.length === 0) return [];
    const types = resources.map((r) => r.resourceType);
    const ids = resources.map((r) => r.id!);
    const conds: Cond[] = [sql`x.deleted = false`];
    const refConds: Cond[] = [];
    if (source) refConds.push(sql`f.resource_type = ${source}`);
    if (spec.param) refConds.push(sql`f.param = ${spec.param}`);
    if (spec.targetType) refConds.push(sql`f.target_type = ${spec.targetType}`);
    const target: Target = { type: col('x', 'resource_type'), id: col('x', 'id'), resourceAlias: 'x' };
    conds.push(accessCondition(accessFilter, target, new FilterCompiler(this.terminology, new Aliases(), accessFilter)));
    const pairs = sql`(SELECT * FROM unnest(${types}::text[], ${ids}::text[]))`;
    // The reference rows pick (type, id) pairs as a semi-join: no DISTINCT over content.
    const q = rev
      ? sql<Row>`SELECT x.resource_type, x.id, x.content FROM resource x
          WHERE (x.resource_type, x.id) IN (SELECT f.resource_type, f.resource_id FROM search_reference f
            WHERE (f.target_id, f.target_type) IN (SELECT p.id, p.t FROM ${pairs} AS p(t, id)) AND ${and(refConds)})
            AND ${and(conds)}
          ORDER BY x.resource_type, x.id LIMIT ${MAX_INCLUDES_PER_PATH}`
      : sql<Row>`SELECT x.resource_type, x.id, x.content FROM resource x
          WHERE (x.resource_type, x.id) IN (SELECT f.target_type, f.target_id FROM search_reference f
            WHERE (f.resource_type, f.resource_id) IN ${pairs} AND f.target_id IS NOT NULL AND ${and(refConds)})
            AND ${and(conds)}
          ORDER BY x.resource_type, x.id LIMIT ${MAX_INCLUDES_PER_PATH}`;
    return (await q.execute(this.db)).rows.map(contentOf);
  }

  private shape(r: Resource, req: SearchRequest): Resource {
    let out = r;
    if (req.summary && req.summary !== 'false' && req.summary !== 'count') out = applySummary(out, req.summary);
    if (req.elements?.length) out = applyElements(out, req.elements);
    return out;
  }

  private links(input: SearchInput, req: SearchRequest, rows: Row[], keyCount: number, more: boolean, before: boolean): BundleLink[] {
    const path = input.compartment
      ? `${input.baseUrl}/${input.compartment.type}/${input.compartment.id}/${input.resourceType ?? '*'}`
      : input.resourceType
        ? `${input.baseUrl}/${input.resourceType}`
        : input.baseUrl;
    const qs = (extra: Array<[string, string]>) => {
      const p = new URLSearchParams([...req.canonical, ...extra]).toString();
      return p ? `${path}?${p}` : path;
    };
    const keysOf = (row: Row) => Array.from({ length: keyCount }, (_, i) => row[`k${i}`] ?? null);
    const links: BundleLink[] = [{ relation: 'self', url: qs(req.cursor ? [['_cursor', req.cursor]] : []) }];
    if (more && rows.length) links.push({ relation: 'next', url: qs([['_cursor', encodeCursor({ k: keysOf(rows[rows.length - 1]!), d: 'n' })]]) });
    if (before && rows.length) links.push({ relation: 'previous', url: qs([['_cursor', encodeCursor({ k: keysOf(rows[0]!), d: 'p' })]]) });
    return links;
  }
}
