import { errors, FhirError } from '../fhir/errors.js';
import type { InteractionDeps, InteractionResult } from './types.js';
import { checkId, etagOf } from './versions.js';

/** read: GET [type]/[id] (https://hl7.org/fhir/R4/http.html#read). */
export async function read(deps: InteractionDeps, resourceType: string, id: string): Promise<InteractionResult> {
  checkId(id);
  const version = await deps.store.read(resourceType, id);
  if (!version) throw errors.notFound(`${resourceType}/${id} is not known`);
  if (version.deleted) {
    throw new FhirError('gone', `${resourceType}/${id} was deleted`, { ETag: etagOf(version.versionId) });
  }
  return { status: 200, version };
}

/** vread: GET [type]/[id]/_history/[vid]. */
export async function vread(deps: InteractionDeps, resourceType: string, id: string, versionId: string): Promise<InteractionResult> {
  checkId(id);
  const version = await deps.store.vread(resourceType, id, versionId);
  if (!version) throw errors.notFound(`${resourceType}/${id}/_history/${versionId.slice(0, 20)} is not known`);
  if (version.deleted) {
    throw new FhirError('gone', `${resourceType}/${id} version ${versionId} is a deletion`, { ETag: etagOf(version.versionId) });
  }
  return { status: 200, version };
}
