import fhirpath from 'fhirpath';
import { childSteps, fhirpathModel, isOfType, typeFromSuffix } from './fhir-model.js';

/**
 * SearchParameter expressions compiled ONCE into plain JS accessors.
 *
 * Indexing runs on every write, so the common expression shapes (unions, dotted paths, `as`,
 * `ofType`, `where(resolve() is X)`, `where(field='literal')`, choice elements, `extension('url')`,
 * `[n]`, `%resource`) are compiled into closures over arrays of typed nodes. Anything else falls
 * back to the `fhirpath` package (compiled once too). `accessor.test.ts` proves both agree.
 */

/** A value found by an expression and its FHIR type (`dateTime`, `CodeableConcept`, `Patient`). */
export interface TypedValue {
  v: unknown;
  t: string;
}

export type Accessor = (context: TypedValue[], resource: TypedValue) => TypedValue[];

export interface CompiledExpression {
  readonly expression: string;
  /** true when the fast path compiled it; false when fhirpath evaluates it. */
  readonly fast: boolean;
  evaluate(resource: { resourceType: string }): TypedValue[];
  /** Evaluates relative to nodes already found (composite components). */
  evaluateOn(nodes: TypedValue[], resource: { resourceType: string }): TypedValue[];
}

class Unsupported extends Error {}

// ---------- tokenizer ----------
type Tok =
  | { k: 'id'; s: string }
  | { k: 'str'; s: string }
  | { k: 'num'; s: string }
  | { k: 'var'; s: string }
  | { k: 'op'; s: string };

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j]!)) j++;
      out.push({ k: 'id', s: src.slice(i, j) });
      i = j;
    } else if (c === '%') {
      let j = i + 1;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j]!)) j++;
      out.push({ k: 'var', s: src.slice(i + 1, j) });
      i = j;
    } else if (c === "'") {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== "'") {
        if (src[j] === '\\') throw new Unsupported('escape');
        s += src[j];
        j++;
      }
      if (j >= src.length) throw new Unsupported('unterminated string');
      out.push({ k: 'str', s });
      i = j + 1;
    } else if (/[0-9]/.test(c)) {
      let j = i + 1;
      while (j < src.length && /[0-9]/.test(src[j]!)) j++;
      out.push({ k: 'num', s: src.slice(i, j) });
      i = j;
    } else if (c === '!' && src[i + 1] === '=') {
      out.push({ k: 'op', s: '!=' });
      i += 2;
    } else if ('().|[]=,'.includes(c)) {
      out.push({ k: 'op', s: c });
      i++;
    } else {
      throw new Unsupported(`char ${c}`);
    }
  }
  return out;
}

// ---------- parser: produces accessors directly ----------
type Step = (nodes: TypedValue[], root: TypedValue) => TypedValue[];

function fieldStep(name: string): Step {
  return (nodes) => {
    const out: TypedValue[] = [];
    for (const n of nodes) {
      const v = n.v;
      if (v === null || typeof v !== 'object') continue;
      const steps = childSteps(n.t, name);
      if (!steps) continue;
      for (const s of steps) {
        const child = (v as Record<string, unknown>)[s.prop];
        if (child === undefined || child === null) continue;
        if (Array.isArray(child)) {
          for (const c of child) if (c !== null && c !== undefined) out.push(node(c, s.type));
        } else {
          out.push(node(child, s.type));
        }
      }
    }
    return out;
  };
}

function node(v: unknown, t: string): TypedValue {
  if (t === 'Resource' && v !== null && typeof v === 'object') {
    const rt = (v as { resourceType?: unknown }).resourceType;
    if (typeof rt === 'string') return { v, t: rt };
  }
  return { v, t };
}

function typeFilter(type: string): Step {
  const target = typeFromSuffix(type);
  return (nodes) => nodes.filter((n) => isOfType(n.t, target) || isOfType(n.t, type));
}

