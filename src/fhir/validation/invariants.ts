import type { ElementDefinitionConstraint, StructureDefinition } from 'fhir/r4.js';
import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4/index.js';
import type { Issue } from './issues.js';
import { isObject, type JsonObject } from './json.js';

/**
 * The invariants of the R4 base definitions (`ElementDefinition.constraint`: dom-2…dom-6,
 * obs-6, qty-3, per-1, bdl-1…bdl-12, …): FHIRPath expressions an instance must satisfy, read from
 * the StructureDefinitions themselves and evaluated with the `fhirpath` package, each compiled
 * once (on first use) with its element as the typed context.
 *
 * Left to the structure walker, which checks them faster by hand: ele-1 (no empty elements),
 * ext-1 (value or extensions), txt-1 (the narrative's XHTML, src/fhir/validation/narrative.ts).
 * An expression the `fhirpath` package cannot compile is left out; one it fails to evaluate on
 * an instance is not reported against that instance. `skipped()` lists both.
 */

const CHECKED_ELSEWHERE = new Set(['ele-1', 'ext-1', 'txt-1']);
/**
 * Checked by hand here, being the most frequent or the dearest as FHIRPath:
 * - dom-3 (contained resources are referenced) walks every descendant of the resource four times
 *   per contained resource: 1.6 ms per Synthea ExplanationOfBenefit, 43 % of all invariant time
 *   on the Synthea set.
 * - ref-1 (a local reference `#id` names a contained resource) is on every Reference: ~4 µs
 *   each, half of what remained. `#` alone (a contained resource referring to its container,
 *   which dom-3 allows) passes.
 * - bdl-7 (fullUrls distinct) is `isDistinct()` over every entry, quadratic in the package:
 *   69 ms for one 800-entry Synthea transaction Bundle, twice the rest of its validation.
 * - bdl-3 and bdl-4 (entries carry request / response by Bundle type) read `%resource.type`
 *   three times per entry, which the package makes dear: 43 and 52 ms for a 2,124-entry Bundle.
 */
const BY_HAND = new Set(['dom-3', 'ref-1', 'bdl-3', 'bdl-4', 'bdl-7']);
/** bdl-3 / bdl-4: the Bundle types whose entries all carry a request, a response (and none of the others do). */
const REQUEST_TYPES = new Set(['batch', 'transaction', 'history']);
const RESPONSE_TYPES = new Set(['batch-response', 'transaction-response', 'history']);

/**
 * Where the `fhirpath` package reads an R4 invariant otherwise than the specification's own
 * engine, the expression is rewritten to one meaning the same to the package:
 * - `descendants().as(canonical)` (dom-3): `as()` on a collection was a filter in the FHIRPath
 *   release R4 uses; the package requires a single item and throws. `ofType()` is that filter.
 * - `answer is Boolean` (que-7): a FHIR `boolean` is a `Boolean` to the specification's engine;
 *   the package types it `FHIR.boolean` only, so the test was false for every `answerBoolean`.
 * - `.trace(…)` is dropped (see below).
 */
