import { errors } from '../fhir/errors.js';
import type { CompiledSearchParam, SearchParameterRegistry } from './registry.js';
import type {
  Filter,
  IncludeSpec,
  ParamFilter,
  ParamValue,
  Prefix,
  ReferenceValue,
  SearchRequest,
  SortKey,
  SpecialParam,
  TokenValue,
} from './request.js';
import { compileFilterExpression } from './filter-expression.js';
import { parseTextQuery } from './full-text.js';
import { toCanonical, UCUM_SYSTEM } from './ucum.js';
import { decimalToString, parseDateRange, parseDecimal, precisionRange } from './values.js';

/**
 * Limits that keep hostile queries cheap (all answered with a 400, never a 500). A whole
 * parameter value is bounded only by the URL / body limits: cohort tools send OR lists of
 * hundreds of codes. Values that compile to one array parameter (`= ANY($1)`: token codes,
 * references, `_id`, exact uris) may number up to `maxOrValues`; values that need one SQL
 * condition each (string prefixes, dates, numbers, quantities, `:text`, …) up to `maxOrConditions`.
 */
export const LIMITS = {
  maxParams: 100,
  /** one value of an OR list */
  maxValueLength: 4096,
  maxOrValues: 10_000,
  maxOrConditions: 1000,
  maxChainDepth: 4,
  maxCount: 1000,
  maxSortKeys: 8,
  maxIncludes: 16,
  defaultCount: 20,
} as const;

const prefixes = new Set<Prefix>(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);

/** Result-shaping parameters (not filters). */
const resultParams = new Set(['_sort', '_count', '_total', '_summary', '_elements', '_include', '_revinclude', '_type', '_cursor', '_format', '_pretty', '_contained', '_containedType']);

export interface ParseOptions {
  /** Types searched: one for type search; undefined = system search (all types or `_type`). */
  resourceType?: string;
  /** Refuse unknown parameters instead of collecting them (Prefer: handling=strict). */
  strict?: boolean;
  /** Base URL of this server, so absolute references to ourselves become relative. */
  baseUrl?: string;
}

const idParam: SpecialParam = { code: '_id', type: 'token', special: true };
const lastUpdatedParam: SpecialParam = { code: '_lastUpdated', type: 'date', special: true };
const contentParam: SpecialParam = { code: '_content', type: 'special', special: true };
const textParam: SpecialParam = { code: '_text', type: 'special', special: true };
const scoreParam: SpecialParam = { code: '_score', type: 'special', special: true };

/** Splits on an unescaped separator, keeping escapes (they are removed by `unescape`). */
export function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[i + 1];
      i++;
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out;
}

export function unescape(s: string): string {
  return s.replace(/\\([\\,|$])/g, '$1');
}

function bad(name: string, msg: string): never {
  throw errors.incorrect(`Invalid search parameter '${name}': ${msg}`, [name]);
}

function splitPrefix(raw: string): { prefix: Prefix; rest: string } {
  const p = raw.slice(0, 2) as Prefix;
  if (raw.length > 2 && prefixes.has(p) && /[0-9+\-.]/.test(raw[2]!)) return { prefix: p, rest: raw.slice(2) };
  return { prefix: 'eq', rest: raw };
}

function parseNumberLike(name: string, raw: string): { prefix: Prefix; value: string; low: string; high: string } {
  const { prefix, rest } = splitPrefix(raw);
  const d = parseDecimal(rest);
  if (!d) bad(name, `'${raw.slice(0, 50)}' is not a number (optionally with a prefix eq/ne/gt/lt/ge/le/sa/eb/ap)`);
  return { prefix, value: decimalToString(d), ...precisionRange(d) };
}

