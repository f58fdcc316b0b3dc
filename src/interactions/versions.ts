import type { Resource } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import type { StoredVersion } from '../storage/types.js';
import type { ResourceChange } from '../storage/types.js';
import type { InteractionResult } from './types.js';

/** Weak ETag of a version, as the spec writes it: W/"3". */
export function etagOf(versionId: string): string {
  return `W/"${versionId}"`;
}

/** Accepts `W/"3"`, `"3"` and `3`; anything else is a 400. */
export function versionFromETag(value: string): string {
  const match = /^\s*(?:W\/)?"?([0-9]{1,18})"?\s*$/.exec(value);
  if (!match) throw errors.incorrect(`If-Match value "${value.slice(0, 40)}" is not an ETag like W/"1"`);
  return match[1];
}

/** The result of a write: the stored version, plus any warnings the write pipeline raised. */
export function changeResult(change: ResourceChange, status: number, location = false): InteractionResult {
  const result: InteractionResult = { status, version: storedFromChange(change, change.json ?? null) };
  if (location) result.location = true;
  if (change.issues?.length) result.issues = change.issues;
  return result;
}

export function storedFromChange(change: ResourceChange, json: string | null): StoredVersion {
  return {
    resourceType: change.resourceType,
    id: change.id,
    versionId: change.versionId,
    lastUpdated: change.lastUpdated,
    deleted: change.method === 'DELETE',
    json,
  };
}

export function parseStored(version: StoredVersion): Resource {
  if (version.json === null) throw new FhirError('gone', `${version.resourceType}/${version.id} is deleted`);
  return JSON.parse(version.json) as Resource;
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

export function checkId(id: string): void {
  if (!ID.test(id)) throw errors.incorrect(`"${id.slice(0, 70)}" is not a valid resource id`);
}
