import { errors, isFhirError } from '../fhir/errors.js';
import type { Filter, LogicFilter, ParamFilter } from './request.js';

/**
 * `_filter` (https://hl7.org/fhir/R4/search_filter.html): a small recursive-descent parser to an
 * AST, then each comparison turned into the SAME `Filter` an ordinary parameter gives
 * (`birthdate ge 1990` → `birthdate=ge1990`, `code in <vs>` → `code:in=<vs>`), so it compiles
 * through the same per-type SQL builders; `and` / `or` / `not` become a `LogicFilter`.
 *
 * Grammar (with the usual precedence: `not` > `and` > `or`; the spec leaves it open):
 *   expr       := andExpr ("or" andExpr)*
 *   andExpr    := unary ("and" unary)*
 *   unary      := "not" "(" expr ")" | "not" comparison | "(" expr ")" | comparison
 *   comparison := paramPath SP op SP value
 *   value      := "json string" | token (no whitespace, no ')' or ']')
 */

export type CompareOp = 'eq' | 'ne' | 'co' | 'sw' | 'ew' | 'gt' | 'lt' | 'ge' | 'le' | 'ap' | 'sa' | 'eb' | 'pr' | 'po' | 'ss' | 'sb' | 'in' | 'ni' | 're';

export type FilterExpr =
  | { kind: 'cmp'; path: string; op: CompareOp; value: string; quoted: boolean }
  | { kind: 'and' | 'or'; parts: FilterExpr[] }
  | { kind: 'not'; part: FilterExpr };

export const FILTER_LIMITS = {
  /** characters of one `_filter` value */
  maxLength: 4096,
  /** parentheses / `not` nesting */
  maxDepth: 16,
  /** comparisons in one expression (each is one index lookup) */
  maxComparisons: 64,
} as const;

const OPS = new Set<CompareOp>(['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'lt', 'ge', 'le', 'ap', 'sa', 'eb', 'pr', 'po', 'ss', 'sb', 'in', 'ni', 're']);

function bad(msg: string): never {
  throw errors.incorrect(`Invalid _filter: ${msg}`, ['_filter']);
}

function notSupported(msg: string): never {
  throw errors.incorrect(`_filter: ${msg} is not supported`, ['_filter']);
}

type Tok = { t: 'word' | 'string' | '(' | ')'; v: string; at: number };

function tokenize(s: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      out.push({ t: c, v: c, at: i });
      i++;
    } else if (c === '"') {
      const at = i;
      let v = '';
      i++;
      for (;;) {
        if (i >= s.length) bad(`unterminated string starting at character ${at + 1}`);
        const d = s[i]!;
        if (d === '"') break;
        if (d === '\\') {
          const e = s[i + 1];
          if (e === undefined) bad(`unterminated string starting at character ${at + 1}`);
          const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' };
          if (simple[e] !== undefined) {
            v += simple[e];
            i += 2;
          } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) {
            v += String.fromCharCode(parseInt(s.slice(i + 2, i + 6), 16));
            i += 6;
          } else {
            bad(`unknown escape \\${e} in string at character ${i + 1}`);
          }
        } else {
          v += d;
          i++;
        }
      }
      i++;
      out.push({ t: 'string', v, at });
    } else {
      const at = i;
      // A token ends at whitespace or ')'; '[' ... ']' of a path filter is kept whole (refused later).
      let v = '';
      let bracket = 0;
      while (i < s.length) {
        const d = s[i]!;
        if (d === '[') bracket++;
        if (d === ']') bracket--;
        if (bracket === 0 && (/\s/.test(d) || d === '(' || d === ')')) break;
        if (bracket > 0 && d === '"') break; // a quoted value inside a path filter: refused below
        v += d;
        i++;
      }
      if (bracket !== 0 || s[i] === '"') {
        if (v.includes('[')) notSupported(`a filter inside a parameter path ('${v.slice(0, 60)}…', e.g. code[system eq x].value)`);
        bad(`unexpected character at ${i + 1}`);
      }
      out.push({ t: 'word', v, at });
    }
  }
  return out;
}

