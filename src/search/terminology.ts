import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Bundle, CodeSystem, CodeSystemConcept, FhirResource, ValueSet } from 'fhir/r4.js';
import { loadR4Bundle } from '../fhir/definitions/load.js';
import { errors } from '../fhir/errors.js';
import type { TokenValue } from './request.js';
import { codeSetCond, hierarchyCond } from './sql/token.js';
import type { Cond } from './sql/util.js';

/** An expanded value set: explicit (system, code) pairs plus whole code systems. */
export interface CodeSet {
  pairs: Array<[string, string]>;
  systems: string[];
}

const MAX_EXPANSION = 20_000;

/**
 * What search needs of terminology: token `:in` / `:not-in` and `:above` / `:below` as SQL
 * conditions on index row `alias`. The server uses the database-backed one
 * (src/terminology/service.ts); this in-memory one serves bare SearchServices (unit tests).
 */
export interface SearchTerminology {
  valueSetCond(alias: string, url: string): Cond;
  hierarchyCond(alias: string, v: TokenValue, direction: 'above' | 'below'): Cond;
  /** Runs before a search statement is compiled: the value sets and hierarchies it names made ready (unknown value set: 400). */
  prepare?(params: ReadonlyArray<[string, string]>): Promise<void>;
}

/**
 * Just enough terminology for search: `:in` / `:not-in` (value set expansion from the spec's
 * `valuesets.json` and our `terminology/` folder) and `:above` / `:below` (CodeSystem
 * hierarchies). Loaded lazily once; the data is immutable.
 */
export class Terminology implements SearchTerminology {
  private valueSets?: Map<string, ValueSet>;
  private codeSystems?: Map<string, CodeSystem>;
  private readonly expansions = new Map<string, CodeSet>();

  constructor(private readonly dir = resolve(process.cwd(), 'terminology')) {}

  private load(): void {
    if (this.valueSets) return;
    this.valueSets = new Map();
    this.codeSystems = new Map();
    const add = (r: FhirResource | undefined) => {
      if (!r) return;
      if (r.resourceType === 'ValueSet' && r.url) this.valueSets!.set(r.url, r);
      else if (r.resourceType === 'CodeSystem' && r.url) this.codeSystems!.set(r.url, r);
      else if (r.resourceType === 'Bundle') for (const e of r.entry ?? []) add(e.resource);
    };
    add(loadR4Bundle('valuesets.json'));
    if (existsSync(this.dir)) {
      for (const f of readdirSync(this.dir).filter((n) => n.endsWith('.json')).sort()) {
        add(JSON.parse(readFileSync(join(this.dir, f), 'utf8')) as Bundle<FhirResource>);
      }
    }
  }

  valueSetCond(alias: string, url: string): Cond {
    return codeSetCond(alias, this.expand(url));
  }

  hierarchyCond(alias: string, v: TokenValue, direction: 'above' | 'below'): Cond {
    return hierarchyCond(alias, this, v, direction);
  }

  /** Expands a value set by canonical url (`url|version` accepted, version ignored). */
  expand(url: string): CodeSet {
    this.load();
    const key = url.split('|', 1)[0]!;
    const cached = this.expansions.get(key);
    if (cached) return cached;
    const vs = this.valueSets!.get(key);
    if (!vs) throw errors.incorrect(`Unknown value set '${url.slice(0, 200)}'`);
    const out: CodeSet = { pairs: [], systems: [] };
    this.expandInto(vs, out, new Set([key]));
    this.expansions.set(key, out);
    return out;
  }

  private expandInto(vs: ValueSet, out: CodeSet, seen: Set<string>): void {
    if (vs.expansion?.contains) {
      for (const c of vs.expansion.contains) if (c.system && c.code) out.pairs.push([c.system, c.code]);
      return;
    }
    const excluded = new Set<string>();
    for (const ex of vs.compose?.exclude ?? []) for (const c of ex.concept ?? []) excluded.add(`${ex.system}|${c.code}`);
    for (const inc of vs.compose?.include ?? []) {
      for (const ref of inc.valueSet ?? []) {
        const k = ref.split('|', 1)[0]!;
        const child = this.valueSets!.get(k);
        if (child && !seen.has(k)) {
          seen.add(k);
          this.expandInto(child, out, seen);
        }
      }
      if (!inc.system) continue;
      if (inc.concept?.length) {
        for (const c of inc.concept) if (!excluded.has(`${inc.system}|${c.code}`)) out.pairs.push([inc.system, c.code]);
      } else if (inc.filter?.length) {
        for (const f of inc.filter) {
          if ((f.op === 'is-a' || f.op === 'descendent-of') && f.property === 'concept') {
            const codes = this.related(inc.system, f.value, 'below');
            for (const [s, c] of codes ?? [[inc.system, f.value] as [string, string]]) {
              if (f.op === 'descendent-of' && c === f.value) continue;
              if (!excluded.has(`${s}|${c}`)) out.pairs.push([s, c]);
            }
          } else if (f.op === '=' || f.op === 'in') {
            for (const v of f.value.split(',')) out.pairs.push([inc.system, v]);
          }
        }
      } else {
        const cs = this.codeSystems!.get(inc.system);
        if (cs?.concept && excluded.size === 0) {
          walk(cs.concept, (c) => out.pairs.push([inc.system!, c.code]));
        } else if (cs?.concept) {
          walk(cs.concept, (c) => {
            if (!excluded.has(`${inc.system}|${c.code}`)) out.pairs.push([inc.system!, c.code]);
          });
        } else {
          out.systems.push(inc.system); // a code system we do not hold: any code of it
        }
      }
      if (out.pairs.length > MAX_EXPANSION) throw errors.incorrect(`Value set '${vs.url}' is too large to expand for search`);
    }
  }

  /**
   * The code and its descendants (`below`) or ancestors (`above`) in the code system's
   * hierarchy; undefined when we do not hold the code system (callers fall back to equality).
   */
  related(system: string | undefined, code: string, direction: 'above' | 'below'): Array<[string, string]> | undefined {
    this.load();
    const systems = system ? [this.codeSystems!.get(system)].filter((c): c is CodeSystem => !!c) : [...this.codeSystems!.values()];
    for (const cs of systems) {
      const path: CodeSystemConcept[] = [];
      const found = findPath(cs.concept ?? [], code, path);
      if (!found) continue;
      if (direction === 'above') return path.map((c) => [cs.url!, c.code]);
      const out: Array<[string, string]> = [[cs.url!, found.code]];
      walk(found.concept ?? [], (c) => out.push([cs.url!, c.code]));
      return out;
    }
    return undefined;
  }
}

function walk(concepts: CodeSystemConcept[], fn: (c: CodeSystemConcept) => void): void {
  for (const c of concepts) {
    fn(c);
    if (c.concept) walk(c.concept, fn);
  }
}

function findPath(concepts: CodeSystemConcept[], code: string, path: CodeSystemConcept[]): CodeSystemConcept | undefined {
  for (const c of concepts) {
    path.push(c);
    if (c.code === code) return c;
    if (c.concept) {
      const f = findPath(c.concept, code, path);
      if (f) return f;
    }
    path.pop();
  }
  return undefined;
}
