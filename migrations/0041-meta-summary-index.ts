import { sql, type Kysely } from 'kysely';

/**
 * System- and type-level `$meta` (src/search/meta-summary.ts) lists the distinct tags and
 * security labels in use. The value index of search_token orders a code's rows by resource id
 * before system, so distinct (system, code) pairs could only be found by reading every tag row:
 * a store whose resources all carry a label (a confidentiality code on every record is common)
 * would read millions of rows per call. This partial index holds the `_tag` and `_security`
 * rows alone, keyed so each distinct pair is one probe (a skip scan). Only those rows pay for
 * it at write time; other rows of search_token do not enter it.
 *
 * An index only: the previous release runs unchanged on this schema (docs/migrations.md).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql
    .raw(
      `CREATE INDEX IF NOT EXISTS search_token_meta ON search_token (resource_type, param, (coalesce(system, '')), (coalesce(code, '')))
      WHERE param IN ('_tag', '_security')`,
    )
    .execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql.raw('DROP INDEX IF EXISTS search_token_meta').execute(db);
}