class Parser {
  private i = 0;
  private comparisons = 0;
  constructor(private readonly toks: Tok[]) {}

  private peek(): Tok | undefined {
    return this.toks[this.i];
  }

  private isWord(word: string): boolean {
    const t = this.peek();
    return t?.t === 'word' && t.v.toLowerCase() === word;
  }

  private where(): string {
    const t = this.peek();
    return t ? `at character ${t.at + 1} ('${t.v.slice(0, 40)}')` : 'at the end';
  }

  parse(): FilterExpr {
    if (this.toks.length === 0) bad('empty expression');
    const e = this.expr(0);
    if (this.i < this.toks.length) bad(`expected 'and', 'or' or the end ${this.where()}`);
    return e;
  }

  private expr(depth: number): FilterExpr {
    if (depth > FILTER_LIMITS.maxDepth) bad(`nested too deeply (at most ${FILTER_LIMITS.maxDepth} levels)`);
    const parts = [this.andExpr(depth)];
    while (this.isWord('or')) {
      this.i++;
      parts.push(this.andExpr(depth));
    }
    return parts.length === 1 ? parts[0]! : { kind: 'or', parts };
  }

  private andExpr(depth: number): FilterExpr {
    const parts = [this.unary(depth)];
    while (this.isWord('and')) {
      this.i++;
      parts.push(this.unary(depth));
    }
    return parts.length === 1 ? parts[0]! : { kind: 'and', parts };
  }

  private unary(depth: number): FilterExpr {
    const t = this.peek();
    if (!t) bad('expression ends where a comparison was expected');
    if (t.t === '(') {
      this.i++;
      const e = this.expr(depth + 1);
      if (this.peek()?.t !== ')') bad(`expected ')' ${this.where()}`);
      this.i++;
      return e;
    }
    // `not` followed by '(' or a comparison; a parameter named `not` does not exist.
    if (this.isWord('not') && (this.toks[this.i + 1]?.t === '(' || this.toks[this.i + 2]?.t === 'word')) {
      this.i++;
      if (depth + 1 > FILTER_LIMITS.maxDepth) bad(`nested too deeply (at most ${FILTER_LIMITS.maxDepth} levels)`);
      return { kind: 'not', part: this.unary(depth + 1) };
    }
    return this.comparison();
  }

  private comparison(): FilterExpr {
    const path = this.peek();
    if (path?.t !== 'word') bad(`expected a parameter name ${this.where()}`);
    if (!/^[A-Za-z_][A-Za-z0-9_\-.:]*$/.test(path.v)) {
      if (path.v.includes('[')) notSupported(`a filter inside a parameter path ('${path.v.slice(0, 60)}', e.g. code[system eq x].value)`);
      bad(`'${path.v.slice(0, 60)}' is not a parameter name`);
    }
    this.i++;
    const opTok = this.peek();
    if (opTok?.t !== 'word' || !OPS.has(opTok.v.toLowerCase() as CompareOp)) {
      bad(`expected an operator (eq ne co sw ew gt lt ge le ap sa eb pr po ss sb in ni re) after '${path.v.slice(0, 60)}' ${this.where()}`);
    }
    this.i++;
    const value = this.peek();
    if (value?.t !== 'word' && value?.t !== 'string') bad(`expected a value after '${path.v.slice(0, 60)} ${opTok.v}' ${this.where()}`);
    this.i++;
    if (++this.comparisons > FILTER_LIMITS.maxComparisons) bad(`at most ${FILTER_LIMITS.maxComparisons} comparisons`);
    return { kind: 'cmp', path: path.v, op: opTok.v.toLowerCase() as CompareOp, value: value.v, quoted: value.t === 'string' };
  }
}