function tokenValue(name: string, raw: string, modifier: string | undefined): TokenValue {
  const parts = splitEscaped(raw, '|');
  if (modifier === 'of-type') {
    if (parts.length !== 3 || !parts[1] || !parts[2]) bad(name, ':of-type needs system|code|value');
    return { typeSystem: unescape(parts[0]!), typeCode: unescape(parts[1]!), code: unescape(parts[2]!) };
  }
  if (parts.length === 1) return { code: unescape(parts[0]!) };
  if (parts.length !== 2) bad(name, `too many '|' in '${raw.slice(0, 50)}' (escape a literal | as \\|)`);
  const system = unescape(parts[0]!);
  const code = unescape(parts[1]!);
  if (!system && !code) bad(name, "'|' alone is not a token");
  return { system: system === '' ? null : system, code: code === '' ? undefined : code };
}

function referenceValue(name: string, raw: string, modifier: string | undefined, baseUrl: string | undefined): ReferenceValue {
  const v = unescape(raw);
  if (modifier === 'identifier') {
    const parts = splitEscaped(raw, '|');
    if (parts.length === 1) return { identValue: unescape(parts[0]!) };
    if (parts.length !== 2) bad(name, ':identifier needs system|value');
    return { identSystem: parts[0] === '' ? null : unescape(parts[0]!), identValue: parts[1] === '' ? undefined : unescape(parts[1]!) };
  }
  let local = v;
  if (baseUrl && v.startsWith(`${baseUrl.replace(/\/+$/, '')}/`)) local = v.slice(baseUrl.replace(/\/+$/, '').length + 1);
  const rel = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([A-Za-z0-9\-.]{1,64}))?$/.exec(local);
  if (rel) return { type: rel[1], id: rel[2], version: rel[3] };
  if (/^[A-Za-z0-9\-.]{1,64}$/.test(local)) return { id: local, type: modifier && /^[A-Z]/.test(modifier) ? modifier : undefined };
  const bar = v.indexOf('|');
  if (bar > 0) return { url: v.slice(0, bar), version: v.slice(bar + 1) };
  return { url: v };
}

/** Parses one value of a param of the given type (one OR branch). */
function parseValue(p: CompiledSearchParam | SpecialParam, name: string, raw: string, modifier: string | undefined, registry: SearchParameterRegistry, baseUrl?: string): ParamValue {
  if ('special' in p && (p.code === '_content' || p.code === '_text')) return { kind: 'fulltext', q: parseTextQuery(unescape(raw)), config: registry.textSearchLanguage };
  switch (p.type) {
    case 'token':
      if (modifier === 'text') return { kind: 'text', v: unescape(raw) };
      if (modifier === 'in' || modifier === 'not-in') return { kind: 'valueset', url: unescape(raw) };
      return { kind: 'token', v: tokenValue(name, raw, modifier) };
    case 'string':
      return { kind: 'string', v: unescape(raw) };
    case 'uri':
      return { kind: 'uri', v: unescape(raw) };
    case 'date': {
      // An unencoded `+` of a zone offset arrives as a space (form decoding): take it back.
      const { prefix, rest } = splitPrefix(raw.replace(/(T[\d:.]+) (\d{2}:\d{2})$/, '$1+$2'));
      const r = parseDateRange(rest);
      if (!r) bad(name, `'${raw.slice(0, 50)}' is not a date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm[:ss][Z|±hh:mm], optionally prefixed)`);
      return { kind: 'date', v: { prefix, low: r.low, high: r.high, raw: rest } };
    }
    case 'number':
      return { kind: 'number', v: parseNumberLike(name, raw) };
    case 'quantity': {
      const parts = splitEscaped(raw, '|');
      if (parts.length !== 1 && parts.length !== 3) bad(name, 'a quantity is value, value|system|code or value||code');
      const num = parseNumberLike(name, parts[0]!);
      const system = parts.length === 3 && parts[1] !== '' ? unescape(parts[1]!) : undefined;
      const code = parts.length === 3 && parts[2] !== '' ? unescape(parts[2]!) : undefined;
      let canon: { code: string; value: string; low: string; high: string } | undefined;
      if (code && (system === undefined || system === UCUM_SYSTEM)) {
        const c = toCanonical(num.value, code);
        const lo = toCanonical(num.low, code);
        const hi = toCanonical(num.high, code);
        if (c && lo && hi) canon = { code: c.code, value: c.value, low: lo.value, high: hi.value };
      }
      return { kind: 'quantity', v: { ...num, system, code, canon } };
    }
    case 'reference':
      if (modifier === 'text') return { kind: 'text', v: unescape(raw) };
      return { kind: 'reference', v: referenceValue(name, raw, modifier, baseUrl) };
    case 'composite': {
      const cp = p as CompiledSearchParam;
      const parts = splitEscaped(raw, '$');
      if (parts.length !== cp.components.length) bad(name, `a composite value needs ${cp.components.length} parts separated by $`);
      return {
        kind: 'composite',
        parts: parts.map((part, i) => {
          const comp = cp.components[i]!;
          const fake = { ...cp, type: comp.type, components: [] } as CompiledSearchParam;
          return parseValue(fake, name, part, undefined, registry, baseUrl);
        }),
      };
    }
    default:
      bad(name, `parameters of type ${p.type} are not supported`);
  }
}