const EVALUATOR_REWRITES: ReadonlyArray<[RegExp, string]> = [
  [/descendants\(\)\.as\(/g, 'descendants().ofType('],
  [/\bis Boolean\b/g, 'is FHIR.boolean'],
  // `trace()` returns its input unchanged; the package still copies what it traces (ref-1 traced
  // every contained id, dom-3 every unmatched resource) on each evaluation.
  [/\.trace\('[^']*'(?:,\s*[A-Za-z.]+)?\)/g, ''],
];

type Compiled = (part: unknown, env: Record<string, unknown>) => unknown[];

/**
 * An invariant split at its top-level `implies` or `or`, so it stops at the first operand that
 * decides it (FHIRPath's `or` is true once one side is true; `A implies B` is true once A is not
 * true): `reference.startsWith('#').not() or (… %rootResource.contained.id)` (ref-1, on every
 * Reference) mostly ends after its cheap first half.
 */
type Shape = { kind: 'or'; operands: Compiled[] } | { kind: 'implies'; antecedent: Compiled; consequent: Compiled } | { kind: 'whole'; run: Compiled };

interface Invariant {
  readonly key: string;
  readonly severity: 'error' | 'warning';
  readonly human: string;
  readonly expression: string;
  readonly base: string;
  compiled?: Shape | null;
  /**
   * The element names the expression navigates, when it reaches the instance by those names
   * only and holds on an empty element: an instance with none of them present holds too, without
   * evaluating (dom-2, dom-4 and dom-5 on every resource without `contained`, say).
   */
  vacuousUnless?: readonly string[];
}

/** Profile invariants compiled so far (key, FHIRPath base and expression) are kept up to this many. */
const PROFILE_CACHE_LIMIT = 5_000;

export class InvariantChecker {
  /** element path (`Observation`, `Observation.referenceRange`, `Quantity`) → its invariants */
  private readonly byPath = new Map<string, Invariant[]>();
  /** Every constraint key the base definitions define: a profile's own invariants are the others. */
  private readonly baseKeys = new Set<string>();
  /** Profile invariants by key, FHIRPath base and expression (profiles share them: vs-1…vs-3 sit in ten vital-sign profiles). */
  private readonly profileCache = new Map<string, Invariant>();
  private readonly unusable = new Map<string, string>();
  /** The texts of the invariants checked by hand (BY_HAND), from their definitions. */
  private readonly byHand = new Map<string, string>();

  constructor(definitions: Iterable<StructureDefinition>) {
    for (const sd of definitions) {
      for (const element of sd.snapshot?.element ?? []) {
        // Elements a definition inherits keep their own paths (Element.id in every datatype): the
        // datatype's own definition carries those, so only the definition's own paths are kept.
        if (element.path !== sd.type && !element.path.startsWith(`${sd.type}.`)) continue;
        for (const c of element.constraint ?? []) {
          this.baseKeys.add(c.key);
          if (BY_HAND.has(c.key)) this.byHand.set(c.key, c.human);
        }
        const list = (element.constraint ?? []).filter((c) => !CHECKED_ELSEWHERE.has(c.key) && !BY_HAND.has(c.key) && typeof c.expression === 'string' && c.expression.length > 0).map((c) => invariant(c, element.path));
        if (list.length > 0) this.byPath.set(element.path, list);
      }
    }
  }

  /**
   * Evaluates the invariants of element path `definitionPath` on `value` (found at `at` in the
   * instance, inside `resource`, which `rootResource` contains when it is a contained resource);
   * a failed one is an `invariant` issue of its severity (warnings only when asked for). The ones
   * checked by hand (BY_HAND) run here too: dom-3 on resources, ref-1 on References, bdl-3 / bdl-4
   * / bdl-7 on Bundles.
   */
  check(value: JsonObject, definitionPath: string, at: string, resource: JsonObject, rootResource: JsonObject, issues: Issue[], warnings: boolean): void {
    for (const inv of this.byPath.get(definitionPath) ?? []) this.evaluate(inv, value, at, { resource, rootResource }, issues, warnings, '');
    if (value === resource && Array.isArray(value.contained) && !containedReferenced(value)) this.byHandFailed('dom-3', at, issues);
    if (definitionPath === 'Reference' && !localReferenceResolves(value.reference, rootResource)) this.byHandFailed('ref-1', at, issues);
    if (definitionPath === 'Bundle') {
      if (!entriesCarry(value, 'request', REQUEST_TYPES)) this.byHandFailed('bdl-3', at, issues);
      if (!entriesCarry(value, 'response', RESPONSE_TYPES)) this.byHandFailed('bdl-4', at, issues);
      if (!fullUrlsDistinct(value)) this.byHandFailed('bdl-7', at, issues);
    }
  }

  /**
   * The invariants a profile adds on one of its elements: its constraints whose keys the base
   * definitions do not define (vs-1…vs-3 of the vital-sign profiles, us-core-6, those of a
   * hospital's own profiles). The base ones are checked on every instance already (`check`).
   */
  ownConstraints(constraints: readonly ElementDefinitionConstraint[] | undefined): ElementDefinitionConstraint[] {
    return (constraints ?? []).filter((c) => !this.baseKeys.has(c.key) && typeof c.expression === 'string' && c.expression.length > 0);
  }

  /**
   * Evaluates a profile's own invariants (`ownConstraints`) on `value`, typed as the base
   * element `base` (`Observation.component`; a choice by its type: `Observation.effectiveDateTime`).
   * A failure names the profile.
   */
  checkProfile(constraints: readonly ElementDefinitionConstraint[], base: string, value: unknown, at: string, resource: unknown, issues: Issue[], warnings: boolean, profile: string): void {
    for (const c of constraints) {
      const cacheKey = `${c.key}\n${base}\n${c.expression}`;
      let inv = this.profileCache.get(cacheKey);
      if (!inv) {
        // Profiles can be added at run time: the cache must not grow without bound.
        if (this.profileCache.size >= PROFILE_CACHE_LIMIT) this.profileCache.clear();
        this.profileCache.set(cacheKey, (inv = invariant(c, base)));
      }
      this.evaluate(inv, value, at, { resource, rootResource: resource }, issues, warnings, ` (profile ${profile})`);
    }
  }

  /** Why a profile's invariant cannot be compiled on element `base` (the message), or undefined when it can. */
  compileProblem(c: ElementDefinitionConstraint, base: string): string | undefined {
    try {
      compileShape(invariant(c, base.replace(/\[x\]$/, '')));
      return undefined;
    } catch (e) {
      return e instanceof Error ? e.message.slice(0, 200) : String(e).slice(0, 200);
    }
  }

  private evaluate(inv: Invariant, value: unknown, at: string, env: Record<string, unknown>, issues: Issue[], warnings: boolean, suffix: string): void {
    if (inv.severity === 'warning' && !warnings) return;
    const shape = this.compiled(inv);
    if (!shape) return;
    if (inv.vacuousUnless && isObject(value) && !inv.vacuousUnless.some((name) => hasElement(value, name))) return;
    let failed: boolean;
    try {
      failed = fails(shape, value, env);
    } catch (e) {
      // The package could not evaluate it on this input: never blame the instance for that. The
      // invariant stays on for other instances (one odd input must not switch a check off).
      this.note(inv, e);
      return;
    }
    if (failed) issues.push({ severity: inv.severity, code: 'invariant', diagnostics: `${inv.key}: ${inv.human}${suffix}`, expression: [at] });
  }

  private byHandFailed(key: string, at: string, issues: Issue[]): void {
    const human = this.byHand.get(key);
    if (human !== undefined) issues.push({ severity: 'error', code: 'invariant', diagnostics: `${key}: ${human}`, expression: [at] });
  }

  /** Invariants the `fhirpath` package could not compile, or failed to evaluate at least once: key → why. */
  skipped(): ReadonlyMap<string, string> {
    return this.unusable;
  }

  private compiled(inv: Invariant): Shape | null {
    if (inv.compiled === undefined) {
      try {
        inv.compiled = compileShape(inv);
        const names = navigatedNames(inv.expression);
        if (names && !fails(inv.compiled, {}, { resource: {}, rootResource: {} })) inv.vacuousUnless = names;
      } catch (e) {
        this.disable(inv, e);
      }
    }
    return inv.compiled ?? null;
  }

  private disable(inv: Invariant, e: unknown): void {
    inv.compiled = null;
    this.note(inv, e);
  }

  private note(inv: Invariant, e: unknown): void {
    this.unusable.set(`${inv.key} (${inv.base})`, e instanceof Error ? e.message.slice(0, 200) : String(e).slice(0, 200));
  }
}

/** Compiles an invariant (throws what the package throws for an expression it cannot compile). */
function compileShape(inv: Invariant): Shape {
  const compile = (expression: string) => fhirpath.compile({ base: inv.base, expression } as unknown as string, r4Model) as unknown as Compiled;
  const implied = topLevelSplit(inv.expression, 'implies');
  const alternatives = implied.length === 1 ? topLevelSplit(inv.expression, 'or') : [];
  if (implied.length === 2) return { kind: 'implies', antecedent: compile(implied[0]!), consequent: compile(implied[1]!) };
  if (alternatives.length > 1) return { kind: 'or', operands: alternatives.map(compile) };
  return { kind: 'whole', run: compile(inv.expression) };
}

function invariant(c: ElementDefinitionConstraint, path: string): Invariant {
  const expression = EVALUATOR_REWRITES.reduce((e, [pattern, replacement]) => e.replace(pattern, replacement), c.expression!);
  return { key: c.key, severity: c.severity === 'warning' ? 'warning' : 'error', human: c.human, expression, base: path };
}


const isFalse = (r: unknown[]) => r.length === 1 && r[0] === false;
const isTrue = (r: unknown[]) => r.length === 1 && r[0] === true;

/** Whether an invariant evaluates to false (empty, like true, is no failure). */
function fails(shape: Shape, value: unknown, env: Record<string, unknown>): boolean {
  switch (shape.kind) {
    case 'whole':
      return shape.run(value, env).some((r) => r === false);
    case 'or':
      // false only when every operand is false
      for (const operand of shape.operands) if (!isFalse(operand(value, env))) return false;
      return true;
    case 'implies':
      return isTrue(shape.antecedent(value, env)) && isFalse(shape.consequent(value, env));
  }
}

/**
 * `expression` cut at its top-level occurrences of `operator` (outside parentheses, brackets,
 * braces, strings and backquoted names); one part when there are none, or when a top-level
 * `xor` shares `or`'s precedence (then the cut would change the meaning).
 */
export function topLevelSplit(expression: string, operator: 'or' | 'implies'): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const ch = expression[i]!;
    if (ch === "'" || ch === '`') {
      for (i++; i < expression.length && expression[i] !== ch; i++) if (expression[i] === '\\') i++;
      continue;
    }
    if (ch === '(' || ch === '[' || ch === '{') depth++;
    else if (ch === ')' || ch === ']' || ch === '}') depth--;
    else if (depth === 0 && /\s/.test(ch)) {
      const word = /^\s+(or|xor|implies)\s/.exec(expression.slice(i));
      if (word?.[1] === 'xor' && operator === 'or') return [expression];
      if (word?.[1] === operator) {
        parts.push(expression.slice(start, i).trim());
        start = i + word[0].length;
        i = start - 1;
      }
    }
  }
  parts.push(expression.slice(start).trim());
  return parts.some((p) => p.length === 0) ? [expression] : parts;
}