/** The resource type a Reference points at, from its `reference` (relative or absolute) or `type`. */
export function referenceTargetType(ref: unknown): string | undefined {
  if (ref === null || typeof ref !== 'object') return undefined;
  const r = ref as { reference?: unknown; type?: unknown };
  if (typeof r.reference === 'string') {
    const m = /(?:^|\/)([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(r.reference);
    if (m) return m[1];
    return undefined;
  }
  return typeof r.type === 'string' ? r.type : undefined;
}

class Parser {
  private pos = 0;
  constructor(private readonly toks: Tok[]) {}

  private peek(): Tok | undefined {
    return this.toks[this.pos];
  }
  private isOp(s: string): boolean {
    const t = this.peek();
    return t !== undefined && t.k === 'op' && t.s === s;
  }
  private isId(s: string): boolean {
    const t = this.peek();
    return t !== undefined && t.k === 'id' && t.s === s;
  }
  private expectOp(s: string): void {
    if (!this.isOp(s)) throw new Unsupported(`expected ${s}`);
    this.pos++;
  }
  private ident(): string {
    const t = this.peek();
    if (!t || t.k !== 'id') throw new Unsupported('expected identifier');
    this.pos++;
    return t.s;
  }
  private str(): string {
    const t = this.peek();
    if (!t || t.k !== 'str') throw new Unsupported('expected string');
    this.pos++;
    return t.s;
  }

  parseAll(): Step {
    const s = this.conjunction();
    if (this.pos !== this.toks.length) throw new Unsupported('trailing tokens');
    return s;
  }

  /**
   * `a and b …` over boolean results (FHIRPath's three-valued logic: false wins, then empty),
   * only at the top of an expression (`Patient.deceased.exists() and Patient.deceased != false`).
   */
  private conjunction(): Step {
    const parts = [this.comparison()];
    while (this.isId('and')) {
      this.pos++;
      parts.push(this.comparison());
    }
    if (parts.length === 1) return parts[0]!;
    return (nodes, root) => {
      let empty = false;
      for (const p of parts) {
        const b = singletonBoolean(p(nodes, root));
        if (b === false) return [boolNode(false)];
        if (b === undefined) empty = true;
      }
      return empty ? [] : [boolNode(true)];
    };
  }

  /** `path = true|false` or `path != true|false` (FHIRPath equality on a singleton); else the path. */
  private comparison(): Step {
    const left = this.union();
    const negate = this.isOp('!=');
    if (!negate && !this.isOp('=')) return left;
    this.pos++;
    const literal = this.isId('true') ? true : this.isId('false') ? false : undefined;
    if (literal === undefined) throw new Unsupported('comparison with a non-boolean literal');
    this.pos++;
    return (nodes, root) => {
      const vals = left(nodes, root);
      if (vals.length === 0) return [];
      if (vals.length > 1) throw new Error('equality needs a singleton');
      // Values of another type are not equal to a boolean.
      const eq = vals[0]!.t === 'boolean' && vals[0]!.v === literal;
      return [boolNode(negate ? !eq : eq)];
    };
  }

  private union(): Step {
    const parts = [this.term()];
    while (this.isOp('|')) {
      this.pos++;
      parts.push(this.term());
    }
    if (parts.length === 1) return parts[0]!;
    return (nodes, root) => {
      const out: TypedValue[] = [];
      const seen = new Set<unknown>();
      for (const p of parts) {
        for (const n of p(nodes, root)) {
          // FHIRPath union removes duplicates; identity is enough for object nodes.
          if (typeof n.v === 'object') {
            if (seen.has(n.v)) continue;
            seen.add(n.v);
          }
          out.push(n);
        }
      }
      return out;
    };
  }

  private term(): Step {
    let step = this.primary();
    for (;;) {
      if (this.isOp('.')) {
        this.pos++;
        step = chain(step, this.invocation());
      } else if (this.isOp('[')) {
        this.pos++;
        const t = this.peek();
        if (!t || t.k !== 'num') throw new Unsupported('index');
        this.pos++;
        this.expectOp(']');
        const idx = Number(t.s);
        step = chain(step, (nodes) => (idx < nodes.length ? [nodes[idx]!] : []));
      } else if (this.isId('as')) {
        this.pos++;
        step = chain(step, typeFilter(this.ident()));
      } else {
        return step;
      }
    }
  }

  private primary(): Step {
    if (this.isOp('(')) {
      this.pos++;
      const inner = this.union();
      this.expectOp(')');
      return inner;
    }
    const t = this.peek();
    if (t && t.k === 'var') {
      this.pos++;
      if (t.s !== 'resource') throw new Unsupported('variable');
      return (_nodes, root) => [root];
    }
    const name = this.ident();
    if (this.isOp('(')) return this.functionCall(name);
    if (/^[A-Z]/.test(name)) {
      // A type name at the root filters the context (`Observation.code` on an Observation).
      return (nodes) => nodes.filter((n) => isOfType(n.t, name));
    }
    return fieldStep(name);
  }

  private invocation(): Step {
    const name = this.ident();
    if (this.isOp('(')) return this.functionCall(name);
    return fieldStep(name);
  }

  private functionCall(name: string): Step {
    this.expectOp('(');
    switch (name) {
      case 'as':
      case 'ofType': {
        const type = this.ident();
        this.expectOp(')');
        return typeFilter(type);
      }
      case 'first': {
        this.expectOp(')');
        return (nodes) => nodes.slice(0, 1);
      }
      case 'exists': {
        this.expectOp(')');
        return (nodes) => [boolNode(nodes.length > 0)];
      }
      case 'extension': {
        const url = this.str();
        this.expectOp(')');
        const ext = fieldStep('extension');
        return (nodes, root) => ext(nodes, root).filter((n) => (n.v as { url?: unknown }).url === url);
      }
      case 'where': {
        const cond = this.condition();
        this.expectOp(')');
        return (nodes, root) => nodes.filter((n) => cond(n, root));
      }
      default:
        throw new Unsupported(`function ${name}`);
    }
  }

  /** `resolve() is X` or `path = 'literal'` (also `!=`). */
  private condition(): (n: TypedValue, root: TypedValue) => boolean {
    if (this.isId('resolve')) {
      this.pos++;
      this.expectOp('(');
      this.expectOp(')');
      if (!this.isId('is')) throw new Unsupported('resolve without is');
      this.pos++;
      const type = this.ident();
      return (n) => {
        const target = referenceTargetType(n.v);
        return target !== undefined && isOfType(target, type);
      };
    }
    let path = fieldStep(this.ident());
    while (this.isOp('.')) {
      this.pos++;
      path = chain(path, fieldStep(this.ident()));
    }
    let negate = false;
    if (this.isOp('!=')) negate = true;
    else if (!this.isOp('=')) throw new Unsupported('condition');
    this.pos++;
    const literal = this.str();
    return (n, root) => {
      const vals = path([n], root);
      // FHIRPath `=` on a singleton; empty gives empty (false in where).
      if (vals.length !== 1) return false;
      const eq = vals[0]!.v === literal;
      return negate ? !eq : eq;
    };
  }
}

function boolNode(v: boolean): TypedValue {
  return { v, t: 'boolean' };
}

/** The boolean of a singleton boolean result; undefined when empty (or not a boolean). */
function singletonBoolean(nodes: TypedValue[]): boolean | undefined {
  if (nodes.length === 0) return undefined;
  if (nodes.length > 1 || nodes[0]!.t !== 'boolean') throw new Error('a boolean operand must be a singleton boolean');
  return nodes[0]!.v as boolean;
}

function chain(a: Step, b: Step): Step {
  return (nodes, root) => b(a(nodes, root), root);
}

// ---------- fhirpath fallback ----------
interface FhirpathNodeResult {
  types: string[];
  values: unknown[];
}

/**
 * fhirpath.js refuses the asynchronous `resolve()`; search only needs the target type, which the
 * reference string carries, so `resolve() is X` is rewritten into a check on the reference.
 */
export function rewriteResolveForFhirpath(expression: string): string {
  // Search uses `as` as a filter over collections (like ofType); fhirpath.js insists on a singleton.
  const ofType = expression
    .replace(/\(([^()]+?)\s+as\s+([A-Za-z]+)\)/g, '($1.ofType($2))')
    .replace(/\.as\(([A-Za-z]+)\)/g, '.ofType($1)');
  return ofType.replace(
    /resolve\(\)\s+is\s+([A-Za-z]+)/g,
    (_m, type: string) =>
      `(reference.matches('(^|/)${type}/[A-Za-z0-9\\\\-.]{1,64}(/_history/[A-Za-z0-9\\\\-.]{1,64})?$') or (reference.empty() and type = '${type}'))`,
  );
}

function fhirpathTypeToFhir(t: string): string {
  const [ns, name] = t.includes('.') ? (t.split('.', 2) as [string, string]) : ['FHIR', t];
  if (ns === 'System') {
    switch (name) {
      case 'String':
        return 'string';
      case 'Boolean':
        return 'boolean';
      case 'Integer':
        return 'integer';
      case 'Decimal':
        return 'decimal';
      case 'Date':
        return 'date';
      case 'DateTime':
        return 'dateTime';
      case 'Time':
        return 'time';
      case 'Quantity':
        return 'Quantity';
      default:
        return name;
    }
  }
  return name;
}

function compileFallback(expression: string): CompiledExpression {
  const fn = fhirpath.compile(rewriteResolveForFhirpath(expression), fhirpathModel, { resolveInternalTypes: false });
  const run = (base: unknown, resource: unknown): FhirpathNodeResult => {
    const raw = fn(base as never, { resource } as never) as unknown[];
    const types = fhirpath.types(raw) as string[];
    const values = fhirpath.resolveInternalTypes(raw) as unknown[];
    return { types, values };
  };
  const toNodes = (r: FhirpathNodeResult): TypedValue[] =>
    r.values.map((v, i) => node(v, fhirpathTypeToFhir(r.types[i] ?? 'String')));
  return {
    expression,
    fast: false,
    evaluate: (resource) => toNodes(run(resource, resource)),
    evaluateOn: (nodes, resource) => {
      const out: TypedValue[] = [];
      for (const n of nodes) out.push(...toNodes(run(n.v, resource)));
      return out;
    },
  };
}

/** Compiles an expression; `forceFallback` exists for tests and benchmarks. */
export function compileExpression(expression: string, forceFallback = false): CompiledExpression {
  if (!forceFallback) {
    try {
      const step = new Parser(tokenize(expression)).parseAll();
      return {
        expression,
        fast: true,
        evaluate: (resource) => {
          const root: TypedValue = { v: resource, t: resource.resourceType };
          return step([root], root);
        },
        evaluateOn: (nodes, resource) => step(nodes, { v: resource, t: resource.resourceType }),
      };
    } catch (e) {
      if (!(e instanceof Unsupported)) throw e;
    }
  }
  return compileFallback(expression);
}
