import { sql, type RawBuilder } from 'kysely';
import type { IndexTableLayout, ResourceChange } from './types.js';

export interface PendingWrite {
  change: ResourceChange;
  /** Resource JSON text; null for a delete. */
  json: string | null;
  indexRows: Map<string, unknown[][]>;
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
export function writeStatements(tables: readonly IndexTableLayout[], writes: readonly PendingWrite[]): RawBuilder<unknown>[] {
  // A resource written twice in one batch would make the upsert touch a row twice; such
  // batches are split (rare: reads flush first, and an update always reads).
  const statements: RawBuilder<unknown>[] = [];
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

function statementFor(tables: readonly IndexTableLayout[], writes: readonly PendingWrite[]): RawBuilder<unknown> {
  // Built as text: the resource JSON is embedded as-is, parsed once by PostgreSQL.
  const versionParts: string[] = [];
  let anyReplaced = false;
  for (const w of writes) {
    const c = w.change;
    if (c.previous) anyReplaced = true;
    versionParts.push(
      `{"t":${JSON.stringify(c.resourceType)},"i":${JSON.stringify(c.id)},"v":${c.versionId},"u":${JSON.stringify(c.lastUpdated)},"d":${c.method === 'DELETE'},"m":${JSON.stringify(c.method)},"c":${w.json ?? 'null'}}`,
    );
  }
  const versions = `[${versionParts.join(',')}]`;

  const ctes: RawBuilder<unknown>[] = [
    // jsonb, not json: the text is parsed once, and each content is then a jsonb value that
    // needs no second parse (json_to_recordset re-parses every field; measured ~20% slower).
    sql`v AS (SELECT * FROM jsonb_to_recordset(${versions}::jsonb) AS x(t text, i text, v bigint, u timestamptz, d boolean, m text, c jsonb))`,
    // Only batches that replace versions pay for the upsert; fresh ids are plain inserts.
    anyReplaced
      ? sql`cur AS (
      INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
      SELECT t, i, v, u, d, c FROM v
      ON CONFLICT (resource_type, id) DO UPDATE SET
        version_id = excluded.version_id, last_updated = excluded.last_updated,
        deleted = excluded.deleted, content = excluded.content)`
      : sql`cur AS (
      INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
      SELECT t, i, v, u, d, c FROM v)`,
    sql`hist AS (
      INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content)
      SELECT t, i, v, u, d, m, c FROM v)`,
  ];

  // Keys of the replaced resources as a literal VALUES list: the planner then knows how few
  // they are and deletes through the (resource_type, resource_id) index, never a scan.
  const replacedKeys = writes
    .filter((w) => w.change.previous)
    .map((w) => sql`(${w.change.resourceType}, ${w.change.id})`);
  tables.forEach((layout, n) => {
    const table = sql.id(checkedIdentifier(layout.table));
    if (replacedKeys.length > 0) {
      ctes.push(sql`${sql.raw(`del${n}`)} AS (
        DELETE FROM ${table} WHERE (resource_type, resource_id) IN (VALUES ${sql.join(replacedKeys)}))`);
    }
    // One JSON element per resource, [type, id, rows]: the key is not repeated on every row
    // (less text to build and for PostgreSQL to parse) and the extracted rows are serialised
    // as they are, without a copy per row.
    const parts: string[] = [];
    for (const w of writes) {
      const tableRows = w.indexRows.get(layout.table);
      if (!tableRows || tableRows.length === 0) continue;
      parts.push(`[${JSON.stringify(w.change.resourceType)},${JSON.stringify(w.change.id)},${JSON.stringify(tableRows)}]`);
    }
    if (parts.length === 0) return;
    const columnNames = layout.columns.map((c) => checkedIdentifier(c.name));
    // Values are unpacked positionally with ->> and casts. jsonb: ->> on a json element
    // re-parses it for every column, on jsonb it is a lookup (measured: faster than
    // per-column unnest() arrays too).
    const projections = layout.columns.map((c, k) => sql`(r->>${sql.lit(k)})::${sql.raw(c.type)} AS ${sql.id(columnNames[k])}`);
    ctes.push(sql`${sql.raw(`ins${n}`)} AS (
      INSERT INTO ${table} (resource_type, resource_id, ${sql.join(columnNames.map((c) => sql.id(c)))})
      SELECT w->>0, w->>1, ${sql.join(projections)}
      FROM jsonb_array_elements(${`[${parts.join(',')}]`}::jsonb) AS w, jsonb_array_elements(w->2) AS r)`);
  });

  return sql`WITH ${sql.join(ctes, sql`, `)} SELECT 1`;
}
