import type { IndexTableLayout, ResourceChange } from './types.js';

export interface PendingWrite {
  change: ResourceChange;
  /** Resource JSON text; null for a delete. */
  json: string | null;
  indexRows: Map<string, unknown[][]>;
  /**
   * An update by id that did not read the current row first: the statement computes the
   * version (current + 1, or 1) and writes it into the content's meta.versionId. Its history
   * row takes that version number too, so a writer that committed between this statement's
   * snapshot and its row lock makes the history insert fail with a duplicate key (retried),
   * never a lost update or stale index rows.
   */
  blind?: boolean;
}

/** One write statement as text and parameters (sent as is: nothing to compile per write). */
export interface WriteStatement {
  sql: string;
  parameters: string[];
  /**
   * Statements of one shape have the same text (it depends only on the layout and on what
   * this key says), so a connection can prepare the text once and then execute it by name.
   */
  shape: string;
  /** The blind writes of this statement, in the order of the rows it returns. */
  blind: PendingWrite[];
}

/** What the statement returns for each blind write. */
export interface BlindResult {
  t: string;
  i: string;
  /** the version written */
  v: string;
  /** the version replaced (null: none) */
  pv: string | null;
  pd: boolean | null;
  pu: Date | string | null;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/** Keeps bound parameters (two per replaced resource) far below PostgreSQL's 65,535. */
const MAX_WRITES_PER_STATEMENT = 5_000;
/**
 * Keeps each jsonb parameter far below PostgreSQL's 255 MiB jsonb limit (and a statement's
 * memory modest): a batch of large resources is split into several statements.
 */
const MAX_JSON_CHARS_PER_STATEMENT = 64 * 1024 * 1024;

function checkedIdentifier(name: string): string {
  // Table and column names come from our own index layout, never from input; check anyway.
  if (!IDENTIFIER.test(name)) throw new Error(`invalid identifier ${name}`);
  return name;
}

/**
 * The statements that write a batch of versions: normally ONE, in which current rows are
 * upserted, history appended, old index rows of replaced resources deleted and new index rows
 * inserted, each table fed by a single JSON parameter. One round trip however many resources
 * and index rows.
 */
export function writeStatements(tables: readonly IndexTableLayout[], writes: readonly PendingWrite[]): WriteStatement[] {
  // A resource written twice in one batch would make the upsert touch a row twice; such
  // batches are split (rare: reads flush first, and a blind put is written on its own).
  const statements: WriteStatement[] = [];
  const seen = new Set<string>();
  let start = 0;
  let chars = 0;
  for (let i = 0; i < writes.length; i++) {
    const key = `${writes[i].change.resourceType}/${writes[i].change.id}`;
    const size = writes[i].json?.length ?? 0;
    if (i > start && (seen.has(key) || i - start >= MAX_WRITES_PER_STATEMENT || chars + size > MAX_JSON_CHARS_PER_STATEMENT)) {
      statements.push(statementFor(tables, writes.slice(start, i)));
      seen.clear();
      start = i;
      chars = 0;
    }
    seen.add(key);
    chars += size;
  }
  if (start < writes.length) statements.push(statementFor(tables, writes.slice(start)));
  return statements;
}

/**
 * The fixed texts of each index table's statements, built once per layout. `$P` stands for
 * the table's rows parameter, `$K` for the VALUES list of replaced keys; the CTE names `newN` and
 * `oldN` take the table's number.
 */
interface TableTexts {
  /** rows of new resources: a plain insert */
  insert: string;
  /** the new rows as a CTE `newN`, for batches that replace resources */
  rows: string;
  /** the rows of the replaced versions as a CTE `oldN` (read through the (resource_type, resource_id) index) */
  oldRows: string;
  /** inserts the rows of `newN` that are not among those of `oldN` */
  insertChanged: string;
  /** deletes the replaced versions' rows that are not among the rows of `newN` */
  deleteChanged: string;
  /** deletes every row of the replaced versions (the batch has no rows for this table) */
  deleteAll: string;
}

const tableTexts = new WeakMap<readonly IndexTableLayout[], TableTexts[]>();

function tableTextsFor(tables: readonly IndexTableLayout[]): TableTexts[] {
  let texts = tableTexts.get(tables);
  if (!texts) {
    texts = tables.map((layout) => {
      const table = checkedIdentifier(layout.table);
      const columns = layout.columns.map((c) => checkedIdentifier(c.name));
      // Values are unpacked positionally with ->> and casts. jsonb: ->> on a json element
      // re-parses it for every column, on jsonb it is a lookup (measured: faster than
      // per-column unnest() arrays too).
      // A tsvector column is built from its text by PostgreSQL with the row's regconfig
      // (full-text search: the words are parsed and stemmed here, not in Node).
      const config = layout.columns.findIndex((c) => c.type === 'regconfig');
      const projections = layout.columns.map((c, k) => (c.type === 'tsvector' ? `to_tsvector((r->>${config})::regconfig, r->>${k})` : `(r->>${k})::${c.type}`));
      const select = `SELECT w->>0, w->>1, ${projections.join(', ')}
      FROM jsonb_array_elements($P::jsonb) AS w, jsonb_array_elements(w->2) AS r`;
      const all = ['resource_type', 'resource_id', ...columns];
      // A row "is there already" when every column is equal (nulls equal). The key columns
      // (resource_type, resource_id: the database collation on both sides) are compared as
      // they are; the other text columns byte-wise (COLLATE "C", what the value columns use;
      // equality is the same in any deterministic collation), so columns of either collation
      // compare without a conflict.
      const same = all
        .map((c, k) => {
          if (k < 2) return `o.${c} = x.${c}`;
          const collate = layout.columns[k - 2]!.type === 'text' ? ' COLLATE "C"' : '';
          return k === 2 ? `o.${c} = x.${c}${collate}` : `o.${c} IS NOT DISTINCT FROM x.${c}${collate}`;
        })
        .join(' AND ');
      return {
        insert: `INSERT INTO ${table} (${all.join(', ')})
      ${select}`,
        rows: `newN (${all.join(', ')}) AS (${select})`,
        // The old rows are read once by key through the (resource_type, resource_id, param)
        // index, as the delete reads them. (A probe per new row keyed on all three columns let
        // the planner pick a value index led by (resource_type, param) instead, walking every
        // row of the param.)
        oldRows: `oldN AS MATERIALIZED (SELECT ${all.join(', ')} FROM ${table} WHERE (resource_type, resource_id) IN (VALUES $K))`,
        insertChanged: `INSERT INTO ${table} (${all.join(', ')})
      SELECT * FROM newN x WHERE NOT EXISTS (SELECT 1 FROM oldN o WHERE ${same})`,
        deleteChanged: `DELETE FROM ${table} o WHERE (o.resource_type, o.resource_id) IN (VALUES $K)
      AND NOT EXISTS (SELECT 1 FROM newN x WHERE ${same})`,
        deleteAll: `DELETE FROM ${table} WHERE (resource_type, resource_id) IN (VALUES $K)`,
      };
    });
    tableTexts.set(tables, texts);
  }
  return texts;
}

function statementFor(tables: readonly IndexTableLayout[], writes: readonly PendingWrite[]): WriteStatement {
  // The resource JSON is embedded as is in one jsonb parameter, parsed once by PostgreSQL.
  const versionParts: string[] = [];
  const blind: PendingWrite[] = [];
  let anyReplaced = false;
  for (const w of writes) {
    const c = w.change;
    if (c.previous) anyReplaced = true;
    if (w.blind) blind.push(w);
    versionParts.push(
      `{"t":${JSON.stringify(c.resourceType)},"i":${JSON.stringify(c.id)},"v":${w.blind ? 'null' : c.versionId},"u":${JSON.stringify(c.lastUpdated)},"d":${c.method === 'DELETE'},"m":${JSON.stringify(c.method)},"c":${w.json ?? 'null'}}`,
    );
  }
  const parameters: string[] = [`[${versionParts.join(',')}]`];
  // Keys of the replaced resources as a VALUES list: the planner then knows how few they are
  // and reads and deletes through the (resource_type, …) key indexes, never a scan. Blind
  // writes delete too (nothing to find when the resource is new).
  const keyRows: string[] = [];
  for (const w of writes) {
    if (!w.change.previous && !w.blind) continue;
    parameters.push(w.change.resourceType, w.change.id);
    keyRows.push(`($${parameters.length - 1}::text, $${parameters.length}::text)`);
  }
  const replacedKeys = keyRows.join(', ');
  const ctes: string[] = [];
  if (blind.length === 0) {
    // jsonb, not json: the text is parsed once, and each content is then a jsonb value that
    // needs no second parse (json_to_recordset re-parses every field; measured ~20% slower).
    ctes.push(`v AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(t text, i text, v bigint, u timestamptz, d boolean, m text, c jsonb))`);
  } else {
    // Blind writes take the version after the current row as this statement sees it. The
    // current rows are read by the key parameters (an index probe per key): joined to the
    // recordset alone (estimated at 100 rows), a generic plan scanned all of `resource`.
    ctes.push(`x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(t text, i text, v bigint, u timestamptz, d boolean, m text, c jsonb))`);
    ctes.push(`p AS MATERIALIZED (SELECT resource_type, id, version_id, deleted, last_updated FROM resource WHERE (resource_type, id) IN (VALUES ${replacedKeys}))`);
    ctes.push(`v AS (
      SELECT x.t, x.i, coalesce(x.v, p.version_id + 1, 1) AS v, x.u, x.d, x.m,
        CASE WHEN x.v IS NULL THEN jsonb_set(x.c, '{meta,versionId}', to_jsonb((coalesce(p.version_id, 0) + 1)::text)) ELSE x.c END AS c,
        x.v IS NULL AS blind, p.version_id AS pv, p.deleted AS pd, p.last_updated AS pu
      FROM x LEFT JOIN p ON x.v IS NULL AND p.resource_type = x.t AND p.id = x.i)`);
  }
  // Only batches that replace versions pay for the upsert; fresh ids are plain inserts.
  ctes.push(
    anyReplaced || blind.length > 0
      ? `cur AS (
      INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
      SELECT t, i, v, u, d, c FROM v
      ON CONFLICT (resource_type, id) DO UPDATE SET
        version_id = excluded.version_id, last_updated = excluded.last_updated,
        deleted = excluded.deleted, content = excluded.content)`
      : `cur AS (
      INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
      SELECT t, i, v, u, d, c FROM v)`,
  );
  ctes.push(`hist AS (
      INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content)
      SELECT t, i, v, u, d, m, c FROM v)`);

  const texts = tableTextsFor(tables);
  let tablesWritten = 0;
  tables.forEach((layout, n) => {
    // One JSON element per resource, [type, id, rows]: the key is not repeated on every row
    // (less text to build and for PostgreSQL to parse) and the extracted rows are serialised
    // as they are, without a copy per row.
    const parts: string[] = [];
    for (const w of writes) {
      const tableRows = w.indexRows.get(layout.table);
      if (!tableRows || tableRows.length === 0) continue;
      parts.push(`[${JSON.stringify(w.change.resourceType)},${JSON.stringify(w.change.id)},${JSON.stringify(tableRows)}]`);
    }
    const text = texts[n]!;
    if (parts.length === 0) {
      if (replacedKeys.length > 0) ctes.push(`del${n} AS (${text.deleteAll.replace('$K', replacedKeys)})`);
      return;
    }
    parameters.push(`[${parts.join(',')}]`);
    tablesWritten |= 1 << n;
    const rowsParameter = `$${parameters.length}`;
    if (replacedKeys.length === 0) {
      ctes.push(`ins${n} AS (${text.insert.replace('$P', rowsParameter)})`);
      return;
    }
    // A new version mostly repeats its predecessor's index rows (an update changes a status,
    // a date, a value): only the rows that differ are deleted and inserted, instead of every
    // row of the resource twice (index entries, WAL and dead tuples of unchanged rows saved).
    // Both run on the statement's snapshot, so each sees the rows of the replaced version.
    ctes.push(text.rows.replace('newN', `new${n}`).replace('$P', rowsParameter));
    ctes.push(text.oldRows.replace('oldN', `old${n}`).replace('$K', replacedKeys));
    ctes.push(`ins${n} AS (${text.insertChanged.replace('newN', `new${n}`).replace('oldN', `old${n}`)})`);
    ctes.push(`del${n} AS (${text.deleteChanged.replace('newN', `new${n}`).replace('$K', replacedKeys)})`);
  });

  const result = blind.length > 0 ? `SELECT t, i, v::text AS v, pv::text AS pv, pd, pu FROM v WHERE blind` : `SELECT 1`;
  const shape = `${blind.length > 0 ? 'b' : anyReplaced ? 'r' : 'c'}${keyRows.length}_${tablesWritten.toString(36)}`;
  return { sql: `WITH ${ctes.join(', ')} ${result}`, parameters, blind, shape };
}