const modifiersByType: Record<string, ReadonlySet<string>> = {
  token: new Set(['missing', 'not', 'text', 'of-type', 'in', 'not-in', 'above', 'below']),
  string: new Set(['missing', 'exact', 'contains']),
  date: new Set(['missing']),
  number: new Set(['missing']),
  quantity: new Set(['missing']),
  reference: new Set(['missing', 'identifier', 'text']),
  uri: new Set(['missing', 'above', 'below']),
  composite: new Set(['missing']),
};

interface Ctx {
  registry: SearchParameterRegistry;
  strict: boolean;
  /** system search: a parameter of some types but not of all searched ones is an error */
  systemSearch: boolean;
  unknown: string[];
  baseUrl?: string;
}

function resolveParam(ctx: Ctx, types: string[], code: string, fullName: string): CompiledSearchParam | SpecialParam | undefined {
  if (code === '_id') return idParam;
  if (code === '_lastUpdated') return lastUpdatedParam;
  // Full text (search_text rows): `_content` is defined on Resource, `_text` on DomainResource.
  if (code === '_content') return contentParam;
  if (code === '_text') return textParam;
  let found: CompiledSearchParam | undefined;
  for (const t of types) {
    const p = ctx.registry.get(t, code);
    if (!p) return undefined;
    if (found && (found.type !== p.type)) bad(fullName, `it has different types on ${types.join(', ')}; search one type`);
    found ??= p;
  }
  // Params without an indexable expression (_text, _content, _query, near…) are not supported:
  // treated like unknown ones rather than silently matching nothing.
  if (found && (!found.expression || found.type === 'special')) return undefined;
  if (found) ctx.registry.require(found.resourceType, code); // refuses params waiting for reindex
  return found;
}

