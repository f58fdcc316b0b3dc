import { sql, type Kysely } from 'kysely';
import { fillOrDefer } from '../src/storage/backfill.js';

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
 * Resources stored before this migration get their rows as on a write (text gathered in Node,
 * inline PDF attachments read, tsvectors built in SQL with the configuration
 * FHIR_TEXT_SEARCH_LANGUAGE names): here when they are few, else after start-up in the
 * background (src/storage/backfill.ts), so an upgrade of a large database does not stop it.
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

  // Resources stored before: filled here on a small database, by the running server otherwise.
  await fillOrDefer(db, 'search-text');
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE search_text`.execute(db);
}
