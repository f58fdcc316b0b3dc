import type { OperationOutcomeIssue } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';

/**
 * Kick-off parameters of Bulk Data $export (https://hl7.org/fhir/uv/bulkdata/export.html),
 * read from the query string and, for POST, from a Parameters body (both are honoured: some
 * clients put _outputFormat in the URL of a POST).
 */
export type ExportLevel = 'system' | 'patient' | 'group';

export interface ExportParams {
  outputFormat: 'application/fhir+ndjson';
  /** explicit _type list (deduplicated, in request order) */
  types?: string[];
  since?: string;
  /** type → search queries (ORed), unknown parameters already removed under lenient handling */
  typeFilters: Record<string, string[]>;
  /** `patient` parameter (POST, Patient/Group level): restrict to these patient ids */
  patients?: string[];
  /** notes for the manifest's error file (ignored parameters under handling=lenient) */
  warnings: OperationOutcomeIssue[];
}

/** What parameter parsing needs from the search layer (SearchService satisfies it). */
export interface FilterParser {
  parse(input: { resourceType: string; params: [string, string][]; strict?: boolean; baseUrl: string }): { unknown: string[] };
}

export const NDJSON_FORMATS = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);

/** Result-shaping parameters make no sense inside _typeFilter (the spec allows only search criteria). */
const NOT_IN_TYPE_FILTER = new Set(['_count', '_sort', '_include', '_revinclude', '_elements', '_summary', '_total', '_cursor', '_contained', '_containedType', '_type', '_format', '_pretty']);
/** General HTTP parameters that do not change what is exported. */
const IGNORED = new Set(['_format', '_pretty']);
const KNOWN = new Set(['_outputFormat', '_since', '_type', '_typeFilter', 'patient']);

/** year, year-month, date, or dateTime with seconds optional and a time zone required. */
const SINCE = /^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d{1,9})?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)))?)?)?$/;

export function parseSince(raw: string, options: { allowFuture?: boolean } = {}): string {
  if (!SINCE.test(raw)) throw errors.incorrect(`_since must be a FHIR instant such as 2024-01-31T10:00:00Z, got "${raw.slice(0, 40)}"`, ['_since']);
  const full = raw.length === 4 ? `${raw}-01-01` : raw.length === 7 ? `${raw}-01` : raw;
  const time = Date.parse(full.length === 10 ? `${full}T00:00:00Z` : full);
  // Date.parse rolls 2024-02-30 over to March: compare the calendar date back.
  const [y, m, d] = full.slice(0, 10).split('-').map(Number);
  const check = new Date(Date.UTC(y!, m! - 1, d!));
  if (Number.isNaN(time) || check.getUTCMonth() !== m! - 1 || check.getUTCDate() !== d) {
    throw errors.incorrect(`_since "${raw.slice(0, 40)}" is not a real date`, ['_since']);
  }
  if (!options.allowFuture && time > Date.now()) throw errors.incorrect(`_since "${raw.slice(0, 40)}" is in the future`, ['_since']);
  return new Date(time).toISOString();
}

/** `Prefer: respond-async` is required: without it the request is refused (400), as the spec allows. */
export function checkPrefer(prefer: string | undefined): { lenient: boolean } {
  const tokens = (prefer ?? '').split(/[,;]/).map((t) => t.trim().toLowerCase());
  if (!tokens.includes('respond-async')) {
    throw errors.incorrect('Bulk Data kick-off needs the header "Prefer: respond-async" (this operation only runs asynchronously)');
  }
  return { lenient: tokens.includes('handling=lenient') };
}

/** The kick-off's Accept is the format of an error answer: FHIR JSON. Required, as the Bulk Data test kit checks. */
export function checkAccept(accept: string | undefined): void {
  if (!accept || accept.trim() === '') throw errors.incorrect('Bulk Data kick-off needs the header "Accept: application/fhir+json"');
  const ok = accept.split(',').some((part) => /^\s*(application\/fhir\+json|application\/json|application\/\*|\*\/\*|\*)\s*(;|$)/i.test(part));
  if (!ok) throw new FhirError('not-acceptable', `Accept "${accept.slice(0, 60)}" is not supported: kick-off answers are application/fhir+json`);
}

interface ParametersBody {
  resourceType?: unknown;
  parameter?: Array<Record<string, unknown> & { name?: unknown }>;
}

/** Name/value pairs of a Parameters body; values of any primitive value[x], or a reference. */
function bodyPairs(body: unknown): Array<[string, string]> {
  if (body === undefined || body === null || body === '') return [];
  const p = body as ParametersBody;
  if (typeof p !== 'object' || p.resourceType !== 'Parameters') throw errors.incorrect('the body of a POST kick-off must be a Parameters resource');
  const pairs: Array<[string, string]> = [];
  for (const [i, param] of (p.parameter ?? []).entries()) {
    if (typeof param?.name !== 'string') throw errors.incorrect('every parameter needs a name', [`Parameters.parameter[${i}].name`]);
    const valueKey = Object.keys(param).find((k) => k.startsWith('value'));
    const value = valueKey ? param[valueKey] : undefined;
    if (typeof value === 'string') pairs.push([param.name, value]);
    else if (value && typeof value === 'object' && typeof (value as { reference?: unknown }).reference === 'string') {
      pairs.push([param.name, (value as { reference: string }).reference]);
    } else throw errors.incorrect(`parameter ${param.name} has no usable value`, [`Parameters.parameter[${i}]`]);
  }
  return pairs;
}

