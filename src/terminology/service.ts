import { randomUUID } from 'node:crypto';
import type { CodeSystem, ConceptMap, ValueSet, ValueSetCompose, ValueSetComposeInclude } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import type { TokenValue } from '../search/request.js';
import { closureCond, valueSetMemberCond } from '../search/sql/terminology.js';
import type { Cond } from '../search/sql/util.js';
import type { SearchTerminology } from '../search/terminology.js';
import { pgErrorCode } from '../storage/pg-errors.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import { TerminologyStore, UnsupportedFilter, type ComposePart, type StoredValueSet, type TermDb } from '../storage/terminology-store.js';
import { BuiltInTerminology } from './loader.js';
import { codeSystemData, conceptMapRows, stripVersion, valueSetRow } from './resources.js';

/** PostgreSQL: invalid regular expression (a compose `regex` filter). */
const INVALID_REGEX = '2201B';
/** Value sets importing value sets this deep are refused (a cycle, or a mistake). */
const MAX_IMPORT_DEPTH = 16;
/** Expansions at least this large ask the database maintenance for a check afterwards. */
const LARGE_EXPANSION = 10_000;

export function cannotExpand(url: string, why: string): FhirError {
  return new FhirError('incorrect', [{ severity: 'error', code: 'not-supported', diagnostics: `Value set '${url.slice(0, 200)}' cannot be expanded: ${why}` }]);
}

function composePart(p: ValueSetComposeInclude): ComposePart {
  return {
    ...(p.system ? { system: p.system } : {}),
    ...(p.concept?.length ? { concept: p.concept.map((c) => ({ code: c.code, ...(c.display ? { display: c.display } : {}) })) } : {}),
    ...(p.filter?.length ? { filter: p.filter.map((f) => ({ property: f.property, op: f.op, value: f.value })) } : {}),
    ...(p.valueSet?.length ? { valueSet: p.valueSet.map(stripVersion) } : {}),
  };
}