/**
 * dom-3: every contained resource is referenced from elsewhere in the resource (`#id` in a
 * reference, canonical or uri, the container or another contained resource included), or itself
 * refers to its container (`#`). Read by hand from the JSON: any string `#id` counts, whatever
 * its element's type (the FHIRPath form looks at reference, canonical, uri and url only).
 */
function containedReferenced(resource: JsonObject): boolean {
  const pointers = new Set<string>();
  const collect = (value: unknown): void => {
    if (typeof value === 'string') {
      if (value.startsWith('#')) pointers.add(value.slice(1));
    } else if (Array.isArray(value)) {
      for (const v of value) collect(v);
    } else if (typeof value === 'object' && value !== null) {
      for (const v of Object.values(value)) collect(v);
    }
  };
  collect(resource);
  return (resource.contained as unknown[]).every((c) => {
    const id = (c as { id?: unknown } | null)?.id;
    // Referenced by id, or itself referring to its container ('#').
    return (typeof id === 'string' && pointers.has(id)) || refersToContainer(c);
  });
}

function refersToContainer(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(refersToContainer);
  if (typeof value !== 'object' || value === null) return false;
  for (const [k, v] of Object.entries(value)) {
    if (k === 'reference' && v === '#') return true;
    if (typeof v === 'object' && refersToContainer(v)) return true;
  }
  return false;
}

