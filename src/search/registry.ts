import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Bundle, FhirResource, SearchParameter } from 'fhir/r4.js';
import { loadR4Bundle } from '../fhir/definitions/load.js';
import { errors } from '../fhir/errors.js';
import { compileExpression, type CompiledExpression } from './expression.js';
import { isResourceType } from './fhir-model.js';

export type SearchParamType = SearchParameter['type'];

/** Lifecycle of a parameter: `pending-reindex` params are indexed on write but refused in search. */
export type SearchParamStatus = 'ready' | 'pending-reindex';

export interface CompiledComponent {
  readonly definition: string;
  /** Type of the component's own SearchParameter (token, quantity, date, …). */
  readonly type: SearchParamType;
  readonly accessor: CompiledExpression;
}

/** A SearchParameter as it applies to ONE resource type (shared expressions are split per type). */
export interface CompiledSearchParam {
  readonly code: string;
  readonly type: SearchParamType;
  readonly url: string;
  readonly resourceType: string;
  /** The part of the expression that applies to `resourceType` (undefined: not indexable). */
  readonly expression: string | undefined;
  readonly accessor: CompiledExpression | undefined;
  readonly target: readonly string[];
  readonly components: readonly CompiledComponent[];
  readonly definition: SearchParameter;
  readonly status: SearchParamStatus;
  /**
   * Set when this parameter keeps no index rows of its own: its expression (for this type) is
   * exactly the union of these other parameters' expressions, with the same type (and the same
   * components), so its rows would repeat theirs (Observation `combo-code` = `code` ∪
   * `component-code`, Patient `phonetic` = `name`). Searches read the rows of these codes
   * (`indexCodes`). Derived from the definitions at start-up (see `derivedParams`).
   */
  readonly storedAs?: readonly string[];
}

/** The `param` values of the index rows a parameter's search reads. */
export function indexCodes(p: CompiledSearchParam): readonly string[] {
  return p.storedAs ?? [p.code];
}

/**
 * Parameter types whose rows may be shared. References are not: compartments, `_include`,
 * chains and `_has` name reference parameters by code in SQL of their own.
 */
const SHAREABLE_TYPES = new Set<SearchParamType>(['token', 'string', 'date', 'number', 'quantity', 'uri', 'composite']);

/** Normalised terms of an expression (top-level `|` union), for comparing definitions. */
function termsOf(expression: string): string[] {
  return [...new Set(splitUnion(expression).map((t) => t.replace(/\s+/g, ' ').trim()))];
}

/**
 * Which parameters of one type need no rows of their own: those whose expression terms are
 * exactly covered by other stored parameters' terms, same type, same components (composites:
 * component types and expressions). A parameter is derived only from parameters with fewer
 * terms, or the same terms and a smaller code (identical pairs keep one), so there are no
 * cycles. Only definitions loaded at start-up take part (`eligible`): a parameter added at run
 * time is indexed as itself, and what was stored does not change while the server runs.
 */
function derivedParams(params: readonly CompiledSearchParam[], eligible: (p: CompiledSearchParam) => boolean, componentKey: (p: CompiledSearchParam) => string): Map<string, string[]> {
  type Candidate = { p: CompiledSearchParam; terms: string[]; key: string };
  const candidates: Candidate[] = [];
  for (const p of params) {
    if (!p.expression || !p.accessor || !SHAREABLE_TYPES.has(p.type) || p.status !== 'ready' || !eligible(p)) continue;
    candidates.push({ p, terms: termsOf(p.expression), key: `${p.type}|${componentKey(p)}` });
  }
  // Fewer terms first: the sources of a union are decided before the union itself.
  candidates.sort((x, y) => x.terms.length - y.terms.length || (x.p.code < y.p.code ? -1 : x.p.code > y.p.code ? 1 : 0));
  const derived = new Map<string, string[]>();
  const stored: Candidate[] = [];
  for (const c of candidates) {
    const mine = new Set(c.terms);
    const sources = stored.filter((s) => s.key === c.key && s.terms.every((t) => mine.has(t)));
    const covered = new Set(sources.flatMap((s) => s.terms));
    if (sources.length > 0 && c.terms.every((t) => covered.has(t))) derived.set(c.p.code, sources.map((s) => s.p.code));
    else stored.push(c);
  }
  return derived;
}

export interface RegistryOptions {
  /** Folder with our own SearchParameter / Bundle JSON files; default `<cwd>/search-params`. */
  searchParamsDir?: string;
  /** Extra official packs to switch on, e.g. `['uscore']` for `search-parameters-uscore.json`. */
  packs?: readonly string[];
  /**
   * Parameters a type is deliberately not indexed for (type → codes): unknown to search, the
   * indexer and the CapabilityStatement, so a search on one is refused or ignored as unknown
   * rather than silently matching nothing. The audit trail uses it (src/audit/audit-search.ts).
   */
  unindexed?: Readonly<Record<string, readonly string[]>>;
  /**
   * Text search configuration of `_content` / `_text` (FHIR_TEXT_SEARCH_LANGUAGE, e.g. english,
   * german, simple): the indexer stems with it and searches parse queries with it.
   */
  textSearchLanguage?: string;
}

