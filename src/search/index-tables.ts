/**
 * PHASE 1 DONE (stable API) — storage integration:
 *   - `indexTables` (this file): every search index table and its columns (after resource_type,
 *     resource_id). Storage writes each table's rows with ONE statement per DB transaction:
 *       INSERT INTO <table> (resource_type, resource_id, <columns…>)
 *       SELECT * FROM unnest($1::text[], $2::text[], $3::<type>[], …)
 *     (`unnestInsertSql(spec)` below builds that text; values come from `rowsToColumns`), and
 *     deletes a resource's rows with `DELETE FROM <table> WHERE resource_type = $1 AND resource_id = $2`
 *     for every table on update/delete (`deleteSql`).
 *   - `SearchIndexer.extract(resource)` (indexer.ts) → IndexRows.
 *   - migration `migrations/0002-search-index.ts` creates the tables and their indexes.
 *
 * Schema decisions (why):
 *   - One table per search parameter TYPE, rows keyed by (resource_type, resource_id, param):
 *     a handful of narrow tables are cheap to write set-based and easy to index; no FKs and
 *     (resource_type, resource_id) first so they can be co-located shards.
 *   - Dates are ranges [low, high) (high exclusive, ±infinity for open Periods): precision-aware
 *     search is plain range arithmetic on two btree-indexed columns.
 *   - Numbers/quantities are ranges too (a point stores low = high); Range values fill both.
 *   - Quantities also store a UCUM-canonical code + bounds when the unit is convertible.
 *   - `sort_asc` / `sort_desc` flag the ONE row per (resource, param) holding the smallest /
 *     largest sort key, so `_sort` is a join on a flagged row instead of an aggregate. A lone row
 *     carries both flags; a resource with several rows for a param has at least one row without
 *     both (the `*_multi` partial indexes find those few resources).
 *   - INVARIANT the search relies on: index rows exist only for the CURRENT version of a
 *     resource that is not deleted (a write replaces them, a delete removes them, reindex
 *     skips deleted ones). Searches and counts read index rows alone to know a resource is
 *     live; any writer of these tables (import, reindex, repair) must keep it.
 *   - Text columns use COLLATE "C": byte order makes `LIKE 'abc%'` index-friendly and sorting
 *     deterministic across PGlite and PostgreSQL; case/accent folding is done in JS
 *     (`values.ts#normalizeString`) identically at write and query time.
 */

/**
 * `regconfig`: a text search configuration name. `tsvector`: the row value is TEXT, stored as
 * `to_tsvector(<the row's regconfig column>, text)` — the words are parsed and stemmed by
 * PostgreSQL in the write statement itself (full-text search, `search_text`).
 */
export type IndexColumnType = 'text' | 'numeric' | 'timestamptz' | 'boolean' | 'integer' | 'regconfig' | 'tsvector';

/** columns AFTER resource_type, resource_id */
export interface IndexTableSpec {
  table: string;
  columns: ReadonlyArray<{ name: string; type: IndexColumnType }>;
}

/** table name → rows; each row's values in `columns` order (null allowed; timestamps as ISO strings; numerics as strings or numbers). */
export type IndexRows = Map<string, unknown[][]>;

const t = (name: string) => ({ name, type: 'text' as const });
const n = (name: string) => ({ name, type: 'numeric' as const });
const ts = (name: string) => ({ name, type: 'timestamptz' as const });
const b = (name: string) => ({ name, type: 'boolean' as const });

export const TOKEN = 'search_token';
export const STRING = 'search_string';
export const DATE = 'search_date';
export const NUMBER = 'search_number';
export const QUANTITY = 'search_quantity';
export const REFERENCE = 'search_reference';
export const URI = 'search_uri';
export const COMPOSITE = 'search_composite';
export const FULLTEXT = 'search_text';

