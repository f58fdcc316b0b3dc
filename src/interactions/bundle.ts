import { randomUUID } from 'node:crypto';
import type { Binary, Bundle, BundleEntry, FhirResource, Parameters, Resource } from 'fhir/r4.js';
import { errors, FhirError, statusForCategory } from '../fhir/errors.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import { conditionalReferences, rewriteReferences } from './bundle-references.js';
import { findConditional } from './create.js';
import { conditionalRemoveIn, removeIn } from './delete.js';
import { patchIn, type PatchDocument } from './patch.js';
import { read, vread } from './read.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { conditionalUpdateIn, updateIn } from './update.js';
import { checkId, etagOf, changeResult } from './versions.js';

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Transaction processing order (R4 http.html#trules): deletes, creates, updates, patches, reads. */
const ORDER: Record<Method, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 3, GET: 4, HEAD: 4 };

const STATUS_TEXT: Record<number, string> = { 200: '200 OK', 201: '201 Created', 204: '204 No Content', 304: '304 Not Modified' };

interface ParsedEntry {
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

function entryError(index: number, e: unknown): FhirError {
  const err = e instanceof FhirError ? e : new FhirError('fault', 'internal error while processing the entry');
  const issues = err.issues.map((i) => ({
    ...i,
    diagnostics: `Bundle.entry[${index}]: ${i.diagnostics ?? i.code}`,
    expression: i.expression?.length ? i.expression.map((x) => `Bundle.entry[${index}].resource.${x.replace(/^[A-Z][A-Za-z]+\./, '')}`) : [`Bundle.entry[${index}]`],
  }));
  return new FhirError(err.category, issues, err.headers);
}

/** Splits an entry's request.url (relative, or absolute on our base) into its parts. */
function parseEntry(deps: InteractionDeps, entry: BundleEntry, index: number, isType: (t: string) => boolean): ParsedEntry {
  const request = entry.request;
  if (!request?.method || !request.url) throw errors.incorrect(`Bundle.entry[${index}] needs request.method and request.url`);
  const method = request.method as Method;
  if (!(method in ORDER)) throw errors.incorrect(`Bundle.entry[${index}]: method ${String(method)} is not supported`);
  let url = request.url.startsWith(`${deps.fhirBase}/`) ? request.url.slice(deps.fhirBase.length + 1) : request.url;
  url = url.replace(/^\/+/, '');
  const q = url.indexOf('?');
  const path = q >= 0 ? url.slice(0, q) : url;
  const query = q >= 0 ? url.slice(q + 1) : undefined;
  const segments = path.split('/').filter(Boolean);
  const [resourceType, id, historyWord, versionId] = segments;
  if (!resourceType || !isType(resourceType)) {
    if (method === 'GET' || method === 'HEAD') return { index, method, resourceType: resourceType ?? '', url };
    throw errors.incorrect(`Bundle.entry[${index}]: "${request.url.slice(0, 100)}" does not name a resource type`);
  }
  if (id !== undefined) checkId(id);
  if (historyWord !== undefined && (historyWord !== '_history' || method !== 'GET')) {
    if (method !== 'GET' && method !== 'HEAD') throw errors.incorrect(`Bundle.entry[${index}]: unexpected URL "${request.url.slice(0, 100)}"`);
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
  if ((method === 'POST' || method === 'PUT') && !parsed.resource) {
    throw errors.incorrect(`Bundle.entry[${index}]: ${method} needs a resource`);
  }
  if (parsed.resource && (method === 'POST' || method === 'PUT') && parsed.resource.resourceType !== resourceType) {
    throw errors.incorrect(`Bundle.entry[${index}]: the resource is a ${parsed.resource.resourceType} but the URL names ${resourceType}`);
  }
  if (method === 'PUT' && !id && !query) throw errors.incorrect(`Bundle.entry[${index}]: PUT needs an id or a condition in its URL`);
  if (method === 'DELETE' && !id && !query) throw errors.incorrect(`Bundle.entry[${index}]: DELETE needs an id or a condition in its URL`);
  if (method === 'PATCH' && !id && !query) throw errors.incorrect(`Bundle.entry[${index}]: PATCH needs an id or a condition in its URL`);
  return parsed;
}

/** A PATCH entry's body: Parameters (FHIRPath Patch) or Binary carrying a JSON Patch. */
function patchFromEntry(entry: ParsedEntry): PatchDocument {
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

function responseEntry(deps: InteractionDeps, result: InteractionResult, prefer: ReturnPreference): BundleEntry {
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

function errorEntry(e: unknown): BundleEntry {
  const err = e instanceof FhirError ? e : new FhirError('fault', 'internal error while processing the entry');
  return { response: { status: String(statusForCategory(err.category)), outcome: err.toOutcome() } };
}

/** GET / HEAD entries: read, vread, search, run against committed data. */
async function readEntry(deps: InteractionDeps, entry: ParsedEntry): Promise<InteractionResult> {
  if (!entry.resourceType) throw errors.incorrect(`Bundle.entry[${entry.index}]: system-level GET is not supported in a Bundle`);
  if (entry.id && entry.versionId) return vread(deps, entry.resourceType, entry.id, entry.versionId);
  if (entry.id) return read(deps, entry.resourceType, entry.id);
  const params = [...new URLSearchParams(entry.query ?? '')];
  const bundle = await deps.search.search({ resourceType: entry.resourceType, params, baseUrl: deps.fhirBase });
  return { status: 200, body: bundle };
}

/** batch and transaction posted to the base URL (https://hl7.org/fhir/R4/http.html#transaction). */
export async function processBundle(deps: InteractionDeps, body: unknown, prefer: ReturnPreference): Promise<InteractionResult> {
  if (typeof body !== 'object' || body === null || (body as Resource).resourceType !== 'Bundle') {
    throw errors.incorrect('POST to the base URL needs a Bundle of type batch or transaction');
  }
  const bundle = body as Bundle;
  if (bundle.type !== 'batch' && bundle.type !== 'transaction') {
    throw errors.incorrect(`Bundle.type must be batch or transaction, not ${String(bundle.type)}`, ['Bundle.type']);
  }
  const isType = (t: string) => deps.validator.isResourceType(t);
  const entries = bundle.entry ?? [];
  if (bundle.type === 'batch') return processBatch(deps, entries, isType, prefer);
  return processTransaction(deps, entries, isType, prefer);
}

async function processBatch(deps: InteractionDeps, entries: BundleEntry[], isType: (t: string) => boolean, prefer: ReturnPreference): Promise<InteractionResult> {
  const out: BundleEntry[] = [];
  for (let index = 0; index < entries.length; index++) {
    try {
      const entry = parseEntry(deps, entries[index], index, isType);
      let result: InteractionResult;
      if (entry.method === 'GET' || entry.method === 'HEAD') {
        result = await readEntry(deps, entry);
      } else {
        result = await deps.store.transaction(async (tx) => {
          if (entry.resource) await resolveConditionalReferences(deps, tx, [entry]);
          const ids = await assignIdentities(deps, tx, [entry]);
          return executeWrite(deps, tx, entry, ids);
        });
      }
      out.push(responseEntry(deps, result, entry.method === 'GET' ? 'representation' : prefer));
    } catch (e) {
      out.push(errorEntry(e));
    }
  }
  return { status: 200, body: { resourceType: 'Bundle', type: 'batch-response', entry: out } };
}

async function processTransaction(deps: InteractionDeps, entries: BundleEntry[], isType: (t: string) => boolean, prefer: ReturnPreference): Promise<InteractionResult> {
  const parsed = entries.map((e, i) => parseEntry(deps, e, i, isType));
  const fullUrls = new Set<string>();
  for (const p of parsed) {
    if (!p.fullUrl) continue;
    if (fullUrls.has(p.fullUrl)) throw errors.incorrect(`Bundle.entry[${p.index}]: fullUrl ${p.fullUrl.slice(0, 100)} appears twice`);
    fullUrls.add(p.fullUrl);
  }
  const results = new Array<InteractionResult>(parsed.length);
  const reads: ParsedEntry[] = [];
  await deps.store.transaction(async (tx) => {
    // Resources are changed in place below (ids, references): work on copies.
    for (const p of parsed) if (p.resource) p.resource = structuredClone(p.resource);
    const ids = await assignIdentities(deps, tx, parsed);
    await resolveConditionalReferences(deps, tx, parsed);
    const writes = parsed.filter((p) => p.method !== 'GET' && p.method !== 'HEAD').sort((a, b) => ORDER[a.method] - ORDER[b.method] || a.index - b.index);
    for (const entry of writes) {
      try {
        results[entry.index] = await executeWrite(deps, tx, entry, ids);
      } catch (e) {
        throw entryError(entry.index, e);
      }
    }
    reads.push(...parsed.filter((p) => p.method === 'GET' || p.method === 'HEAD'));
  });
  // Reads see the committed outcome of the transaction; they run after commit so they can
  // use the search engine's own connection.
  for (const entry of reads) {
    try {
      results[entry.index] = await readEntry(deps, entry);
    } catch (e) {
      const err = e instanceof FhirError ? e : new FhirError('fault', 'read failed');
      results[entry.index] = { status: err.status, body: err.toOutcome() };
    }
  }
  return {
    status: 200,
    body: {
      resourceType: 'Bundle',
      type: 'transaction-response',
      entry: parsed.map((p) => responseEntry(deps, results[p.index], p.method === 'GET' ? 'representation' : prefer)),
    },
  };
}

/** Where each write entry goes: a fresh id, an existing match, or its URL id. */
interface Identities {
  /** fullUrl → Type/id for rewriting references. */
  references: Map<string, string>;
  /** entry index → target id (new id for POST, matched id for conditional ones). */
  targets: Map<number, { id: string; existing: boolean }>;
}

async function assignIdentities(deps: InteractionDeps, tx: StoreTransaction, entries: ParsedEntry[]): Promise<Identities> {
  const references = new Map<string, string>();
  const targets = new Map<number, { id: string; existing: boolean }>();
  for (const entry of entries) {
    try {
      if (entry.method === 'POST') {
        let target: { id: string; existing: boolean } = { id: randomUUID(), existing: false };
        if (entry.ifNoneExist) {
          const matches = await findConditional(deps, tx, entry.resourceType, entry.ifNoneExist);
          if (matches.length > 1) throw errors.preconditionFailed(`ifNoneExist "${entry.ifNoneExist.slice(0, 200)}" matches ${matches.length} resources`);
          if (matches.length === 1) target = { id: matches[0], existing: true };
        }
        targets.set(entry.index, target);
        if (entry.fullUrl) references.set(entry.fullUrl, `${entry.resourceType}/${target.id}`);
      } else if (entry.method === 'PUT' && entry.id) {
        if (entry.fullUrl) references.set(entry.fullUrl, `${entry.resourceType}/${entry.id}`);
      } else if (entry.method === 'PUT' && entry.query) {
        const matches = await findConditional(deps, tx, entry.resourceType, entry.query);
        if (matches.length > 1) throw errors.preconditionFailed(`conditional update "${entry.query.slice(0, 200)}" matches more than one ${entry.resourceType}`);
        const id = matches[0] ?? entry.resource?.id ?? randomUUID();
        targets.set(entry.index, { id, existing: matches.length === 1 });
        if (entry.fullUrl) references.set(entry.fullUrl, `${entry.resourceType}/${id}`);
      }
    } catch (e) {
      throw entryError(entry.index, e);
    }
  }
  for (const entry of entries) if (entry.resource) rewriteReferences(entry.resource, references);
  return { references, targets };
}

/** `Patient?identifier=…` references resolve to the one match; none or several fail the entry. */
async function resolveConditionalReferences(deps: InteractionDeps, tx: StoreTransaction, entries: ParsedEntry[]): Promise<void> {
  const resolved = new Map<string, string>();
  for (const entry of entries) {
    if (!entry.resource) continue;
    const conditional = conditionalReferences(entry.resource);
    for (const reference of conditional) {
      if (resolved.has(reference)) continue;
      const q = reference.indexOf('?');
      const type = reference.slice(0, q);
      if (!deps.validator.isResourceType(type)) throw entryError(entry.index, errors.incorrect(`conditional reference ${reference.slice(0, 100)} names no resource type`));
      const matches = await deps.search.findIds(type, reference.slice(q + 1), { limit: 2, executor: await tx.executor() });
      if (matches.length !== 1) {
        throw entryError(
          entry.index,
          errors.preconditionFailed(`conditional reference ${reference.slice(0, 200)} matches ${matches.length === 0 ? 'no' : 'more than one'} ${type}`),
        );
      }
      resolved.set(reference, `${type}/${matches[0]}`);
    }
    if (conditional.size > 0) rewriteReferences(entry.resource, resolved);
  }
}

async function executeWrite(deps: InteractionDeps, tx: StoreTransaction, entry: ParsedEntry, ids: Identities): Promise<InteractionResult> {
  switch (entry.method) {
    case 'POST': {
      const target = ids.targets.get(entry.index)!;
      if (target.existing) {
        const version = await tx.read(entry.resourceType, target.id);
        if (version) return { status: 200, version };
      }
      const change = await tx.create({ ...entry.resource!, id: target.id }, 'POST', target.id);
      return changeResult(change, 201, true);
    }
    case 'PUT': {
      if (entry.id) {
        if (entry.resource!.id !== undefined && entry.resource!.id !== entry.id) {
          throw errors.incorrect(`the resource id "${entry.resource!.id}" does not match the URL id "${entry.id}"`, ['id']);
        }
        return updateIn(tx, { ...entry.resource!, id: entry.id }, entry.ifMatch);
      }
      const target = ids.targets.get(entry.index);
      if (target) return updateIn(tx, { ...entry.resource!, id: target.id }, entry.ifMatch);
      return conditionalUpdateIn(deps, tx, entry.resource!, entry.query!, entry.ifMatch);
    }
    case 'PATCH': {
      const document = patchFromEntry(entry);
      if (entry.id) return patchIn(tx, entry.resourceType, entry.id, document, entry.ifMatch);
      const matches = await findConditional(deps, tx, entry.resourceType, entry.query!);
      if (matches.length !== 1) {
        throw matches.length === 0 ? errors.notFound(`no ${entry.resourceType} matches "${entry.query}"`) : errors.preconditionFailed(`conditional patch matches more than one ${entry.resourceType}`);
      }
      return patchIn(tx, entry.resourceType, matches[0], document, entry.ifMatch);
    }
    case 'DELETE':
      if (entry.id) {
        const current = await tx.read(entry.resourceType, entry.id);
        // In a Bundle, deleting what is not there is not an error (nothing to do).
        if (!current) return { status: 204 };
        return removeIn(tx, entry.resourceType, entry.id, entry.ifMatch);
      }
      return conditionalRemoveIn(deps, tx, entry.resourceType, entry.query!);
    default:
      throw errors.incorrect(`Bundle.entry[${entry.index}]: ${entry.method} is not a write`);
  }
}