/** Parses `name=value` into a filter on `types`; returns undefined for an ignorable unknown param. */
function parseFilter(ctx: Ctx, types: string[], name: string, value: string, depth: number): Filter | undefined {
  if (depth > LIMITS.maxChainDepth) bad(name, `chains and _has may nest at most ${LIMITS.maxChainDepth} levels`);
  if (name.startsWith('_has:')) {
    const parts = name.split(':');
    if (parts.length < 4) bad(name, '_has needs _has:Type:reference:parameter');
    const [, sourceType, refCode] = parts as [string, string, string];
    if (!ctx.registry.isKnownResourceType(sourceType)) bad(name, `unknown resource type ${sourceType}`);
    const refParam = ctx.registry.get(sourceType, refCode);
    if (!refParam || refParam.type !== 'reference') bad(name, `${sourceType} has no reference parameter '${refCode}'`);
    ctx.registry.require(sourceType, refCode);
    if (types[0] === 'Resource') bad(name, '_has in a search of every type needs _type naming the types it refers to');
    if (refParam.target.length && !types.some((t) => refParam.target.includes(t))) {
      bad(name, `${sourceType}.${refCode} does not refer to ${types.join('/')}`);
    }
    const inner = parseFilter(ctx, [sourceType], parts.slice(3).join(':'), value, depth + 1);
    if (!inner) return undefined;
    return { kind: 'has', name, sourceType, referenceParam: refParam, inner };
  }
  const dot = name.indexOf('.');
  if (dot > 0) {
    const head = name.slice(0, dot);
    const rest = name.slice(dot + 1);
    const [code, typeMod] = head.split(':', 2) as [string, string | undefined];
    const p = resolveParam(ctx, types, code, name);
    if (!p) return unknownParam(ctx, name);
    if ('special' in p || p.type !== 'reference') bad(name, `only reference parameters can be chained; '${code}' is ${p.type}`);
    let targets = typeMod ? [typeMod] : [...p.target];
    if (typeMod && !ctx.registry.isKnownResourceType(typeMod)) bad(name, `unknown resource type ${typeMod}`);
    const innerCode = rest.split(/[.:]/, 1)[0]!;
    targets = targets.filter((t) => innerCode === '_id' || innerCode === '_lastUpdated' || innerCode === '_has' || ctx.registry.get(t, innerCode));
    if (targets.length === 0) bad(name, `no target type of '${code}' has a parameter '${innerCode}'`);
    const inner = parseFilter(ctx, targets, rest, value, depth + 1);
    if (!inner) return undefined;
    return { kind: 'chain', name, param: p, targetTypes: targets, inner };
  }
  const colon = name.indexOf(':');
  const code = colon >= 0 ? name.slice(0, colon) : name;
  const modifier = colon >= 0 ? name.slice(colon + 1) : undefined;
  const p = resolveParam(ctx, types, code, name);
  if (!p) {
    if (ctx.systemSearch && depth === 0 && ctx.registry.isKnownCode(code)) {
      bad(name, types[0] === 'Resource' ? 'a search of every type takes only parameters common to all resources (_id, _lastUpdated, _tag, _profile, _security, _source, …); name the types with _type' : `it is not defined for every type in _type (${types.join(', ').slice(0, 200)})`);
    }
    return unknownParam(ctx, name);
  }
  if (modifier !== undefined) {
    const isTypeModifier = p.type === 'reference' && /^[A-Z][A-Za-z]+$/.test(modifier);
    if (isTypeModifier) {
      if (!ctx.registry.isKnownResourceType(modifier)) bad(name, `unknown resource type ${modifier}`);
    } else if (!(modifiersByType[p.type]?.has(modifier) || ('special' in p && modifier === 'missing') || ('special' in p && p.code === '_id' && modifier === 'not'))) {
      bad(name, `modifier ':${modifier}' is not supported on ${p.type} parameters`);
    }
  }
  if ('special' in p && (p.code === '_content' || p.code === '_text') && modifier !== undefined) bad(name, `modifier ':${modifier}' is not supported on ${p.code}`);
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') bad(name, ':missing takes true or false');
    return { kind: 'param', name, param: p, modifier, values: [{ kind: 'missing', v: value === 'true' }] };
  }
  const raws = splitEscaped(value, ',');
  if (raws.length > LIMITS.maxOrValues) bad(name, `at most ${LIMITS.maxOrValues} values may be ORed (${raws.length} given)`);
  const values = raws.map((raw) => {
    if (raw === '') bad(name, 'empty value');
    if (raw.length > LIMITS.maxValueLength) bad(name, `a value is too long (at most ${LIMITS.maxValueLength} characters each)`);
    return parseValue(p, name, raw, modifier, ctx.registry, ctx.baseUrl);
  });
  const listable = values.filter((v) => arrayCompilable(v, modifier)).length;
  if (values.length - listable > LIMITS.maxOrConditions) {
    bad(name, `at most ${LIMITS.maxOrConditions} values of this kind may be ORed (token codes, references, ids and exact uris: ${LIMITS.maxOrValues})`);
  }
  return { kind: 'param', name, param: p, modifier, values };
}