function patientId(reference: string, fhirBase: string): string {
  const local = reference.startsWith(`${fhirBase}/`) ? reference.slice(fhirBase.length + 1) : reference;
  const m = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(local);
  if (!m) throw errors.incorrect(`patient must be a reference to a Patient on this server, got "${reference.slice(0, 80)}"`, ['patient']);
  return m[1]!;
}

export interface ParseContext {
  level: ExportLevel;
  isResourceType(type: string): boolean;
  search: FilterParser;
  fhirBase: string;
  lenient: boolean;
}

export function parseExportParams(query: URLSearchParams, body: unknown, ctx: ParseContext): ExportParams {
  const pairs: Array<[string, string]> = [...query, ...bodyPairs(body)];
  const params: ExportParams = { outputFormat: 'application/fhir+ndjson', typeFilters: {}, warnings: [] };
  const typeFilterRaw: string[] = [];
  for (const [name, value] of pairs) {
    if (IGNORED.has(name)) continue;
    if (!KNOWN.has(name)) throw new FhirError('incorrect', [{ severity: 'error', code: 'not-supported', diagnostics: `$export parameter ${name.slice(0, 64)} is not supported`, expression: [name.slice(0, 64)] }]);
    if (name === '_outputFormat') {
      if (!NDJSON_FORMATS.has(value)) throw errors.incorrect(`_outputFormat ${value.slice(0, 60)} is not supported; use application/fhir+ndjson`, ['_outputFormat']);
    } else if (name === '_since') {
      if (params.since) throw errors.incorrect('_since may be given once', ['_since']);
      params.since = parseSince(value);
    } else if (name === '_type') {
      for (const t of value.split(',').map((s) => s.trim()).filter(Boolean)) {
        if (!ctx.isResourceType(t)) throw errors.incorrect(`_type names an unknown resource type "${t.slice(0, 64)}"`, ['_type']);
        params.types = params.types ?? [];
        if (!params.types.includes(t)) params.types.push(t);
      }
    } else if (name === '_typeFilter') {
      typeFilterRaw.push(value);
    } else if (name === 'patient') {
      if (ctx.level === 'system') throw errors.incorrect('the patient parameter applies to Patient and Group level export only', ['patient']);
      params.patients = [...new Set([...(params.patients ?? []), ...value.split(',').map((v) => patientId(v.trim(), ctx.fhirBase))])];
    }
  }
  // Commas separate queries; a comma inside a query arrives escaped (%2C) and is decoded below.
  for (const filter of typeFilterRaw.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean)) {
    addTypeFilter(params, filter, ctx);
  }
  return params;
}

function addTypeFilter(params: ExportParams, filter: string, ctx: ParseContext): void {
  const q = filter.indexOf('?');
  const type = q >= 0 ? filter.slice(0, q) : filter;
  if (!ctx.isResourceType(type)) throw errors.incorrect(`_typeFilter "${filter.slice(0, 80)}" does not start with a resource type`, ['_typeFilter']);
  if (params.types && !params.types.includes(type)) throw errors.incorrect(`_typeFilter for ${type}, which _type does not list`, ['_typeFilter']);
  let pairs = [...new URLSearchParams(q >= 0 ? filter.slice(q + 1) : '')] as [string, string][];
  const shaping = pairs.filter(([k]) => NOT_IN_TYPE_FILTER.has(k.split(':')[0]!));
  if (shaping.length) throw errors.incorrect(`_typeFilter may hold search criteria only, not ${shaping[0]![0].slice(0, 40)}`, ['_typeFilter']);
  // strict unless Prefer: handling=lenient, as Bulk Data 2.0 asks of servers that support _typeFilter
  const parsed = ctx.search.parse({ resourceType: type, params: pairs, strict: !ctx.lenient, baseUrl: ctx.fhirBase });
  if (parsed.unknown.length) {
    const unknown = new Set(parsed.unknown);
    pairs = pairs.filter(([k]) => !unknown.has(k));
    params.warnings.push({
      severity: 'warning',
      code: 'not-supported',
      diagnostics: `_typeFilter ${type}: search parameter(s) ${[...unknown].join(', ')} not supported and ignored (Prefer: handling=lenient)`,
      expression: ['_typeFilter'],
    });
  }
  // A filter left without criteria matches every resource of its type.
  const list = (params.typeFilters[type] ??= []);
  if (pairs.length === 0) list.push('');
  else list.push(new URLSearchParams(pairs).toString());
}
