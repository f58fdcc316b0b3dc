import type { Parameters, Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import { isXmlMediaType } from '../fhir/xml/xml-common.js';
import { applyFhirPathPatch, applyJsonPatch } from '../fhir/patch/index.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import { findConditional } from './create.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { checkIfMatch } from './update.js';
import { requireDraftVersion } from '../workflows/clinical-drafts.js';
import { checkId, parseStored, changeResult } from './versions.js';

/** The two patch formats of R4 (https://hl7.org/fhir/R4/http.html#patch). */
export type PatchDocument = { kind: 'json-patch'; operations: unknown } | { kind: 'fhirpath-patch'; parameters: Parameters };

/** Reads the patch format from the request content type and body. */
export function patchDocumentFrom(contentType: string | undefined, body: unknown): PatchDocument {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'application/json-patch+json') return { kind: 'json-patch', operations: body };
  // FHIRPath Patch is a Parameters resource, in either FHIR format (XML bodies arrive as JSON: src/http/fhir-formats.ts).
  if (type === 'application/fhir+json' || type === 'application/json' || isXmlMediaType(type)) {
    if (typeof body === 'object' && body !== null && (body as { resourceType?: unknown }).resourceType === 'Parameters') {
      return { kind: 'fhirpath-patch', parameters: body as Parameters };
    }
    if (Array.isArray(body)) return { kind: 'json-patch', operations: body };
    throw errors.incorrect('a FHIRPath Patch body must be a Parameters resource');
  }
  throw errors.incorrect('PATCH needs Content-Type application/json-patch+json, or application/fhir+json or application/fhir+xml (FHIRPath Patch); XML Patch is not supported');
}

/** patch: PATCH [type]/[id]. */
export async function patch(deps: InteractionDeps, resourceType: string, id: string, document: PatchDocument, ifMatch?: string): Promise<InteractionResult> {
  checkId(id);
  return deps.store.transaction((tx) => patchIn(tx, resourceType, id, document, ifMatch));
}

export async function patchIn(tx: StoreTransaction, resourceType: string, id: string, document: PatchDocument, ifMatch?: string): Promise<InteractionResult> {
  const current = await tx.readForUpdate(resourceType, id);
  if (!current) throw errors.notFound(`${resourceType}/${id} is not known`);
  if (current.deleted) throw errors.gone(`${resourceType}/${id} was deleted`);
  requireDraftVersion(current, ifMatch);
  checkIfMatch(current, ifMatch, `${resourceType}/${id}`);
  const before = parseStored(current);
  const after: Resource =
    document.kind === 'json-patch' ? applyJsonPatch(before, document.operations) : applyFhirPathPatch(before, document.parameters);
  if (after.resourceType !== resourceType || after.id !== id) {
    throw errors.invalid([{ severity: 'error', code: 'invalid', diagnostics: 'a patch may not change resourceType or id' }]);
  }
  const change = await tx.update(after, current, 'PATCH');
  return changeResult(change, 200);
}

/** Conditional patch: PATCH [type]?[search]. */
export async function conditionalPatch(deps: InteractionDeps, resourceType: string, query: string, document: PatchDocument, ifMatch?: string): Promise<InteractionResult> {
  return deps.store.transaction(async (tx) => {
    const matches = await findConditional(deps, tx, resourceType, query);
    if (matches.length === 0) throw errors.notFound(`no ${resourceType} matches "${query.slice(0, 200)}"`);
    if (matches.length > 1) throw errors.preconditionFailed(`conditional patch "${query.slice(0, 200)}" matches more than one ${resourceType}`);
    return patchIn(tx, resourceType, matches[0], document, ifMatch);
  });
}