/** Params that are not stored in index tables: they are answered from `resource` columns. */
const resourceColumnParams = new Set(['_id', '_lastUpdated']);

/** Splits `A.x | (B.y as T) | name` at top-level `|`. */
export function splitUnion(expression: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let inString = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === "'") inString = !inString;
    if (inString) continue;
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) {
      parts.push(expression.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expression.slice(start).trim());
  return parts.filter((p) => p.length > 0);
}

function leadingName(term: string): string | undefined {
  return /^[\s(]*([A-Za-z_]+)/.exec(term)?.[1];
}

/** The terms of an expression that apply to `resourceType`. */
export function expressionForType(expression: string, resourceType: string, bases: readonly string[]): string | undefined {
  const terms = splitUnion(expression).filter((t) => {
    const lead = leadingName(t);
    if (lead === resourceType) return true;
    if (lead === 'Resource' || lead === 'DomainResource') return true;
    // A term that does not start with one of the bases (e.g. `name.alias`) applies to all bases.
    return lead === undefined || !bases.includes(lead);
  });
  return terms.length ? terms.join(' | ') : undefined;
}

function isSearchParameter(r: unknown): r is SearchParameter {
  return typeof r === 'object' && r !== null && (r as { resourceType?: unknown }).resourceType === 'SearchParameter';
}

function paramsFromJson(json: unknown): SearchParameter[] {
  if (isSearchParameter(json)) return [json];
  const bundle = json as Bundle<FhirResource>;
  if (bundle && bundle.resourceType === 'Bundle') {
    return (bundle.entry ?? []).map((e) => e.resource).filter(isSearchParameter);
  }
  return [];
}

/**
 * All search parameters the server knows: the official R4 ones, the optional packs, our own
 * `search-params/` folder and those added at run time. Compiled accessors are built lazily per
 * (type) and cached; definition data is immutable so caching is safe.
 */
export class SearchParameterRegistry {
  private readonly byUrl = new Map<string, SearchParameter>();
  private readonly status = new Map<string, SearchParamStatus>();
  /** resourceType (or Resource/DomainResource) → code → url */
  private readonly byBase = new Map<string, Map<string, string>>();
  private readonly compiled = new Map<string, { map: Map<string, CompiledSearchParam>; list: CompiledSearchParam[] }>();
  private readonly expressionCache = new Map<string, CompiledExpression>();
  /** Definitions loaded at start-up, as loaded (run-time additions and replacements are not). */
  private readonly startup = new Map<string, SearchParameter>();
  private version = 0;
  private readonly unindexed: ReadonlyMap<string, ReadonlySet<string>>;
  /** Text search configuration of the full-text parameters (RegistryOptions.textSearchLanguage). */
  readonly textSearchLanguage: string;

  constructor(options: RegistryOptions = {}) {
    this.unindexed = new Map(Object.entries(options.unindexed ?? {}).map(([type, codes]) => [type, new Set(codes)]));
    this.textSearchLanguage = options.textSearchLanguage ?? 'english';
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(this.textSearchLanguage)) throw new Error(`text search language '${this.textSearchLanguage}' is not a configuration name`);
    for (const sp of paramsFromJson(loadR4Bundle('search-parameters.json'))) this.register(sp, 'ready');
    for (const pack of options.packs ?? []) {
      for (const sp of paramsFromJson(loadR4Bundle(`search-parameters-${pack}.json`))) this.register(sp, 'ready');
    }
    const dir = options.searchParamsDir ?? resolve(process.cwd(), 'search-params');
    if (existsSync(dir)) {
      for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
        for (const sp of paramsFromJson(JSON.parse(readFileSync(join(dir, f), 'utf8')))) this.register(sp, 'ready');
      }
    }
    for (const [url, sp] of this.byUrl) this.startup.set(url, sp);
  }

  /** Monotonic counter bumped on every change; callers can use it to invalidate caches. */
  get generation(): number {
    return this.version;
  }

  /**
   * Adds (or replaces) a SearchParameter at run time. It is indexed on every write from now on,
   * but searches using it are refused until `markReady` is called after a reindex
   * (see `reindex.ts`), because existing resources have no rows for it yet.
   */
  add(sp: SearchParameter, options: { ready?: boolean } = {}): void {
    this.check(sp);
    this.register(sp, options.ready ? 'ready' : 'pending-reindex');
  }

  /** Throws when `sp` could not be used: missing code/type/base, or an expression that does not compile. */
  check(sp: SearchParameter): void {
    if (!sp.code || !sp.type || !sp.base?.length) throw errors.incorrect('SearchParameter needs code, type and base');
    if (sp.expression) {
      for (const base of sp.base) {
        const e = expressionForType(sp.expression, base, sp.base);
        if (e) this.compile(e); // throws early on an expression neither path can compile
      }
    }
  }

  markReady(url: string): void {
    if (this.byUrl.has(url)) {
      this.status.set(url, 'ready');
      this.invalidate();
    }
  }

  /** Resource types whose rows must be rebuilt for a parameter (its bases, expanded). */
  typesFor(url: string): string[] {
    const sp = this.byUrl.get(url);
    if (!sp) return [];
    if (sp.base.some((b) => b === 'Resource' || b === 'DomainResource')) return ['*'];
    return [...sp.base];
  }

  getByUrl(url: string): SearchParameter | undefined {
    return this.byUrl.get(url);
  }

  private register(sp: SearchParameter, status: SearchParamStatus): void {
    const url = sp.url ?? `urn:local:SearchParameter/${sp.base.join('-')}-${sp.code}`;
    const previous = this.byUrl.get(url);
    if (previous) {
      for (const b of previous.base) this.byBase.get(b)?.delete(previous.code);
    }
    this.byUrl.set(url, sp);
    this.status.set(url, status);
    for (const b of sp.base) {
      let m = this.byBase.get(b);
      if (!m) this.byBase.set(b, (m = new Map()));
      m.set(sp.code, url);
    }
    this.invalidate();
  }

  private invalidate(): void {
    this.compiled.clear();
    this.version++;
  }

  private compile(expression: string): CompiledExpression {
    let c = this.expressionCache.get(expression);
    if (!c) {
      c = compileExpression(expression);
      this.expressionCache.set(expression, c);
    }
    return c;
  }

  private build(resourceType: string): Map<string, CompiledSearchParam> {
    const out = new Map<string, CompiledSearchParam>();
    const left = this.unindexed.get(resourceType);
    for (const base of ['Resource', 'DomainResource', resourceType]) {
      if (base === 'DomainResource' && (resourceType === 'Bundle' || resourceType === 'Binary' || resourceType === 'Parameters')) continue;
      for (const url of this.byBase.get(base)?.values() ?? []) {
        const sp = this.byUrl.get(url)!;
        if (left?.has(sp.code)) continue;
        const expression =
          sp.expression && !resourceColumnParams.has(sp.code)
            ? expressionForType(sp.expression, base === resourceType ? resourceType : base, sp.base)
            : undefined;
        const components: CompiledComponent[] = [];
        for (const c of sp.component ?? []) {
          const def = this.byUrl.get(c.definition);
          if (def && c.expression) components.push({ definition: c.definition, type: def.type, accessor: this.compile(c.expression) });
        }
        out.set(sp.code, {
          code: sp.code,
          type: sp.type,
          url,
          resourceType,
          expression,
          accessor: expression ? this.compile(expression) : undefined,
          target: sp.target ?? [],
          components,
          definition: sp,
          status: this.status.get(url) ?? 'ready',
        });
      }
    }
    const derived = derivedParams(
      [...out.values()],
      (p) => this.startup.get(p.url) === p.definition,
      (p) => (p.definition.component ?? []).map((c) => `${this.byUrl.get(c.definition)?.type ?? '?'}:${c.expression ?? ''}`).join(';'),
    );
    for (const [code, sources] of derived) out.set(code, { ...out.get(code)!, storedAs: sources });
    return out;
  }

  private entry(resourceType: string): { map: Map<string, CompiledSearchParam>; list: CompiledSearchParam[] } {
    let e = this.compiled.get(resourceType);
    if (!e) {
      const map = this.build(resourceType);
      e = { map, list: [...map.values()] };
      this.compiled.set(resourceType, e);
    }
    return e;
  }

  private table(resourceType: string): Map<string, CompiledSearchParam> {
    return this.entry(resourceType).map;
  }

  /** Compiled params of a resource type, including the Resource/DomainResource ones (cached; do not mutate). */
  forType(resourceType: string): readonly CompiledSearchParam[] {
    return this.entry(resourceType).list;
  }

  get(resourceType: string, code: string): CompiledSearchParam | undefined {
    return this.table(resourceType).get(code);
  }

  /** Like `get` but refuses unknown and not-yet-reindexed params with a 400. */
  require(resourceType: string, code: string): CompiledSearchParam {
    const p = this.get(resourceType, code);
    if (!p) throw errors.incorrect(`Unknown search parameter '${code}' for resource type ${resourceType}`, [code]);
    if (p.status === 'pending-reindex') {
      throw errors.incorrect(
        `Search parameter '${code}' (${p.url}) was added recently and its reindex is not finished yet; it cannot be used until then`,
        [code],
      );
    }
    return p;
  }

  /** Whether some resource type (or Resource itself) has a parameter `code`. */
  isKnownCode(code: string): boolean {
    for (const m of this.byBase.values()) if (m.has(code)) return true;
    return false;
  }

  isKnownResourceType(type: string): boolean {
    return isResourceType(type);
  }
}
