import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Composition, FhirResource, Resource } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import type { InteractionDeps, InteractionResult } from '../interactions/types.js';
import { changeResult, parseStored } from '../interactions/versions.js';
import type { AccessFilter } from '../search/sql/access.js';

/**
 * `Composition/[id]/$document` and `Composition/$document?id=…`
 * (https://hl7.org/fhir/R4/composition-operation-document.html, documents.html): a document
 * Bundle built from a stored Composition.
 *
 * - The Composition comes first, then every resource it references (subject, encounter, author,
 *   attester, custodian, event detail, section authors, focus and entries, at any depth of
 *   sections), then the resources those reference (the performer of an Observation in a
 *   section, the organisation of an author, …): two levels, at most MAX_ENTRIES entries. A
 *   versioned reference (`Observation/1/_history/2`) takes that version.
 * - Only what the caller may read is included, as with `_include`: what is outside its scopes
 *   or patient compartment, missing or deleted is left out.
 * - Each call makes a new document: a new `identifier` (urn:uuid) and `timestamp`, entries with
 *   absolute `fullUrl`s on this server. The document Bundle is the answer itself (not wrapped in
 *   a searchset), as FHIR servers commonly return it.
 * - `persist=true` stores it as a Bundle resource (a create, with its rules, history and audit;
 *   the caller needs create rights on Bundle) and answers its Location.
 * - `graph` (a GraphDefinition choosing the content) is not supported: 400, never ignored.
 */

/** Most entries one document carries (the Composition included); beyond it: 400 too-costly. */
export const MAX_ENTRIES = 1_000;
/** Ids per search when resolving references of one type. */
const ID_CHUNK = 100;

export const DOCUMENT_OPERATION = { Composition: [{ name: 'document', definition: 'http://hl7.org/fhir/OperationDefinition/Composition-document' }] };

export interface DocumentOptions {
  persist: boolean;
  /** What the caller may see (undefined: everything). */
  accessFilter?: AccessFilter;
}

/**
 * The `id`, `persist` and `graph` parameters, from the query or a POSTed Parameters body. An `id`
 * given as a full URL must name a Composition on this server (`fhirBase`).
 */
export function documentRequest(query: URLSearchParams, body: unknown, pathId: string | undefined, fhirBase: string): { id: string; persist: boolean } {
  const values = new Map<string, string[]>();
  const add = (name: string, value: string) => values.set(name, [...(values.get(name) ?? []), value]);
  for (const [name, value] of query) if (!name.startsWith('_')) add(name, value);
  if (body !== undefined && body !== null && !(typeof body === 'string' && body.length === 0)) {
    const parameters = body as { resourceType?: unknown; parameter?: unknown };
    if (typeof parameters !== 'object' || parameters.resourceType !== 'Parameters') throw errors.incorrect('$document takes its parameters in the query or as a Parameters resource');
    for (const p of Array.isArray(parameters.parameter) ? (parameters.parameter as Array<Record<string, unknown>>) : []) {
      const value = p.valueUri ?? p.valueString ?? p.valueId ?? (typeof p.valueBoolean === 'boolean' ? String(p.valueBoolean) : undefined);
      if (typeof p.name === 'string' && typeof value === 'string') add(p.name, value);
      else throw errors.incorrect(`$document parameter ${String(p.name).slice(0, 40)} needs a value`, ['Parameters.parameter']);
    }
  }
  for (const name of values.keys()) {
    if (name === 'graph') throw errors.incorrect('$document: the graph parameter (a GraphDefinition choosing the content) is not supported by this server', ['graph']);
    if (name !== 'id' && name !== 'persist') throw errors.incorrect(`$document has no parameter ${name.slice(0, 40)}`, [name.slice(0, 40)]);
    if (values.get(name)!.length > 1) throw errors.incorrect(`$document parameter ${name} given more than once`, [name]);
  }
  const persistValue = values.get('persist')?.[0];
  if (persistValue !== undefined && persistValue !== 'true' && persistValue !== 'false') throw errors.incorrect('$document persist must be true or false', ['persist']);
  let id = pathId;
  const given = values.get('id')?.[0];
  if (given !== undefined) {
    if (pathId !== undefined) throw errors.incorrect('$document on an instance takes no id parameter', ['id']);
    // A simple id, or a full URL naming a Composition: only this server's are resolved.
    const match = /^(?:(.*)\/)?Composition\/([A-Za-z0-9\-.]{1,64})$/.exec(given) ?? /^()([A-Za-z0-9\-.]{1,64})$/.exec(given);
    if (!match) throw errors.incorrect(`$document id "${given.slice(0, 100)}" is neither a Composition id nor a Composition URL`, ['id']);
    if (match[1] && match[1] !== fhirBase) {
      throw errors.incorrect(`$document: the Composition is on another server (${match[1].slice(0, 100)}); only this server's Compositions are composed`, ['id']);
    }
    id = match[2];
  }
  if (id === undefined) throw errors.incorrect('$document needs the Composition: Composition/[id]/$document or ?id=', ['id']);
  return { id, persist: persistValue === 'true' };
}