export const indexTables: readonly IndexTableSpec[] = [
  {
    // system/code of Coding, CodeableConcept, Identifier (value), ContactPoint (value), code,
    // boolean…; `text` = folded display / CodeableConcept.text / Identifier.type.text (:text);
    // type_system/type_code = Identifier.type coding (:of-type).
    table: TOKEN,
    columns: [t('param'), t('system'), t('code'), t('text'), t('type_system'), t('type_code'), b('sort_asc'), b('sort_desc')],
  },
  {
    // value = folded (lower-case, no accents) for default/:contains; exact = as written (:exact)
    table: STRING,
    columns: [t('param'), t('value'), t('exact'), b('sort_asc'), b('sort_desc')],
  },
  { table: DATE, columns: [t('param'), ts('low'), ts('high'), b('sort_asc'), b('sort_desc')] },
  { table: NUMBER, columns: [t('param'), n('low'), n('high'), b('sort_asc'), b('sort_desc')] },
  {
    table: QUANTITY,
    columns: [
      t('param'), n('low'), n('high'), t('system'), t('code'), t('unit'),
      t('canon_code'), n('canon_low'), n('canon_high'), b('sort_asc'), b('sort_desc'),
    ],
  },
  {
    // target_type/target_id/target_version for literal references (relative or absolute URLs
    // whose base is ours are stored relative); url for absolute external refs and canonicals
    // (version in target_version); ident_* = Reference.identifier for :identifier; display =
    // Reference.display folded as token text is, for :text (a reference with only a display
    // has a row with it alone). display is last: added by migration 0036 (nullable).
    table: REFERENCE,
    columns: [
      t('param'), t('target_type'), t('target_id'), t('target_version'), t('url'),
      t('ident_system'), t('ident_value'), b('sort_asc'), b('sort_desc'), t('display'),
    ],
  },
  { table: URI, columns: [t('param'), t('value'), b('sort_asc'), b('sort_desc')] },
  {
    // one row per combination of component values of ONE composite instance (e.g. one
    // Observation.component): c1 is token-like, c2 token/string/quantity/date/number, c3 number.
    // A quantity c2 is stored UCUM-canonical in c2_* when convertible (unit searches compare
    // across units) and also as written in c2_value_* (a search value without a unit compares
    // with the value as stored, like the plain quantity parameter).
    table: COMPOSITE,
    columns: [
      t('param'), t('c1_system'), t('c1_code'), t('c2_system'), t('c2_code'),
      n('c2_low'), n('c2_high'), ts('c2_date_low'), ts('c2_date_high'), n('c3_low'), n('c3_high'),
      n('c2_value_low'), n('c2_value_high'),
    ],
  },
  {
    // ONE row per resource (full-text search, src/search/full-text.ts): `content` = all its text
    // (`_content`), `narrative` = text.div without tags (`_text`, null without a narrative),
    // both as tsvectors of the text search configuration `config` (FHIR_TEXT_SEARCH_LANGUAGE).
    table: FULLTEXT,
    columns: [
      { name: 'config', type: 'regconfig' as const },
      { name: 'content', type: 'tsvector' as const },
      { name: 'narrative', type: 'tsvector' as const },
    ],
  },
];

export const indexTableByName: ReadonlyMap<string, IndexTableSpec> = new Map(indexTables.map((s) => [s.table, s]));

/** `INSERT … SELECT * FROM unnest($1::text[], …)` for one table; parameters in column order. */
export function unnestInsertSql(spec: IndexTableSpec): string {
  const cols = ['resource_type', 'resource_id', ...spec.columns.map((c) => c.name)];
  const types = ['text', 'text', ...spec.columns.map((c) => (c.type === 'tsvector' ? 'text' : c.type))];
  const params = types.map((ty, i) => `$${i + 1}::${ty}[]`).join(', ');
  if (!spec.columns.some((c) => c.type === 'tsvector')) return `INSERT INTO ${spec.table} (${cols.join(', ')}) SELECT * FROM unnest(${params})`;
  const config = spec.columns.findIndex((c) => c.type === 'regconfig');
  if (config < 0) throw new Error(`${spec.table}: a tsvector column needs a regconfig column`);
  const projections = cols.map((_, i) => (i >= 2 && spec.columns[i - 2]!.type === 'tsvector' ? `to_tsvector(u.c${config + 2}, u.c${i})` : `u.c${i}`));
  return `INSERT INTO ${spec.table} (${cols.join(', ')}) SELECT ${projections.join(', ')} FROM unnest(${params}) AS u(${cols.map((_, i) => `c${i}`).join(', ')})`;
}

export function deleteSql(spec: IndexTableSpec): string {
  return `DELETE FROM ${spec.table} WHERE resource_type = $1 AND resource_id = $2`;
}

/**
 * Rows of many resources for one table → one array per column (the unnest parameters).
 * `rows` items are [resourceType, resourceId, rowValues].
 */
export function rowsToColumns(spec: IndexTableSpec, rows: ReadonlyArray<readonly [string, string, readonly unknown[]]>): unknown[][] {
  const cols: unknown[][] = Array.from({ length: spec.columns.length + 2 }, () => new Array<unknown>(rows.length));
  for (let i = 0; i < rows.length; i++) {
    const [rt, id, values] = rows[i]!;
    cols[0]![i] = rt;
    cols[1]![i] = id;
    for (let c = 0; c < spec.columns.length; c++) cols[c + 2]![i] = values[c] ?? null;
  }
  return cols;
}
