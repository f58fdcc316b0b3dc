import type { Resource } from 'fhir/r4.js';
import { errors, FhirError } from '../errors.js';

/**
 * Error policy shared by both patch formats (after RFC 5789 §2.2 and FHIR R4 http.html#patch):
 * - 400 `incorrect`: the patch document itself is malformed (wrong shape, unknown operation,
 *   missing or unexpected parts, unparsable path). Retrying it against any resource fails.
 * - 422 `invalid`: the patch is well formed but cannot be applied to *this* resource (path does
 *   not resolve, index out of range, JSON Patch `test` failed, wrong value type, the patch would
 *   remove or change `id`/`resourceType`).
 */
export function malformed(message: string, expression?: string[]): FhirError {
  return errors.incorrect(message, expression);
}

export function unprocessable(
  message: string,
  expression?: string[],
  code: 'processing' | 'invalid' | 'not-found' = 'processing',
): FhirError {
  return errors.invalid([{ severity: 'error', code, diagnostics: message, expression }]);
}

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A patch is applied to a private deep copy so a failure half-way leaves the caller's resource
 * untouched and the result never aliases the input or the patch document.
 */
export function deepCopy<T>(value: T, what: string): T {
  try {
    return structuredClone(value);
  } catch {
    throw malformed(`${what} is not plain JSON data`);
  }
}

/**
 * The server addresses a resource by type and id; a patch that drops or changes either would
 * turn an update into something else, so it is refused whatever the patch format.
 */
export function assertIdentityKept(original: Resource, patched: unknown, operation: string): void {
  if (!isJsonObject(patched)) {
    throw unprocessable(`${operation}: the patched document is no longer a resource`);
  }
  if (patched.resourceType !== original.resourceType) {
    throw unprocessable(
      `${operation}: resourceType cannot be removed or changed by a patch`,
      [original.resourceType],
      'invalid',
    );
  }
  if (patched.id !== original.id) {
    throw unprocessable(
      `${operation}: id cannot be removed or changed by a patch`,
      [`${original.resourceType}.id`],
      'invalid',
    );
  }
}