/** The code system (and is-a root) of an implicit value set URL, or undefined. */
export function implicitValueSet(url: string): { system: string; isA?: string } | undefined {
  if (url === 'http://loinc.org/vs') return { system: 'http://loinc.org' };
  const m = /^([^?#]+)\?fhir_vs(?:=isa\/([^&#]+))?$/.exec(url);
  if (!m) return undefined;
  return { system: m[1]!, ...(m[2] ? { isA: decodeURIComponent(m[2]) } : {}) };
}

/** `a\,b,c` → ['a,b', 'c'] (search value lists). */
function splitValues(v: string): string[] {
  return v.split(/(?<!\\),/).map((s) => s.replace(/\\([,|$\\])/g, '$1'));
}

/**
 * Terminology over the database: the official R4 code systems, value sets and concept maps and
 * ours (terminology/) loaded once into the terminology tables (in the background at start-up,
 * skipped when the same definitions are there already), stored CodeSystem / ValueSet /
 * ConceptMap resources indexed in the write transaction, value set expansions computed on
 * first use. Serves the FHIR terminology operations (operations.ts) and search's `:in` /
 * `:not-in` / `:below` / `:above`.
 */
export class TerminologyService implements SearchTerminology {
  readonly store: TerminologyStore;
  readonly builtIn: BuiltInTerminology;
  private loading?: Promise<void>;
  private readonly log: (message: string, error?: unknown) => void;

  private readonly afterBulkWrite: () => void;

  /** `afterBulkWrite`: asks the database maintenance for fresh statistics / VACUUM after a large expansion. */
  constructor(deps: { db: TermDb; bulkDb?: TermDb; localDir: string; log?: (message: string, error?: unknown) => void; afterBulkWrite?: () => void }) {
    this.store = new TerminologyStore(deps.db, deps.bulkDb);
    this.afterBulkWrite = deps.afterBulkWrite ?? (() => undefined);
    this.builtIn = new BuiltInTerminology(deps.localDir);
    this.log = deps.log ?? (() => undefined);
  }

  /**
   * Checks once per process that the built-in rows are those of this package and terminology/
   * (old ones are dropped); the definitions themselves are loaded one by one on first use.
   */
  start(): void {
    this.loading ??= this.builtIn.sync(this.store).catch((e: unknown) => this.log('terminology: checking the built-in definitions failed', e));
  }

  async ready(): Promise<void> {
    this.start();
    await this.loading;
  }

  /** Loads a built-in code system if the tables lack it (no-op for unknown URLs). */
  async ensureCodeSystem(url: string): Promise<void> {
    await this.ready();
    await this.builtIn.ensure(this.store, 'CodeSystem', url);
  }

  async ensureConceptMaps(url: string | undefined): Promise<void> {
    await this.ready();
    if (url) await this.builtIn.ensure(this.store, 'ConceptMap', url);
    else await this.builtIn.ensureAll(this.store, ['ConceptMap']);
  }

  /** Indexes CodeSystem / ValueSet / ConceptMap writes in the write's own transaction. */
  readonly beforeWrite: BeforeWriteHook = async (tx, change) => {
    const type = change.resourceType;
    if (type !== 'CodeSystem' && type !== 'ValueSet' && type !== 'ConceptMap') return;
    const ex = await tx.executor();
    await this.store.lock(ex, 'write');
    if (type === 'CodeSystem') {
      const removed = await this.store.deleteCodeSystemOf(ex, change.id);
      const data = change.resource ? codeSystemData(change.resource as CodeSystem, 'resource', change.id) : undefined;
      if (data) await this.store.putCodeSystem(ex, data);
      for (const url of removed) {
        const b = url === data?.row.url ? undefined : this.builtIn.get('CodeSystem', url);
        const back = b && codeSystemData(b.resource as CodeSystem, b.source);
        if (back) await this.store.putCodeSystem(ex, back);
      }
    } else if (type === 'ValueSet') {
      await this.store.deleteValueSetOf(ex, change.id);
      const row = change.resource ? valueSetRow(change.resource as ValueSet, 'resource', change.id) : undefined;
      if (row) await this.store.putValueSet(ex, row);
    } else {
      await this.store.deleteConceptMapOf(ex, change.id);
      const rows = change.resource ? conceptMapRows(change.resource as ConceptMap, 'resource', change.id) : undefined;
      if (rows) await this.store.putConceptMap(ex, rows.row, rows.elements);
    }
  };

  /**
   * The value set with its expansion in the tables (computed now if needed), or undefined when
   * no value set has this URL. Throws 400 when it cannot be expanded (unsupported filter, unknown import).
   */
  async expanded(url: string, chain: readonly string[] = []): Promise<StoredValueSet | undefined> {
    await this.ready();
    const key = stripVersion(url);
    let vs = await this.store.valueSet(key);
    if (!vs && (await this.builtIn.ensure(this.store, 'ValueSet', key))) vs = await this.store.valueSet(key);
    if (!vs && (await this.ensureImplicit(key))) vs = await this.store.valueSet(key);
    if (!vs) return undefined;
    if (vs.expanded) return vs;
    if (vs.error) throw cannotExpand(key, vs.error);
    if (chain.includes(key) || chain.length > MAX_IMPORT_DEPTH) throw cannotExpand(key, 'it imports itself');
    const compose = vs.compose as ValueSetCompose | null;
    const include = (compose?.include ?? []).map(composePart);
    const exclude = (compose?.exclude ?? []).map(composePart);
    try {
      for (const system of new Set([...include, ...exclude].flatMap((p) => (p.system ? [p.system] : [])))) await this.builtIn.ensure(this.store, 'CodeSystem', system);
      for (const imp of [...include, ...exclude].flatMap((p) => p.valueSet ?? [])) {
        if (!(await this.expanded(imp, [...chain, key]))) throw new UnsupportedFilter(`it imports the unknown value set '${imp}'`);
      }
      const written = await this.store.bulkDb.transaction().execute(async (trx) => {
        await this.store.lock(trx, 'write');
        const again = await this.store.valueSet(key, trx);
        if (!again || again.expanded) return 0;
        let rows = 0;
        if (compose) {
          const systems = [...include, ...exclude].flatMap((p) => (p.system ? [p.system] : []));
          rows = await this.store.writeExpansion(trx, key, include, exclude, await this.store.systemsWithConcepts(trx, systems));
          await this.store.analyzeIfLarge(trx, rows);
        } else {
          const listed = (vs.expansion ?? []) as NonNullable<NonNullable<ValueSet['expansion']>['contains']>;
          await this.store.writeListedExpansion(
            trx,
            key,
            listed.flatMap((c) => (c.system && c.code ? [{ system: c.system, code: c.code, ...(c.display ? { display: c.display } : {}) }] : [])),
          );
        }
        await this.store.markExpanded(trx, key);
        return rows;
      });
      // Index-only scans of the new rows need a VACUUM (the visibility map); autovacuum would take a while.
      if (written >= LARGE_EXPANSION) this.afterBulkWrite();
    } catch (e) {
      const why = e instanceof UnsupportedFilter ? e.message : pgErrorCode(e) === INVALID_REGEX ? `a regex filter is not a valid regular expression` : undefined;
      if (why === undefined) throw e;
      // Remembered until the value set or a code system it uses changes.
      await this.store.markExpanded(this.store.db, key, why);
      throw cannotExpand(key, why);
    }
    return (await this.store.valueSet(key)) ?? { ...vs, expanded: true };
  }

  /**
   * The implicit value sets of a code system the server holds (https://hl7.org/fhir/R4/snomedct.html#implicit,
   * loinc.html#implicit): `<system>?fhir_vs` (every code), `<system>?fhir_vs=isa/<code>` (the code and
   * its descendants), `http://loinc.org/vs` (all of LOINC). Made into a value set row on first use.
   */
  private async ensureImplicit(url: string): Promise<boolean> {
    const implicit = implicitValueSet(url);
    if (!implicit) return false;
    await this.ensureCodeSystem(implicit.system);
    if (!(await this.store.exists('CodeSystem', implicit.system))) return false;
    const row = valueSetRow({ resourceType: 'ValueSet', url, status: 'active', compose: { include: [implicit.isA ? { system: implicit.system, filter: [{ property: 'concept', op: 'is-a', value: implicit.isA }] } : { system: implicit.system }] } }, 'implicit');
    await this.store.bulkDb.transaction().execute(async (trx) => {
      await this.store.lock(trx, 'write');
      if (!(await this.store.exists('ValueSet', url, trx))) await this.store.insertValueSets(trx, [row!]);
    });
    return true;
  }

  /**
   * Runs `fn` on an inline ValueSet (the `valueSet` parameter of $expand / $validate-code): held
   * under a key of its own for the call, then removed with its expansion.
   */
  async withInlineValueSet<T>(resource: ValueSet, fn: (url: string) => Promise<T>): Promise<T> {
    await this.ready();
    const url = `urn:uuid:${randomUUID()}`;
    const row = valueSetRow({ ...resource, url }, 'implicit');
    await this.store.bulkDb.transaction().execute(async (trx) => {
      await this.store.lock(trx, 'write');
      await this.store.insertValueSets(trx, [row!]);
    });
    try {
      return await fn(url);
    } finally {
      await this.store.bulkDb.transaction().execute(async (trx) => {
        await this.store.lock(trx, 'write');
        await this.store.dropValueSet(trx, url);
      });
    }
  }

  // ---- search ----------------------------------------------------------------------------

  valueSetCond(alias: string, url: string): Cond {
    return valueSetMemberCond(alias, url);
  }

  hierarchyCond(alias: string, v: TokenValue, direction: 'above' | 'below'): Cond {
    return closureCond(alias, v, direction);
  }

  async prepare(params: ReadonlyArray<[string, string]>): Promise<void> {
    const urls: string[] = [];
    const systems = new Set<string>();
    let anySystem = false;
    for (const [key, value] of params) {
      const modifier = key.slice(key.lastIndexOf(':') + 1);
      if (modifier === 'in' || modifier === 'not-in') urls.push(...splitValues(value));
      else if (modifier === 'below' || modifier === 'above') {
        for (const v of splitValues(value)) {
          const bar = v.indexOf('|');
          if (bar > 0) systems.add(v.slice(0, bar));
          else if (bar < 0) anySystem = true;
        }
      }
    }
    if (urls.length === 0 && systems.size === 0 && !anySystem) return;
    await this.ready();
    // `:below=code` without a system looks in every code system.
    if (anySystem) await this.builtIn.ensureAll(this.store, ['CodeSystem']);
    for (const system of systems) await this.builtIn.ensure(this.store, 'CodeSystem', system);
    for (const url of new Set(urls)) {
      if (!url) continue;
      if (!(await this.expanded(url))) throw errors.incorrect(`Unknown value set '${url.slice(0, 200)}'`);
    }
  }

  /** Waits for the background load (before the database closes). */
  async idle(): Promise<void> {
    await this.loading;
  }
}