const KEYWORDS = new Set(['and', 'or', 'xor', 'implies', 'div', 'mod', 'in', 'contains', 'as', 'is', 'true', 'false']);

/**
 * The element names an expression navigates, or undefined when it may reach the instance
 * otherwise: an environment variable (`%resource`), `$this`, or a function applied to the
 * context itself (`exists()`, `iif(…)`, `descendants()`: a call not after a dot).
 */
export function navigatedNames(expression: string): string[] | undefined {
  if (/[%$]/.test(expression.replace(/'(?:[^'\\]|\\.)*'/g, "''"))) return undefined;
  const names = new Set<string>();
  const tokens = /'(?:[^'\\]|\\.)*'|(\.?)\s*`([^`]*)`|(\.?)\s*([A-Za-z_][A-Za-z0-9_]*)(\s*\()?|@[0-9T:.+\-Z]+|\d+(?:\.\d+)?/g;
  for (let m = tokens.exec(expression); m; m = tokens.exec(expression)) {
    if (m[2] !== undefined) {
      if (m[1] !== '.') names.add(m[2]);
      continue;
    }
    const afterDot = m[3] === '.';
    const word = m[4];
    if (word === undefined || KEYWORDS.has(word)) continue;
    if (m[5]) {
      // A function: fine after a dot (applied to a navigated collection), not on the context.
      if (!afterDot) return undefined;
      continue;
    }
    // Only the first step of a path reads the context (names after a dot read what it found;
    // names inside a function's argument may read its items: kept, which only makes the set larger).
    if (!afterDot) names.add(word);
  }
  return names.size > 0 ? [...names] : undefined;
}