/** Whether a value joins the others in one array parameter (see `sql/lists.ts`), not an OR branch of its own. */
export function arrayCompilable(v: ParamValue, modifier: string | undefined): boolean {
  switch (v.kind) {
    case 'token':
      return (modifier === undefined || modifier === 'not') && v.v.code !== undefined;
    case 'reference':
      return v.v.id !== undefined && v.v.version === undefined && v.v.url === undefined && v.v.identValue === undefined && v.v.identSystem === undefined;
    case 'uri':
      return modifier === undefined;
    default:
      return false;
  }
}

function unknownParam(ctx: Ctx, name: string): undefined {
  if (ctx.strict) throw errors.incorrect(`Unknown search parameter '${name}'`, [name]);
  ctx.unknown.push(name);
  return undefined;
}

function parseInclude(ctx: Ctx, name: string, value: string, rev: boolean): IncludeSpec {
  const iterate = name.endsWith(':iterate') || name.endsWith(':recurse');
  const parts = value.split(':');
  if (value === '*') return { sourceType: '*', iterate, raw: value };
  if (parts.length < 2 || parts.length > 3) bad(name, `'${value.slice(0, 80)}' is not Type:param[:TargetType]`);
  const [sourceType, param, targetType] = parts as [string, string, string | undefined];
  if (!ctx.registry.isKnownResourceType(sourceType)) bad(name, `unknown resource type ${sourceType}`);
  if (targetType !== undefined && !ctx.registry.isKnownResourceType(targetType)) bad(name, `unknown resource type ${targetType}`);
  if (param !== '*') {
    const p = ctx.registry.get(sourceType, param);
    if (!p || p.type !== 'reference') bad(name, `${sourceType} has no reference parameter '${param}'`);
    ctx.registry.require(sourceType, param);
  }
  void rev;
  return { sourceType, param: param === '*' ? undefined : param, targetType, iterate, raw: value };
}

/**
 * Query pairs → SearchRequest. Unknown parameters are collected in `unknown` (or refused when
 * strict); malformed values are a FhirError('incorrect') naming the parameter.
 */
