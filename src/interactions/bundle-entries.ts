import type { Binary, BundleEntry, FhirResource, Parameters, Resource } from 'fhir/r4.js';
import { errors, FhirError, statusForCategory } from '../fhir/errors.js';
import { mapDatabaseError } from '../storage/pg-errors.js';
import type { PatchDocument } from './patch.js';
import { read, vread } from './read.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { checkId, etagOf } from './versions.js';

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Transaction processing order (R4 http.html#trules): deletes, creates, updates, patches, reads. */
export const ORDER: Record<Method, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 3, GET: 4, HEAD: 4 };

const STATUS_TEXT: Record<number, string> = { 200: '200 OK', 201: '201 Created', 204: '204 No Content', 304: '304 Not Modified' };

export interface ParsedEntry {
  index: number;
  method: Method;
  resourceType: string;
  id?: string;
  versionId?: string;
  query?: string;
  /** For GET entries: the whole relative URL (search, read, history). */
  url: string;
  fullUrl?: string;
  resource?: Resource;
  ifNoneExist?: string;
  ifMatch?: string;
}

export type ReturnPreference = 'minimal' | 'representation' | 'OperationOutcome';

/** An entry's failure, located: the issues say `Bundle.entry[i]`, `index` says it to code. */
export class BundleEntryError extends FhirError {
  constructor(
    readonly index: number,
    cause: FhirError,
  ) {
    super(cause.category, cause.issues, cause.headers);
  }
}

/** A FhirError for what an entry threw: database errors keep their meaning (503 on a lost connection, 409 on a race). */
export function asEntryFhirError(e: unknown, message = 'internal error while processing the entry'): FhirError {
  const mapped = mapDatabaseError(e);
  return mapped instanceof FhirError ? mapped : new FhirError('fault', message);
}

export function entryError(index: number, e: unknown): BundleEntryError {
  if (e instanceof BundleEntryError && e.index === index) return e;
  const err = asEntryFhirError(e);
  const issues = err.issues.map((i) => ({
    ...i,
    diagnostics: `Bundle.entry[${index}]: ${i.diagnostics ?? i.code}`,
    expression: i.expression?.length ? i.expression.map((x) => `Bundle.entry[${index}].resource.${x.replace(/^[A-Z][A-Za-z]+\./, '')}`) : [`Bundle.entry[${index}]`],
  }));
  return new BundleEntryError(index, new FhirError(err.category, issues, err.headers));
}

/** A problem with one entry's request, located at the element that has it. */
function requestError(index: number, element: 'url' | 'method', message: string): BundleEntryError {
  return new BundleEntryError(index, errors.incorrect(`Bundle.entry[${index}]: ${message}`, [`Bundle.entry[${index}].request.${element}`]));
}

/**
 * Splits an entry's request.url (relative, or absolute on our base) into its parts. The entry's
 * JSON shape was checked before (bundle-shape.ts); this decides what the URL means.
 */
