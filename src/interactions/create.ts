import type { Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import { requireResourceBody } from './resource-body.js';
import type { InteractionDeps, InteractionResult, Preconditions } from './types.js';
import { changeResult } from './versions.js';

/**
 * create: POST [type] (https://hl7.org/fhir/R4/http.html#create), with conditional create
 * through If-None-Exist. The server assigns the id; a client id in the body is ignored.
 */
export async function create(deps: InteractionDeps, resourceType: string, body: unknown, pre: Preconditions = {}): Promise<InteractionResult> {
  const resource = requireResourceBody(body, resourceType);
  return deps.store.transaction((tx) => createIn(deps, tx, resource, pre.ifNoneExist));
}

/** The create step inside an open transaction (shared with transaction Bundles). */
export async function createIn(deps: InteractionDeps, tx: StoreTransaction, resource: Resource, ifNoneExist?: string): Promise<InteractionResult> {
  if (ifNoneExist !== undefined) {
    const existing = await findConditional(deps, tx, resource.resourceType, ifNoneExist);
    if (existing.length > 1) {
      throw errors.preconditionFailed(`If-None-Exist "${ifNoneExist.slice(0, 200)}" matches ${existing.length} resources`);
    }
    if (existing.length === 1) {
      const version = await tx.read(resource.resourceType, existing[0]);
      if (version) return { status: 200, version };
    }
  }
  const { id: _ignored, ...withoutId } = resource;
  const change = await tx.create(withoutId as Resource, 'POST');
  return changeResult(change, 201, true);
}

/**
 * Resolves a conditional query (If-None-Exist, conditional update/delete) inside `tx`,
 * holding a lock on the condition so racing requests decide one after the other.
 */
export async function findConditional(deps: InteractionDeps, tx: StoreTransaction, resourceType: string, query: string): Promise<string[]> {
  const normalized = query.replace(/^\?/, '').trim();
  if (normalized === '') throw errors.incorrect('a conditional request needs search parameters');
  await tx.lockCondition(`${resourceType}?${normalized}`);
  return deps.search.findIds(resourceType, normalized, { limit: 2, executor: await tx.executor() });
}
