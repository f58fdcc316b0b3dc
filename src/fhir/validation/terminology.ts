import type { CodeSystem, CodeSystemConcept, ValueSet, ValueSetComposeInclude } from 'fhir/r4.js';
import { loadR4Bundle } from '../definitions/load.js';

/**
 * Local expansion of the value sets shipped with the spec, for `required` bindings.
 *
 * Only what can be expanded exactly from the shipped CodeSystems is expanded: enumerated concepts,
 * whole complete code systems, nested is-a hierarchies and included value sets. Anything else
 * (external systems such as SNOMED CT, LOINC, UCUM, BCP-47; property filters; fragments) makes
 * the value set "unknown", and unknown value sets are not enforced: rejecting a valid code would be
 * worse than accepting one we cannot check.
 */
export interface Expansion {
  /** system → codes */
  readonly bySystem: ReadonlyMap<string, ReadonlySet<string>>;
  /** every code, whatever the system (for `code` elements, whose system is implicit) */
  readonly codes: ReadonlySet<string>;
}

type Codes = Map<string, Set<string>>;

/** Canonical URL without its `|version` suffix. */
export function stripVersion(url: string): string {
  const bar = url.indexOf('|');
  return bar < 0 ? url : url.slice(0, bar);
}

export class Terminology {
  private readonly valueSets = new Map<string, ValueSet>();
  private readonly codeSystems = new Map<string, CodeSystem>();
  /** null = cannot be expanded locally */
  private readonly expansions = new Map<string, Expansion | null>();
  private readonly inProgress = new Set<string>();

  constructor(resources: Iterable<ValueSet | CodeSystem>) {
    for (const r of resources) {
      if (!r.url) continue;
      if (r.resourceType === 'ValueSet') this.valueSets.set(r.url, r);
      else this.codeSystems.set(r.url, r);
    }
  }

  /** The expansion of a value set, or undefined when it cannot be expanded locally. */
  expand(valueSetUrl: string): Expansion | undefined {
    const url = stripVersion(valueSetUrl);
    let result = this.expansions.get(url);
    if (result === undefined) {
      if (this.inProgress.has(url)) return undefined; // a cycle: give up on this branch
      this.inProgress.add(url);
      try {
        const codes = this.computeValueSet(url);
        result = codes ? toExpansion(codes) : null;
      } finally {
        this.inProgress.delete(url);
      }
      this.expansions.set(url, result);
    }
    return result ?? undefined;
  }

  private computeValueSet(url: string): Codes | undefined {
    const vs = this.valueSets.get(url);
    if (!vs) {
      // A code system may declare its implicit "all codes" value set.
      for (const cs of this.codeSystems.values()) {
        if (cs.valueSet && stripVersion(cs.valueSet) === url) return this.includeSystem({ system: cs.url });
      }
      return undefined;
    }
    if (!vs.compose) {
      const exp = vs.expansion;
      if (!exp?.contains || (exp.total !== undefined && exp.total > exp.contains.length)) return undefined;
      const out: Codes = new Map();
      const walk = (list: NonNullable<NonNullable<ValueSet['expansion']>['contains']>): void => {
        for (const c of list) {
          if (c.system && c.code) add(out, c.system, c.code);
          if (c.contains) walk(c.contains);
        }
      };
      walk(exp.contains);
      return out;
    }
    let out: Codes = new Map();
    for (const inc of vs.compose.include) {
      const codes = this.include(inc);
      if (!codes) return undefined;
      for (const [system, set] of codes) for (const c of set) add(out, system, c);
    }
    for (const exc of vs.compose.exclude ?? []) {
      const codes = this.include(exc);
      if (!codes) return undefined;
      out = subtract(out, codes);
    }
    return out;
  }