export function parseEntry(deps: InteractionDeps, entry: BundleEntry, index: number, isType: (t: string) => boolean): ParsedEntry {
  const request = entry.request;
  if (!request?.method || !request.url) throw requestError(index, request?.method ? 'url' : 'method', 'needs request.method and request.url');
  const method = request.method as Method;
  if (!Object.hasOwn(ORDER, method)) throw requestError(index, 'method', `method ${String(method).slice(0, 40)} is not supported`);
  const shown = request.url.slice(0, 100);
  let url = request.url.startsWith(`${deps.fhirBase}/`) ? request.url.slice(deps.fhirBase.length + 1) : request.url;
  url = url.replace(/^\/+/, '');
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) throw requestError(index, 'url', `"${shown}" is an absolute URL of another server; entries name resources on this one (e.g. Patient/123)`);
  const q = url.indexOf('?');
  const path = q >= 0 ? url.slice(0, q) : url;
  const query = q >= 0 ? url.slice(q + 1) : undefined;
  const segments = path.split('/').filter(Boolean);
  const [resourceType, id, historyWord, versionId] = segments;
  if (!resourceType || !isType(resourceType)) {
    if (method === 'GET' || method === 'HEAD') return { index, method, resourceType: resourceType ?? '', url };
    throw requestError(index, 'url', `"${shown}" does not name a resource type`);
  }
  if (id !== undefined) {
    try {
      checkId(id);
    } catch {
      throw requestError(index, 'url', `"${shown}": "${id.slice(0, 70)}" is not a valid resource id`);
    }
  }
  if (historyWord !== undefined && (historyWord !== '_history' || method !== 'GET')) {
    if (method !== 'GET' && method !== 'HEAD') throw requestError(index, 'url', `unexpected URL "${shown}"`);
  }
  const parsed: ParsedEntry = {
    index,
    method,
    resourceType,
    id,
    versionId: historyWord === '_history' ? versionId : undefined,
    query,
    url,
    fullUrl: entry.fullUrl,
    resource: entry.resource as Resource | undefined,
    ifNoneExist: request.ifNoneExist,
    ifMatch: request.ifMatch,
  };
  const located = (message: string, expression: string) => new BundleEntryError(index, errors.incorrect(`Bundle.entry[${index}]: ${message}`, [`Bundle.entry[${index}].${expression}`]));
  if ((method === 'POST' || method === 'PUT') && !parsed.resource) throw located(`${method} needs a resource`, 'resource');
  if (parsed.resource && (method === 'POST' || method === 'PUT') && parsed.resource.resourceType !== resourceType) {
    throw located(`the resource is a ${String(parsed.resource.resourceType).slice(0, 64)} but the URL names ${resourceType}`, 'resource.resourceType');
  }
  if ((method === 'PUT' || method === 'DELETE' || method === 'PATCH') && !id && !query) {
    throw requestError(index, 'url', `${method} needs an id or a condition in its URL`);
  }
  return parsed;
}

/** A PATCH entry's body: Parameters (FHIRPath Patch) or Binary carrying a JSON Patch. */
export function patchFromEntry(entry: ParsedEntry): PatchDocument {
  const r = entry.resource;
  if (r?.resourceType === 'Parameters') return { kind: 'fhirpath-patch', parameters: r as Parameters };
  if (r?.resourceType === 'Binary') {
    const binary = r as Binary;
    try {
      return { kind: 'json-patch', operations: JSON.parse(Buffer.from(binary.data ?? '', 'base64').toString('utf8')) };
    } catch {
      throw errors.incorrect(`Bundle.entry[${entry.index}]: the Binary does not hold a JSON Patch`);
    }
  }
  throw errors.incorrect(`Bundle.entry[${entry.index}]: PATCH needs a Parameters (FHIRPath Patch) or Binary (JSON Patch) resource`);
}

export function responseEntry(deps: InteractionDeps, result: InteractionResult, prefer: ReturnPreference): BundleEntry {
  const v = result.version;
  const entry: BundleEntry = { response: { status: STATUS_TEXT[result.status] ?? String(result.status) } };
  if (v) {
    entry.fullUrl = `${deps.fhirBase}/${v.resourceType}/${v.id}`;
    entry.response!.etag = etagOf(v.versionId);
    entry.response!.lastModified = v.lastUpdated;
    if (result.location) entry.response!.location = `${v.resourceType}/${v.id}/_history/${v.versionId}`;
    if (prefer === 'representation' && v.json && !v.deleted) entry.resource = JSON.parse(v.json) as FhirResource;
  }
  if (result.body) {
    if (result.body.resourceType === 'OperationOutcome') entry.response!.outcome = result.body;
    else entry.resource = result.body;
  }
  if (prefer === 'OperationOutcome' && !entry.response!.outcome) {
    entry.response!.outcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: entry.response!.status }] };
  }
  return entry;
}

export function errorEntry(e: unknown): BundleEntry {
  const err = asEntryFhirError(e);
  return { response: { status: String(statusForCategory(err.category)), outcome: err.toOutcome() } };
}

/** GET / HEAD entries: read, vread, search, run against committed data. */
export async function readEntry(deps: InteractionDeps, entry: ParsedEntry): Promise<InteractionResult> {
  if (!entry.resourceType) throw errors.incorrect(`Bundle.entry[${entry.index}]: system-level GET is not supported in a Bundle`);
  if (entry.id && entry.versionId) return vread(deps, entry.resourceType, entry.id, entry.versionId);
  if (entry.id) return read(deps, entry.resourceType, entry.id);
  const params = [...new URLSearchParams(entry.query ?? '')];
  const bundle = await deps.search.search({ resourceType: entry.resourceType, params, baseUrl: deps.fhirBase });
  return { status: 200, body: bundle };
}