/** Parses a `_filter` value to its AST; malformed input is a 400 (FhirError 'incorrect'). */
export function parseFilterExpression(text: string): FilterExpr {
  if (text.length > FILTER_LIMITS.maxLength) bad(`too long (at most ${FILTER_LIMITS.maxLength} characters)`);
  return new Parser(tokenize(text)).parse();
}

/** The comparisons of an expression, in order. */
export function comparisons(e: FilterExpr): Array<Extract<FilterExpr, { kind: 'cmp' }>> {
  switch (e.kind) {
    case 'cmp':
      return [e];
    case 'not':
      return comparisons(e.part);
    default:
      return e.parts.flatMap(comparisons);
  }
}

/**
 * Ordinary `name[:modifier]=value` pairs the terminology must prepare for (value sets of `in` /
 * `ni`, code systems of `ss` / `sb`) before the statement is compiled. Malformed filters give
 * nothing here: the parse that follows reports them.
 */
export function filterTerminologyPairs(params: ReadonlyArray<readonly [string, string]>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of params) {
    if (name !== '_filter') continue;
    let e: FilterExpr;
    try {
      e = parseFilterExpression(value);
    } catch {
      continue;
    }
    for (const c of comparisons(e)) {
      const modifier = { in: 'in', ni: 'not-in', ss: 'below', sb: 'above' }[c.op as string];
      if (modifier) out.push([`${c.path}:${modifier}`, c.value]);
    }
  }
  return out;
}

/** What `parse.ts` lends the compiler: ordinary parameter parsing in the search's context (strict). */
export interface FilterParamParser {
  /** `name` may be a chain (`subject.name`); returns the ordinary filter (400 on a bad value or unknown param). */
  parse(name: string, value: string): Filter;
}

/** Escapes what an ordinary value would read as an OR list or a composite separator. */
function esc(v: string, keepBar: boolean): string {
  const s = v.replace(/[\\,$]/g, (c) => `\\${c}`);
  return keepBar ? s : s.replace(/\|/g, '\\|');
}

/** The innermost plain parameter filter of a chain / `_has` (where modifiers and values live). */
function innermost(f: Filter): ParamFilter | undefined {
  if (f.kind === 'param') return f;
  if (f.kind === 'chain' || f.kind === 'has') return innermost(f.inner);
  return undefined;
}

/** The same filter with its innermost parameter filter replaced. */
function withInner(f: Filter, fn: (p: ParamFilter) => ParamFilter): Filter {
  if (f.kind === 'param') return fn(f);
  if (f.kind === 'chain' || f.kind === 'has') return { ...f, inner: withInner(f.inner, fn) };
  return f;
}

function not(f: Filter, name: string): LogicFilter {
  return { kind: 'logic', name, op: 'not', parts: [f] };
}

/** The type of the parameter a path ends at (`subject:Patient.name` → string), read by parsing `:missing`. */
function pathType(p: FilterParamParser, path: string): { type: string; special: boolean } {
  let parsed: Filter;
  try {
    parsed = p.parse(`${path}:missing`, 'false');
  } catch (e) {
    // The probe's name is ours: report the path as the client wrote it.
    if (!isFhirError(e) || e.category !== 'incorrect') throw e;
    const msg = e.issues.map((i) => i.diagnostics ?? '').join('; ').split(`'${path}:missing'`).join(`'${path}'`);
    throw errors.incorrect(`Invalid _filter: ${msg}`, ['_filter']);
  }
  const f = innermost(parsed);
  if (!f) bad(`'${path.slice(0, 60)}' is not a parameter`);
  return { type: f.param.type, special: 'special' in f.param };
}

