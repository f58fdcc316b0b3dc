import type { OperationOutcomeIssue, Resource } from 'fhir/r4.js';

/** One stored version of a resource as read from the database. */
export interface StoredVersion {
  resourceType: string;
  id: string;
  versionId: string;
  lastUpdated: string;
  deleted: boolean;
  /** The resource as JSON text exactly as stored (null for a delete version). */
  json: string | null;
  /** Only on history rows: the interaction that made this version. */
  method?: WriteMethod;
}

export type WriteMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A write done inside a store transaction; handed to before/after-commit hooks. */
export interface ResourceChange {
  method: WriteMethod;
  resourceType: string;
  id: string;
  versionId: string;
  lastUpdated: string;
  /** The new content; undefined for a delete. */
  resource?: Resource;
  /** The version this change replaced, if any. */
  previous?: StoredVersion;
  /** The JSON text that was stored (set once the change is written). */
  json?: string;
  /** Warnings and information from before-write hooks (e.g. an unknown profile). */
  issues?: OperationOutcomeIssue[];
}

/** Column types of search index tables (defined by the search layer). */
/** `tsvector`: the value is text, stored as to_tsvector(<the row's regconfig column>, value). */
export type IndexColumnType = 'text' | 'numeric' | 'timestamptz' | 'boolean' | 'integer' | 'regconfig' | 'tsvector';

export interface IndexTableLayout {
  table: string;
  /** Columns after (resource_type, resource_id). */
  columns: ReadonlyArray<{ name: string; type: IndexColumnType }>;
}

/** What the store needs from the search layer to keep index rows current. */
export interface SearchIndexSource {
  readonly tables: readonly IndexTableLayout[];
  /** table → rows, values in `columns` order. */
  extract(resource: Resource): Map<string, unknown[][]>;
}
