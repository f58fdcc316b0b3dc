import type { Composition, Resource } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import type { StoredVersion } from '../storage/types.js';

/**
 * Concurrent edits of a draft note (seed 004 FR-EMR-002 "collaborative editing with conflict
 * resolution", issue 13 §1). A draft (preliminary) Composition is saved every 30 s by each
 * editor, so an edit must say which version it started from: `If-Match` or the body's
 * `meta.versionId` (PUT), `If-Match` (PATCH). An edit of an older version is a 409 whose
 * OperationOutcome names both versions (the client's and the current one), so the editor can
 * fetch the current one and merge ($diff helps). Other types keep the spec's 412 for a stale
 * If-Match (src/interactions/update.ts).
 */

function currentDraft(current: StoredVersion | undefined): boolean {
  if (!current?.json || current.deleted || current.resourceType !== 'Composition') return false;
  return (JSON.parse(current.json) as Composition).status === 'preliminary';
}

/**
 * The If-Match of an update: the header, or for an edit of a draft note the body's
 * meta.versionId (as W/"n"). Other writes keep ignoring meta.versionId, as the spec has it.
 */
export function impliedIfMatch(current: StoredVersion | undefined, resource: Resource, ifMatch: string | undefined): string | undefined {
  if (ifMatch !== undefined || !currentDraft(current)) return ifMatch;
  const version = resource.meta?.versionId;
  return version && /^[0-9]{1,18}$/.test(version) ? `W/"${version}"` : undefined;
}

/** An edit of a draft note without the version it started from: 428-like, sent as 422 business-rule. */
export function requireDraftVersion(current: StoredVersion | undefined, ifMatch: string | undefined): void {
  if (ifMatch !== undefined || !currentDraft(current)) return;
  throw new FhirError('invalid', [
    {
      severity: 'error',
      code: 'business-rule',
      diagnostics: `Composition/${current!.id} is a draft edited by several people: send the version you edited (If-Match: W/"${current!.versionId}" or meta.versionId).`,
      expression: ['Composition.meta.versionId'],
    },
  ]);
}

/** The 409 of a stale edit of a draft note; undefined for anything else (the caller answers 412). */
export function draftConflict(current: StoredVersion | undefined, expected: string): FhirError | undefined {
  if (!currentDraft(current)) return undefined;
  const c = current!;
  return new FhirError('conflict', [
    {
      severity: 'error',
      code: 'conflict',
      diagnostics: `Composition/${c.id} was changed by someone else: you edited version ${expected}, the current version is ${c.versionId}. Load version ${c.versionId} (GET Composition/${c.id}/$diff?from=${expected}&to=${c.versionId} shows what changed), merge and save again.`,
      details: { text: `client version ${expected}; current version ${c.versionId}` },
      expression: ['Composition.meta.versionId'],
    },
  ]);
}