export function parseSearch(registry: SearchParameterRegistry, pairs: ReadonlyArray<readonly [string, string]>, options: ParseOptions = {}): SearchRequest {
  if (pairs.length > LIMITS.maxParams) throw errors.incorrect(`At most ${LIMITS.maxParams} search parameters are allowed`);
  const ctx: Ctx = { registry, strict: options.strict ?? false, systemSearch: options.resourceType === undefined, unknown: [], baseUrl: options.baseUrl };
  let types: string[];
  const systemSearch = options.resourceType === undefined;
  if (options.resourceType !== undefined) {
    if (!registry.isKnownResourceType(options.resourceType)) throw errors.notFound(`Unknown resource type '${options.resourceType}'`);
    types = [options.resourceType];
  } else {
    const typeParam = pairs.filter(([k]) => k === '_type').flatMap(([, v]) => v.split(','));
    for (const t of typeParam) if (!registry.isKnownResourceType(t)) bad('_type', `unknown resource type '${t.slice(0, 64)}'`);
    types = typeParam.length ? [...new Set(typeParam)] : [];
  }
  // For system search without _type, parameters resolve against Resource (common params only).
  const paramTypes = types.length ? types : ['Resource'];
  const req: SearchRequest = {
    types,
    systemSearch,
    filters: [],
    sort: [],
    count: LIMITS.defaultCount,
    includes: [],
    revincludes: [],
    unknown: ctx.unknown,
    canonical: [],
  };
  for (const [name, value] of pairs) {
    if (name.length > 512) bad(name.slice(0, 64), 'parameter name too long (at most 512 characters)');
    // Filters are checked per OR value (parseFilter); result parameters as a whole.
    if (value.length > LIMITS.maxValueLength && resultParams.has(name.split(':', 1)[0]!)) {
      bad(name.slice(0, 64), `too long (at most ${LIMITS.maxValueLength} characters)`);
    }
    const base = name.split(':', 1)[0]!;
    if (name !== '_cursor') req.canonical.push([name, value]);
    if (resultParams.has(base)) {
      switch (base) {
        case '_count': {
          if (!/^\d{1,9}$/.test(value)) bad(name, '_count must be a non-negative integer');
          req.count = Math.min(Number(value), LIMITS.maxCount);
          break;
        }
        case '_total':
          if (value !== 'none' && value !== 'estimate' && value !== 'accurate') bad(name, '_total is none, estimate or accurate');
          req.total = value;
          break;
        case '_summary':
          if (!['true', 'false', 'count', 'data', 'text'].includes(value)) bad(name, '_summary is true, false, count, data or text');
          req.summary = value as SearchRequest['summary'];
          break;
        case '_elements':
          req.elements = value.split(',').map((e) => e.trim()).filter(Boolean);
          if (req.elements.some((e) => !/^[A-Za-z][A-Za-z0-9_.]{0,63}$/.test(e))) bad(name, 'element names only');
          break;
        case '_sort':
          for (const key of value.split(',')) req.sort.push(parseSort(ctx, paramTypes, key));
          if (req.sort.length > LIMITS.maxSortKeys) bad(name, `at most ${LIMITS.maxSortKeys} sort keys`);
          break;
        case '_include':
        case '_revinclude':
          (base === '_include' ? req.includes : req.revincludes).push(parseInclude(ctx, name, value, base === '_revinclude'));
          if (req.includes.length + req.revincludes.length > LIMITS.maxIncludes) bad(name, `at most ${LIMITS.maxIncludes} include paths`);
          break;
        case '_cursor':
          req.cursor = value;
          break;
        default:
          break; // _type handled above; _format/_pretty belong to HTTP
      }
      continue;
    }
    if (name === '_filter') {
      // Each comparison parses as the ordinary parameter it stands for; unknown ones are errors.
      const strictCtx: Ctx = { ...ctx, strict: true };
      req.filters.push(compileFilterExpression(value, { parse: (n, v) => parseFilter(strictCtx, paramTypes, n, v, 0)! }));
      continue;
    }
    const f = parseFilter(ctx, paramTypes, name, value, 0);
    if (f) req.filters.push(f);
  }
  const textFilters = req.filters.filter((f): f is ParamFilter => f.kind === 'param' && 'special' in f.param && (f.param.code === '_content' || f.param.code === '_text'));
  for (const k of req.sort) {
    if (k.name !== '_score') continue;
    if (textFilters.length === 0) bad('_sort', '_score orders by the relevance of _content / _text: give one of them');
    k.textFilters = textFilters;
  }
  if (systemSearch && types.length === 0) {
    for (const f of req.filters) {
      if (f.kind === 'param' && !('special' in f.param) && f.param.resourceType !== 'Resource') bad(f.name, 'system search without _type accepts only parameters common to all resources');
    }
  }
  return req;
}

function parseSort(ctx: Ctx, types: string[], key: string): SortKey {
  const desc = key.startsWith('-');
  const code = desc ? key.slice(1) : key;
  if (!code) bad('_sort', 'empty sort key');
  if (code === '_score') return { name: code, param: scoreParam, desc };
  const p = resolveParam(ctx, types, code, '_sort');
  if (!p) bad('_sort', `unknown sort parameter '${code.slice(0, 64)}'`);
  if (p.type === 'composite' || p.type === 'special') bad('_sort', `cannot sort on ${p.type} parameter '${code}'`);
  return { name: code, param: p, desc };
}
