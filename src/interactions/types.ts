import type { Bundle, FhirResource, Meta, OperationOutcome, Resource } from 'fhir/r4.js';
import type { AccessFilter } from '../search/sql/access.js';
import type { ResourceStore } from '../storage/resource-store.js';
import type { StoredVersion } from '../storage/types.js';

/** What the search layer offers to interactions (conditional operations, search, transactions). */
export interface SearchPort {
  findIds(resourceType: string, query: string, opts: { limit: number; executor?: unknown }): Promise<string[]>;
  search(input: {
    resourceType?: string;
    compartment?: { type: string; id: string };
    params: [string, string][];
    baseUrl: string;
    strict?: boolean;
    /** The caller's scope filter (see src/search/sql/access.ts); undefined sees everything. */
    accessFilter?: AccessFilter;
  }): Promise<Bundle>;
  /** Whether a resource body (not yet stored) is in compartment `c`. */
  inCompartment(resource: Resource, c: { type: string; id: string }): boolean;
  /** Judges single versions (any, not only current) against an access filter, in memory. */
  versionJudge(filter: AccessFilter, baseUrl: string): (resource: Resource) => boolean;
  /** The profiles, tags and security labels in use on the current resources of `types` (`$meta`). */
  metaSummary(types: readonly string[]): Promise<Meta>;
}

export interface ValidationPort {
  validate(resource: unknown, opts?: { profiles?: string[]; warnings?: boolean }): OperationOutcome['issue'];
  isResourceType(type: string): boolean;
  /** Every resource type of the base specification. */
  resourceTypes(): string[];
}

/** Everything an interaction needs; built once in app.ts. Interactions know nothing of HTTP. */
export interface InteractionDeps {
  store: ResourceStore;
  search: SearchPort;
  validator: ValidationPort;
  /** FHIR base URL, e.g. http://localhost:8080/fhir */
  fhirBase: string;
}

/** HTTP preconditions of a request, already read from its headers. */
export interface Preconditions {
  ifMatch?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifNoneExist?: string;
}

/** The result of an interaction: a status, the stored version it concerns, or a body. */
export interface InteractionResult {
  status: number;
  /** The version the result is about (gives ETag, Last-Modified, Location). */
  version?: StoredVersion;
  /** A body other than the version's own JSON (Bundle, OperationOutcome, Parameters). */
  body?: FhirResource;
  /** Whether Location should be sent (create). */
  location?: boolean;
  /** Warnings to return with the result, e.g. an unknown profile. */
  issues?: OperationOutcome['issue'];
}
