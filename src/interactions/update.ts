import type { Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import type { StoredVersion } from '../storage/types.js';
import { findConditional } from './create.js';
import { requireResourceBody } from './resource-body.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { checkId, changeResult, versionFromETag } from './versions.js';
import { draftConflict, impliedIfMatch, requireDraftVersion } from '../workflows/clinical-drafts.js';

/** update: PUT [type]/[id] (https://hl7.org/fhir/R4/http.html#update), update-as-create included. */
export async function update(deps: InteractionDeps, resourceType: string, id: string, body: unknown, ifMatch?: string): Promise<InteractionResult> {
  checkId(id);
  const resource = requireResourceBody(body, resourceType);
  if (resource.id === undefined) throw errors.incorrect('the resource in an update must carry its id', ['id']);
  if (resource.id !== id) {
    throw errors.incorrect(`the resource id "${String(resource.id).slice(0, 64)}" does not match the URL id "${id}"`, ['id']);
  }
  // A Composition is read first: a draft note is edited only from a known version (clinical-drafts.ts);
  // a Patient too: whether the update lifts a legal hold depends on the stored version (operations/erase.ts).
  if (ifMatch !== undefined || resourceType === 'Composition' || resourceType === 'Patient') return deps.store.transaction((tx) => updateIn(tx, resource, ifMatch));
  // Without If-Match nothing needs reading first: one statement stores the next version.
  return deps.store.transaction(async (tx) => {
    const change = await tx.put(resource, 'PUT');
    const created = !change.previous || change.previous.deleted;
    return changeResult(change, created ? 201 : 200, created);
  });
}

/** The update step inside an open transaction. */
export async function updateIn(tx: StoreTransaction, resource: Resource, ifMatch?: string): Promise<InteractionResult> {
  const id = resource.id as string;
  const current = await tx.readForUpdate(resource.resourceType, id);
  ifMatch = impliedIfMatch(current, resource, ifMatch);
  requireDraftVersion(current, ifMatch);
  checkIfMatch(current, ifMatch, `${resource.resourceType}/${id}`);
  if (!current || current.deleted) {
    const change = await tx.create(resource, 'PUT', id, current);
    return changeResult(change, 201, true);
  }
  const change = await tx.update(resource, current, 'PUT');
  return changeResult(change, 200);
}

/** If-Match (https://hl7.org/fhir/R4/http.html#concurrency): the client's version must be current. */
export function checkIfMatch(current: StoredVersion | undefined, ifMatch: string | undefined, what: string): void {
  if (ifMatch === undefined) return;
  const expected = versionFromETag(ifMatch);
  if (!current || current.deleted) {
    throw errors.preconditionFailed(`If-Match ${ifMatch} given but ${what} has no current version`);
  }
  if (current.versionId !== expected) {
    // A stale edit of a draft note is a 409 naming both versions (clinical-drafts.ts); 412 otherwise.
    throw draftConflict(current, expected) ?? errors.preconditionFailed(`version conflict: ${what} is at version ${current.versionId}, If-Match asked for ${expected}`);
  }
}

/** Conditional update: PUT [type]?[search] (https://hl7.org/fhir/R4/http.html#cond-update). */
export async function conditionalUpdate(deps: InteractionDeps, resourceType: string, query: string, body: unknown, ifMatch?: string): Promise<InteractionResult> {
  const resource = requireResourceBody(body, resourceType);
  return deps.store.transaction((tx) => conditionalUpdateIn(deps, tx, resource, query, ifMatch));
}

export async function conditionalUpdateIn(deps: InteractionDeps, tx: StoreTransaction, resource: Resource, query: string, ifMatch?: string): Promise<InteractionResult> {
  const matches = await findConditional(deps, tx, resource.resourceType, query);
  if (matches.length > 1) {
    throw errors.preconditionFailed(`conditional update "${query.slice(0, 200)}" matches more than one ${resource.resourceType}`);
  }
  if (matches.length === 0) {
    if (resource.id !== undefined) {
      checkId(resource.id);
      return updateIn(tx, resource, ifMatch);
    }
    const change = await tx.create(resource, 'PUT');
    return changeResult(change, 201, true);
  }
  const [matchId] = matches;
  if (resource.id !== undefined && resource.id !== matchId) {
    throw errors.incorrect(`the resource id "${resource.id}" differs from the matching ${resource.resourceType}/${matchId}`, ['id']);
  }
  return updateIn(tx, { ...resource, id: matchId }, ifMatch);
}