/** Whether `value` carries element `name` (a choice name matches its typed keys: value → valueQuantity). */
function hasElement(value: JsonObject, name: string): boolean {
  if (value[name] !== undefined || value[`_${name}`] !== undefined) return true;
  for (const key of Object.keys(value)) {
    const k = key.startsWith('_') ? key.slice(1) : key;
    if (k.length > name.length && k.startsWith(name) && k.charCodeAt(name.length) >= 65 && k.charCodeAt(name.length) <= 90) return true;
  }
  return false;
}

/** ref-1: `#id` names a contained resource of the root resource; `#` alone is the container. */
function localReferenceResolves(reference: unknown, rootResource: JsonObject): boolean {
  if (typeof reference !== 'string' || !reference.startsWith('#') || reference === '#') return true;
  const contained = rootResource.contained;
  const id = reference.slice(1);
  return Array.isArray(contained) && contained.some((c) => (c as { id?: unknown } | null)?.id === id);
}

/** bdl-7: outside a history Bundle, no two entries share fullUrl and meta.versionId. */
function fullUrlsDistinct(bundle: JsonObject): boolean {
  if (bundle.type === 'history' || !Array.isArray(bundle.entry)) return true;
  const seen = new Set<string>();
  for (const entry of bundle.entry as unknown[]) {
    const e = entry as { fullUrl?: unknown; resource?: { meta?: { versionId?: unknown } } } | null;
    if (typeof e?.fullUrl !== 'string') continue;
    const version = e.resource?.meta?.versionId;
    const key = `${e.fullUrl}\u0000${typeof version === 'string' ? version : ''}`;
    if (seen.has(key)) return false;
    seen.add(key);
  }
  return true;
}

/** bdl-3 / bdl-4: every entry has `element` exactly when the Bundle's type is one of `types`. */
function entriesCarry(bundle: JsonObject, element: 'request' | 'response', types: ReadonlySet<string>): boolean {
  if (!Array.isArray(bundle.entry)) return true;
  const wanted = typeof bundle.type === 'string' && types.has(bundle.type);
  return (bundle.entry as unknown[]).every((e) => (typeof e === 'object' && e !== null && (e as Record<string, unknown>)[element] !== undefined) === wanted);
}