function compileComparison(c: Extract<FilterExpr, { kind: 'cmp' }>, p: FilterParamParser): Filter {
  const path = c.path;
  if (path.startsWith('_has:')) notSupported(`_has inside _filter ('${path.slice(0, 60)}'); use an ordinary _has parameter beside it`);
  if (/:/.test(path.split('.').pop() ?? '')) notSupported(`a modifier in a _filter path ('${path.slice(0, 60)}'); use the operator`);
  const name = `_filter(${path} ${c.op})`;
  const { type } = pathType(p, path);
  const refuse = (): never => notSupported(`operator '${c.op}' on ${type} parameter '${path.slice(0, 60)}'`);
  if (c.op === 'pr') {
    const v = c.value.toLowerCase();
    if (v !== 'true' && v !== 'false') bad(`'pr' takes true or false, not '${c.value.slice(0, 40)}'`);
    return p.parse(`${path}:missing`, v === 'true' ? 'false' : 'true');
  }
  if (c.value === '') bad(`empty value for '${path.slice(0, 60)} ${c.op}'`);
  switch (type) {
    case 'string': {
      const plain = p.parse(path, esc(c.value, false));
      // `eq`: the whole value, case- and accent-insensitive; `ew`: the end of it. These two have
      // no URL modifier, so they are internal ones (`string.ts`), set on the parsed filter.
      const set = (modifier: string | undefined) => withInner(plain, (f) => ({ ...f, modifier }));
      switch (c.op) {
        case 'eq':
          return set('filter-eq');
        case 'ne':
          return not(set('filter-eq'), name);
        case 'sw':
          return plain;
        case 'co':
          return set('contains');
        case 'ew':
          return set('filter-ew');
        default:
          return refuse();
      }
    }
    case 'token': {
      const keep = true; // `system|code`
      switch (c.op) {
        case 'eq':
          return p.parse(path, esc(c.value, keep));
        case 'ne':
          return not(p.parse(path, esc(c.value, keep)), name);
        case 'in':
          return p.parse(`${path}:in`, esc(c.value, false));
        case 'ni':
          return p.parse(`${path}:not-in`, esc(c.value, false));
        case 'ss':
          return p.parse(`${path}:below`, esc(c.value, keep));
        case 'sb':
          return p.parse(`${path}:above`, esc(c.value, keep));
        default:
          return refuse();
      }
    }
    case 'date':
    case 'number':
    case 'quantity': {
      if (c.op === 'po') notSupported(`operator 'po' (overlaps); use 'ge' and 'le'`);
      if (!['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'ap', 'sa', 'eb'].includes(c.op)) refuse();
      // `1990` → `ge1990`: the ordinary prefix parser reads it (a value carrying its own prefix fails there).
      return p.parse(path, `${c.op}${esc(c.value, type === 'quantity')}`);
    }
    case 'reference': {
      if (c.op === 'eq' || c.op === 're') return p.parse(path, esc(c.value, true));
      if (c.op === 'ne') return not(p.parse(path, esc(c.value, true)), name);
      return refuse();
    }
    case 'uri': {
      if (c.op === 'eq') return p.parse(path, esc(c.value, false));
      if (c.op === 'ne') return not(p.parse(path, esc(c.value, false)), name);
      if (c.op === 'sw') return p.parse(`${path}:below`, esc(c.value, false));
      return refuse();
    }
    case 'composite': {
      // `$` separates the components, as in an ordinary value.
      if (c.op === 'eq') return p.parse(path, c.value.replace(/[\\,]/g, (x) => `\\${x}`));
      return refuse();
    }
    default:
      return refuse();
  }
}

function compileExpr(e: FilterExpr, p: FilterParamParser): Filter {
  switch (e.kind) {
    case 'cmp':
      return compileComparison(e, p);
    case 'not':
      return not(compileExpr(e.part, p), '_filter(not)');
    default:
      return { kind: 'logic', name: `_filter(${e.kind})`, op: e.kind, parts: e.parts.map((x) => compileExpr(x, p)) };
  }
}

/** A `_filter` value as one search filter (ANDed with the other parameters). */
export function compileFilterExpression(text: string, p: FilterParamParser): Filter {
  return compileExpr(parseFilterExpression(text), p);
}