interface Target {
  type: string;
  id: string;
  version?: string;
}

/** Literal references to resources on this server (relative, or absolute under `fhirBase`), in document order. */
export function referencesIn(resource: unknown, fhirBase: string): Target[] {
  const out: Target[] = [];
  const walk = (value: unknown) => {
    if (Array.isArray(value)) {
      for (const v of value) walk(v);
      return;
    }
    if (typeof value !== 'object' || value === null) return;
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (k === 'reference' && typeof v === 'string') {
        const target = parseReference(v, fhirBase);
        if (target) out.push(target);
      } else {
        walk(v);
      }
    }
  };
  walk(resource);
  return out;
}

function parseReference(reference: string, fhirBase: string): Target | undefined {
  const local = reference.startsWith(`${fhirBase}/`) ? reference.slice(fhirBase.length + 1) : reference;
  const match = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/([0-9]{1,18}))?$/.exec(local);
  return match ? { type: match[1]!, id: match[2]!, ...(match[3] ? { version: match[3] } : {}) } : undefined;
}

const keyOf = (t: Target) => `${t.type}/${t.id}${t.version ? `/_history/${t.version}` : ''}`;

/** The referenced resources the caller may see, each once. */
async function resolve(deps: InteractionDeps, targets: Target[], accessFilter: AccessFilter | undefined): Promise<Resource[]> {
  const out: Resource[] = [];
  const current = new Map<string, string[]>();
  const visible = accessFilter ? deps.search.versionJudge(accessFilter, deps.fhirBase) : () => true;
  for (const t of targets) {
    if (!deps.validator.isResourceType(t.type)) continue;
    if (t.version !== undefined) {
      const version = await deps.store.vread(t.type, t.id, t.version);
      if (!version || version.deleted) continue;
      const resource = parseStored(version);
      if (!visible(resource)) continue;
      out.push(resource);
    } else {
      current.set(t.type, [...(current.get(t.type) ?? []), t.id]);
    }
  }
  for (const [type, ids] of current) {
    for (let i = 0; i < ids.length; i += ID_CHUNK) {
      const chunk = ids.slice(i, i + ID_CHUNK);
      const found = await deps.search.search({ resourceType: type, params: [['_id', chunk.join(',')], ['_count', String(chunk.length)]], baseUrl: deps.fhirBase, accessFilter });
      for (const e of found.entry ?? []) if (e.search?.mode !== 'outcome' && e.resource) out.push(e.resource);
    }
  }
  return out;
}

/** Builds the document Bundle of a Composition the caller has read (and stores it when asked). */
export async function composeDocument(deps: InteractionDeps, composition: Composition, options: DocumentOptions): Promise<InteractionResult> {
  const seen = new Set<string>([`Composition/${composition.id}`, `Composition/${composition.id}/_history/${composition.meta?.versionId}`]);
  const included: Resource[] = [composition];
  const versions = new Set<string>([`Composition/${composition.id}/_history/${composition.meta?.versionId}`]);
  let frontier: Resource[] = [composition];
  for (let level = 0; level < 2 && frontier.length > 0; level++) {
    const targets: Target[] = [];
    for (const resource of frontier) {
      for (const t of referencesIn(resource, deps.fhirBase)) {
        const key = keyOf(t);
        if (seen.has(key) || (t.version === undefined && seen.has(`${t.type}/${t.id}`))) continue;
        seen.add(key);
        targets.push(t);
      }
    }
    if (included.length + targets.length > MAX_ENTRIES) {
      throw new FhirError('too-costly', `$document: Composition/${composition.id} references more than ${MAX_ENTRIES - 1} resources; a document this large is not composed`);
    }
    frontier = [];
    for (const resource of await resolve(deps, targets, options.accessFilter)) {
      // The same version reached by a versioned and an unversioned reference is one entry.
      const version = `${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
      if (versions.has(version)) continue;
      versions.add(version);
      seen.add(`${resource.resourceType}/${resource.id}`);
      included.push(resource);
      frontier.push(resource);
    }
  }
  const now = new Date().toISOString();
  const document: Omit<Bundle, 'resourceType'> = {
    identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${randomUUID()}` },
    type: 'document',
    timestamp: now,
    entry: included.map((resource): BundleEntry => ({ fullUrl: `${deps.fhirBase}/${resource.resourceType}/${resource.id}`, resource: resource as FhirResource })),
  };
  // Not stored: the answer alone. Stored: the store writes its meta (version, time).
  if (!options.persist) return { status: 200, body: { resourceType: 'Bundle', meta: { lastUpdated: now }, ...document } };
  const stored = await deps.store.transaction((tx) => tx.create({ resourceType: 'Bundle', ...document }, 'POST'));
  const result = changeResult(stored, 200, true);
  return { ...result, body: parseStored(result.version!) as Bundle };
}
