import { sql, type Kysely } from 'kysely';

/**
 * Cheaper upkeep of the append-only audit trail (issue 9; docs/auth.md "Audit trail cost").
 *
 * - **Rarer ANALYZE and insert-driven VACUUM of `audit_event`** (per-table storage parameters,
 *   honoured by autovacuum and by the server's own maintenance, src/storage/maintenance.ts).
 *   Nothing is ever updated or deleted here, so the defaults (ANALYZE after 10 % new rows,
 *   VACUUM after 20 %) bought little: the planner scales the row count by the table's current
 *   size itself, the key frequencies of a stream of requests stay alike, and date ranges past
 *   the last histogram bound are probed in the `recorded` / `last_updated` b-trees. Yet each run
 *   cost ~50–80 ms (ANALYZE's 3,000-row sample) and ~110–150 ms (VACUUM, which also scans the
 *   whole GIN index), measured as ~55 µs of database CPU per audited request while the table
 *   grew from empty to 40,000 events. Now: ANALYZE after 50 % new rows, VACUUM after 100 % new
 *   rows (the GIN pending list is merged by the inserts themselves once it passes
 *   gin_pending_list_limit, as without VACUUM). Dead rows (aborted batches) keep the defaults.
 * - **lz4 for `search_keys`** where the server has it, as 0034 did for `content`: the ~600-byte
 *   key array of each event was compressed with pglz. PGlite (no lz4) keeps pglz.
 *
 * Storage parameters and compression of new values only: no rewrite, and the previous release
 * runs unchanged on this schema (docs/migrations.md).
 */
export const AUDIT_EVENT_UPKEEP = { autovacuum_analyze_scale_factor: 0.5, autovacuum_vacuum_insert_scale_factor: 1 } as const;

export async function up(db: Kysely<unknown>): Promise<void> {
  const options = Object.entries(AUDIT_EVENT_UPKEEP).map(([k, v]) => `${k} = ${v}`).join(', ');
  await sql.raw(`ALTER TABLE audit_event SET (${options})`).execute(db);
  await sql
    .raw(
      `DO $$ BEGIN
        ALTER TABLE audit_event ALTER COLUMN search_keys SET COMPRESSION lz4;
      EXCEPTION WHEN feature_not_supported THEN
        RAISE NOTICE 'lz4 is not available: AuditEvent search keys stay pglz-compressed';
      END $$`,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw(`ALTER TABLE audit_event RESET (${Object.keys(AUDIT_EVENT_UPKEEP).join(', ')})`).execute(db);
  await sql.raw(`ALTER TABLE audit_event ALTER COLUMN search_keys SET COMPRESSION default`).execute(db);
}
