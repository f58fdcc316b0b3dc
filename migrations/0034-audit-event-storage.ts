import { sql, type Kysely } from 'kysely';

/** The columns of audit_event (its own and those inherited from resource / resource_history). */
const SAMPLED_COLUMNS = ['resource_type', 'id', 'version_id', 'last_updated', 'deleted', 'method', 'recorded', 'search_keys'];

/**
 * Cheaper upkeep of the audit trail (one row per audited request; measured on PostgreSQL 15 with
 * 60,000 events, docs/auth.md):
 *
 * - **lz4** instead of pglz for `content` where the server has it: every event is a ~2 KB JSON,
 *   over the threshold at which PostgreSQL compresses a row, and pglz cost the INSERT ~10 µs of
 *   database CPU per event (~55 → ~47 µs); lz4 also decompresses faster when the trail is read.
 *   Only new values are affected. Builds without lz4 (the embedded PGlite) keep pglz: the
 *   statement is skipped there, not failed.
 * - **Smaller ANALYZE samples**: ANALYZE samples 300 × the largest statistics target rows, and the
 *   element statistics of `search_keys` (16 keys per event) over the default 30,000 rows took
 *   ~170 ms per run — run after every ~10 % of new rows by autovacuum or the server's own
 *   maintenance, ~10 µs per written event. Target 10 (3,000 rows) takes ~18 ms, and the plans of
 *   the trail's searches stay the same (GIN bitmap for rare keys, the id index for common keys,
 *   checked with EXPLAIN ANALYZE). `content` gets no statistics: nothing filters on it here.
 *
 * Only storage and statistics settings: the previous release runs unchanged on this schema
 * (docs/migrations.md).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `DO $$ BEGIN
        ALTER TABLE audit_event ALTER COLUMN content SET COMPRESSION lz4;
      EXCEPTION WHEN feature_not_supported THEN
        RAISE NOTICE 'lz4 is not available: AuditEvent content stays pglz-compressed';
      END $$`,
    )
    .execute(db);
  const targets = SAMPLED_COLUMNS.map((c) => `ALTER COLUMN ${c} SET STATISTICS 10`).join(', ');
  await sql.raw(`ALTER TABLE audit_event ${targets}, ALTER COLUMN content SET STATISTICS 0`).execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  const targets = [...SAMPLED_COLUMNS, 'content'].map((c) => `ALTER COLUMN ${c} SET STATISTICS -1`).join(', ');
  await sql.raw(`ALTER TABLE audit_event ${targets}, ALTER COLUMN content SET COMPRESSION default`).execute(db);
}
