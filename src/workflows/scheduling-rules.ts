import type { Resource } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import type { ResourceChange } from '../storage/types.js';

/**
 * What the front-desk rules (scheduling.ts, inpatient.ts, patient-registration.ts) share: the
 * refusal they throw and the version a write replaces.
 */

/**
 * A refused business rule (issue 12): 409 when the data is fine but the state of the hospital
 * forbids it (slot taken, bed occupied, too late to cancel), 422 when the request itself can
 * never pass (no discharge summary). Code `business-rule`; the message is for the front desk.
 */
export function businessRule(category: 'conflict' | 'invalid', message: string, expression?: string[]): FhirError {
  return new FhirError(category, [{ severity: 'error', code: 'business-rule', diagnostics: message, ...(expression ? { expression } : {}) }]);
}

/**
 * The current version a write replaces, locked until commit, or undefined for a new resource.
 * A plain update (`tx.put`) learns what it replaced only once written, so it is read here.
 */
export async function replacedVersion<T extends Resource>(tx: StoreTransaction, change: ResourceChange): Promise<T | undefined> {
  if (change.previous) return change.previous.json && !change.previous.deleted ? (JSON.parse(change.previous.json) as T) : undefined;
  // A server-assigned id (POST) was never used before.
  if (change.method === 'POST') return undefined;
  const current = await tx.readForUpdate(change.resourceType, change.id);
  return current?.json && !current.deleted ? (JSON.parse(current.json) as T) : undefined;
}

/** `Type/id` of a literal reference (relative or absolute URL) when it names `type`, else undefined. */
export function referenceTo(type: string, reference: string | undefined): string | undefined {
  const match = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(reference ?? '');
  return match && match[1] === type ? match[2] : undefined;
}
