import type { Resource } from 'fhir/r4.js';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import { DEFAULT_TEXT_SEARCH_LANGUAGE, resourceTexts } from '../src/search/full-text.js';
import { attachmentTextsOf } from '../src/search/attachment-text.js';
import { FULLTEXT, indexTableByName, rowsToColumns, unnestInsertSql } from '../src/search/index-tables.js';
import { pdfTextHook } from '../src/search/pdf-text.js';

/**
 * Full-text search (issue 15 §3, src/search/full-text.ts): `search_text`, one row per current,
 * non-deleted resource that has text, kept by the indexer in the write transaction like the
 * other index tables. `content` / `narrative` are tsvectors built by PostgreSQL from the text
 * Node gathered, with the text search configuration in `config`.
 *
 * - `search_text_res` (resource_type, resource_id): the write path's delete / compare of a
 *   replaced version's row, and the probe of a page's candidates.
 * - GIN on each tsvector (`_content`, `_text`): a query's lexemes → the matching rows, then
 *   filtered by resource_type (a GIN index cannot lead with the type without btree_gin, which
 *   PGlite lacks).
 *
 * Resources stored before this migration are filled in here (keyset pages of 500, text gathered
 * in Node, tsvectors built in SQL), with the configuration FHIR_TEXT_SEARCH_LANGUAGE names (the
 * server's, default english); inline PDF attachments are read as on a write (pdf-text.ts).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE search_text (
      resource_type text NOT NULL, resource_id text NOT NULL,
      config regconfig NOT NULL, content tsvector NOT NULL, narrative tsvector)`.execute(db);
  await sql`CREATE INDEX search_text_res ON search_text (resource_type, resource_id)`.execute(db);
  await sql`CREATE INDEX search_text_content ON search_text USING gin (content)`.execute(db);
  await sql`CREATE INDEX search_text_narrative ON search_text USING gin (narrative) WHERE narrative IS NOT NULL`.execute(db);
  await sql`ALTER TABLE search_text SET (parallel_workers = 0)`.execute(db);

  const language = process.env.FHIR_TEXT_SEARCH_LANGUAGE || DEFAULT_TEXT_SEARCH_LANGUAGE;
  const spec = indexTableByName.get(FULLTEXT)!;
  const insert = unnestInsertSql(spec);
  let after: [string, string] = ['', ''];
  for (;;) {
    const page = await sql<{ resource_type: string; id: string; json: string }>`
      SELECT resource_type, id, content::text AS json FROM resource
      WHERE NOT deleted AND (resource_type, id) > (${after[0]}, ${after[1]})
      ORDER BY resource_type, id LIMIT 500`.execute(db);
    if (page.rows.length === 0) break;
    const rows: Array<readonly [string, string, readonly unknown[]]> = [];
    for (const r of page.rows) {
      const resource = JSON.parse(r.json) as Resource;
      const pdf = pdfTextHook(undefined, { resource });
      if (pdf) await pdf;
      const texts = resourceTexts(resource, attachmentTextsOf());
      if (texts.content.length > 0) rows.push([r.resource_type, r.id, [language, texts.content, texts.narrative]]);
    }
    if (rows.length > 0) await db.executeQuery(CompiledQuery.raw(insert, rowsToColumns(spec, rows)));
    const last = page.rows[page.rows.length - 1]!;
    after = [last.resource_type, last.id];
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE search_text`.execute(db);
}
