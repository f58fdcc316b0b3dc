import type { Resource } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';

/** Checks that a request body is a resource of the type the URL names. */
export function requireResourceBody(body: unknown, resourceType: string): Resource {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw errors.incorrect('the request body must be a FHIR resource (a JSON object)');
  }
  const type = (body as { resourceType?: unknown }).resourceType;
  if (typeof type !== 'string') throw errors.incorrect('the resource has no resourceType', ['resourceType']);
  if (type !== resourceType) {
    throw errors.incorrect(`the body is a ${type.slice(0, 64)} but the URL names ${resourceType}`, ['resourceType']);
  }
  return body as Resource;
}
