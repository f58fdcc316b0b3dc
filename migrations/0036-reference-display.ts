import { sql, type Kysely } from 'kysely';
import { deferBackfill } from '../src/storage/backfill.js';

/**
 * `:text` on reference parameters (issue 15 §3): `search_reference.display` holds the folded
 * Reference.display (src/search/index-tables.ts). A nullable column: the previous release keeps
 * writing rows without it (docs/migrations.md). The rows of resources stored before are rewritten
 * by the running server after start-up (src/storage/backfill.ts, `reference-display`): it needs
 * the search index extraction, which a migration does not have.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE search_reference ADD COLUMN IF NOT EXISTS display text COLLATE "C"`.execute(db);
  await deferBackfill(db, 'reference-display');
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // expand-contract: the column is only ever dropped with this migration undone
  await sql`ALTER TABLE search_reference DROP COLUMN IF EXISTS display`.execute(db);
}