  private include(inc: ValueSetComposeInclude): Codes | undefined {
    let result: Codes | undefined;
    if (inc.system) {
      result = this.includeSystem(inc);
      if (!result) return undefined;
    }
    for (const ref of inc.valueSet ?? []) {
      const exp = this.expand(ref);
      if (!exp) return undefined;
      // Several sources in one include are intersected.
      result = result ? intersect(result, exp.bySystem) : copy(exp.bySystem);
    }
    return result;
  }

  private includeSystem(inc: ValueSetComposeInclude): Codes | undefined {
    const system = inc.system as string;
    if (inc.concept) {
      if (inc.filter?.length) return undefined;
      return new Map([[system, new Set(inc.concept.map((c) => c.code))]]);
    }
    const cs = this.codeSystems.get(system);
    if (!cs || cs.content !== 'complete' || !cs.concept) return undefined;
    let codes: Set<string> | undefined;
    for (const f of inc.filter ?? []) {
      if (f.property !== 'concept') return undefined;
      const selected = this.filterConcepts(cs.concept, f.op, f.value);
      if (!selected) return undefined;
      codes = codes ? new Set([...codes].filter((c) => selected.has(c))) : selected;
    }
    return new Map([[system, codes ?? allCodes(cs.concept)]]);
  }

  private filterConcepts(concepts: CodeSystemConcept[], op: string, value: string): Set<string> | undefined {
    const root = findConcept(concepts, value);
    if (!root) return undefined;
    const below = allCodes(root.concept ?? []);
    switch (op) {
      case 'is-a':
        return below.add(root.code);
      case 'descendent-of':
        return below;
      case 'is-not-a': {
        const all = allCodes(concepts);
        below.add(root.code);
        return new Set([...all].filter((c) => !below.has(c)));
      }
      default:
        return undefined;
    }
  }
}

function add(out: Codes, system: string, code: string): void {
  let set = out.get(system);
  if (!set) out.set(system, (set = new Set()));
  set.add(code);
}

function copy(src: ReadonlyMap<string, ReadonlySet<string>>): Codes {
  return new Map([...src].map(([k, v]) => [k, new Set(v)]));
}

function intersect(a: Codes, b: ReadonlyMap<string, ReadonlySet<string>>): Codes {
  const out: Codes = new Map();
  for (const [system, set] of a) {
    const other = b.get(system);
    if (other) for (const c of set) if (other.has(c)) add(out, system, c);
  }
  return out;
}

function subtract(a: Codes, b: Codes): Codes {
  const out: Codes = new Map();
  for (const [system, set] of a) {
    const other = b.get(system);
    for (const c of set) if (!other?.has(c)) add(out, system, c);
  }
  return out;
}

function allCodes(concepts: CodeSystemConcept[], out = new Set<string>()): Set<string> {
  for (const c of concepts) {
    out.add(c.code);
    if (c.concept) allCodes(c.concept, out);
  }
  return out;
}

function findConcept(concepts: CodeSystemConcept[], code: string): CodeSystemConcept | undefined {
  for (const c of concepts) {
    if (c.code === code) return c;
    const found = c.concept && findConcept(c.concept, code);
    if (found) return found;
  }
  return undefined;
}

function toExpansion(codes: Codes): Expansion {
  const all = new Set<string>();
  for (const set of codes.values()) for (const c of set) all.add(c);
  return { bySystem: codes, codes: all };
}

let shared: Terminology | undefined;

/**
 * The terminology of the R4 spec (valuesets, v3 and v2 code systems). Immutable definition data,
 * so it is shared per process like `loadR4Bundle`; expansions are memoised inside it.
 */
export function r4Terminology(): Terminology {
  if (!shared) {
    const resources: (ValueSet | CodeSystem)[] = [];
    for (const file of ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json']) {
      for (const e of loadR4Bundle(file).entry ?? []) {
        const r = e.resource;
        if (r?.resourceType === 'ValueSet' || r?.resourceType === 'CodeSystem') resources.push(r);
      }
    }
    shared = new Terminology(resources);
  }
  return shared;
}
