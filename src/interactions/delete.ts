import { errors } from '../fhir/errors.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import { findConditional } from './create.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { checkIfMatch } from './update.js';
import { checkId, changeResult } from './versions.js';

/**
 * delete: DELETE [type]/[id] (https://hl7.org/fhir/R4/http.html#delete). The deletion is a
 * version of its own; deleting an already deleted resource succeeds without a new version.
 */
export async function remove(deps: InteractionDeps, resourceType: string, id: string, ifMatch?: string): Promise<InteractionResult> {
  checkId(id);
  return deps.store.transaction((tx) => removeIn(tx, resourceType, id, ifMatch));
}

export async function removeIn(tx: StoreTransaction, resourceType: string, id: string, ifMatch?: string): Promise<InteractionResult> {
  const current = await tx.readForUpdate(resourceType, id);
  if (!current) throw errors.notFound(`${resourceType}/${id} is not known`);
  checkIfMatch(current, ifMatch, `${resourceType}/${id}`);
  if (current.deleted) return { status: 204, version: current };
  const change = await tx.delete(current);
  return changeResult(change, 204);
}

/** Conditional delete: DELETE [type]?[search]; one match is deleted, several are a 412. */
export async function conditionalRemove(deps: InteractionDeps, resourceType: string, query: string): Promise<InteractionResult> {
  return deps.store.transaction((tx) => conditionalRemoveIn(deps, tx, resourceType, query));
}

export async function conditionalRemoveIn(deps: InteractionDeps, tx: StoreTransaction, resourceType: string, query: string): Promise<InteractionResult> {
  const matches = await findConditional(deps, tx, resourceType, query);
  if (matches.length > 1) {
    throw errors.preconditionFailed(`conditional delete "${query.slice(0, 200)}" matches more than one ${resourceType}`);
  }
  if (matches.length === 0) {
    return {
      status: 200,
      body: {
        resourceType: 'OperationOutcome',
        issue: [{ severity: 'information', code: 'not-found', diagnostics: `no ${resourceType} matches "${query.slice(0, 200)}"; nothing was deleted` }],
      },
    };
  }
  return removeIn(tx, resourceType, matches[0]);
}
