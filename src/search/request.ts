import type { TextQuery } from './full-text.js';
import type { CompiledSearchParam } from './registry.js';

/**
 * The parsed form of a search: built once by `parse.ts` from the query pairs, then compiled to
 * SQL (`sql/`) — and usable for in-memory matching later. Plain data, no behaviour.
 */

export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';

export interface TokenValue {
  /** undefined: any system; null: explicitly no system (`|code`). */
  system?: string | null;
  code?: string;
  /** `:of-type` identifier type */
  typeSystem?: string;
  typeCode?: string;
}

export interface DateValue {
  prefix: Prefix;
  low: string;
  high: string;
  raw: string;
}

export interface NumberValue {
  prefix: Prefix;
  /** exact decimal string */
  value: string;
  /** implicit precision range [low, high) */
  low: string;
  high: string;
}

export interface QuantityValue extends NumberValue {
  system?: string;
  code?: string;
  /** canonical (UCUM) form when the unit is convertible */
  canon?: { code: string; value: string; low: string; high: string };
}

export interface ReferenceValue {
  type?: string;
  id?: string;
  version?: string;
  url?: string;
  /** :identifier */
  identSystem?: string | null;
  identValue?: string;
}

export type ParamValue =
  | { kind: 'token'; v: TokenValue }
  | { kind: 'text'; v: string } // token :text
  | { kind: 'valueset'; url: string } // token :in / :not-in
  | { kind: 'string'; v: string }
  | { kind: 'date'; v: DateValue }
  | { kind: 'number'; v: NumberValue }
  | { kind: 'quantity'; v: QuantityValue }
  | { kind: 'reference'; v: ReferenceValue }
  | { kind: 'uri'; v: string }
  | { kind: 'composite'; parts: ParamValue[] }
  | { kind: 'missing'; v: boolean }
  /** `_content` / `_text`: a parsed text query, stemmed with the text search configuration `config` */
  | { kind: 'fulltext'; q: TextQuery; config: string };

/** One `name[:modifier]=v1,v2` (values are ORed). */
export interface ParamFilter {
  kind: 'param';
  name: string;
  param: CompiledSearchParam | SpecialParam;
  modifier?: string;
  values: ParamValue[];
}

/**
 * `_id` and `_lastUpdated` live on the resource table itself; `_content` and `_text` (full
 * text) on the `search_text` row; `_score` is a sort key only (relevance of those two).
 */
export interface SpecialParam {
  code: '_id' | '_lastUpdated' | '_content' | '_text' | '_score';
  type: 'token' | 'date' | 'special';
  special: true;
}

/** `ref[:Type].inner=…` — matches when a referenced resource matches `inner`. */
export interface ChainFilter {
  kind: 'chain';
  name: string;
  param: CompiledSearchParam;
  targetTypes: string[];
  inner: Filter;
}

/** `_has:Type:ref:inner=…` — matches when a resource of `type` refers to this one and matches `inner`. */
export interface HasFilter {
  kind: 'has';
  name: string;
  sourceType: string;
  referenceParam: CompiledSearchParam;
  inner: Filter;
}

/** `_filter` logic (filter-expression.ts): `and` / `or` of its parts, `not` of its one part. */
export interface LogicFilter {
  kind: 'logic';
  name: string;
  op: 'and' | 'or' | 'not';
  parts: Filter[];
}

export type Filter = ParamFilter | ChainFilter | HasFilter | LogicFilter;

export interface SortKey {
  name: string;
  param: CompiledSearchParam | SpecialParam;
  desc: boolean;
  /** `_score`: the `_content` / `_text` filters whose relevance orders the matches */
  textFilters?: ParamFilter[];
}

export interface IncludeSpec {
  sourceType: string;
  /** undefined for `*` */
  param?: string;
  targetType?: string;
  iterate: boolean;
  raw: string;
}

export interface SearchRequest {
  /** Resource types searched (one for type search; several or all for system search). */
  types: string[];
  systemSearch: boolean;
  filters: Filter[];
  sort: SortKey[];
  count: number;
  total?: 'none' | 'estimate' | 'accurate';
  summary?: 'true' | 'count' | 'data' | 'text' | 'false';
  elements?: string[];
  includes: IncludeSpec[];
  revincludes: IncludeSpec[];
  cursor?: string;
  /** parameters ignored under lenient handling: reported in an OperationOutcome */
  unknown: string[];
  /** the pairs that define the search (for self/next links), without paging params */
  canonical: Array<[string, string]>;
}
