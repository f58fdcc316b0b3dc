import { sql, type Kysely } from 'kysely';
import { patientNameWords } from '../src/search/fuzzy-name.js';
import type { Patient } from 'fhir/r4.js';

/**
 * Fuzzy patient name search (issue 12 §1, src/search/fuzzy-name.ts): the folded words of each
 * live Patient's names (patient_name_token) and the distinct words with a GIN trigram index
 * (patient_name_word, pg_trgm). The rows are kept by a before-write
 * hook (src/workflows/patient-fuzzy-search.ts); patients stored before this migration are
 * filled in here.
 *
 * pg_trgm goes into schema `public` when missing (one extension per database; test and tenant
 * schemas share it, queries qualify its names). An advisory lock, taken only while it is
 * missing, makes concurrent migrations of several schemas create it once. Without the
 * privilege to create it the migration fails with a message saying so.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  let schema = await extensionSchema(db);
  if (!schema) {
    // The lock only when the extension is missing: it is held until this schema's migrations
    // commit, and taken unconditionally it would queue every other schema's start-up behind them.
    await sql`SELECT pg_advisory_xact_lock(hashtext('fhir-server:pg_trgm'))`.execute(db);
    schema = await extensionSchema(db);
  }
  if (!schema) {
    try {
      await sql`CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public`.execute(db);
    } catch (e) {
      throw new Error(`fuzzy patient search needs the PostgreSQL extension pg_trgm: "CREATE EXTENSION pg_trgm SCHEMA public" failed (${(e as Error).message}); install the contrib package or have an administrator create it`, { cause: e });
    }
    schema = await extensionSchema(db);
    if (!schema) throw new Error('pg_trgm was created but is not listed in pg_extension');
  }
  await sql`
    CREATE TABLE patient_name_token (
      resource_id text NOT NULL,
      token text NOT NULL,
      PRIMARY KEY (resource_id, token)
    )`.execute(db);
  await sql`CREATE INDEX patient_name_token_token ON patient_name_token (token, resource_id)`.execute(db);
  // The distinct words: the trigram index is probed here (thousands of words, not one row per
  // patient and word), then the patients of each matching word come from the btree above.
  await sql`CREATE TABLE patient_name_word (token text PRIMARY KEY)`.execute(db);
  await sql.raw(`CREATE INDEX patient_name_word_trgm ON patient_name_word USING gin (token "${schema.replace(/"/g, '""')}".gin_trgm_ops)`).execute(db);
  // Backfill, keyset-paged so a big database is read in bounded pieces.
  let after = '';
  for (;;) {
    const page = await sql<{ id: string; json: string }>`
      SELECT id, content::text AS json FROM resource
      WHERE resource_type = 'Patient' AND NOT deleted AND id > ${after}
      ORDER BY id LIMIT 1000`.execute(db);
    if (page.rows.length === 0) break;
    const ids: string[] = [];
    const tokens: string[] = [];
    for (const row of page.rows) {
      for (const w of patientNameWords(JSON.parse(row.json) as Patient)) {
        ids.push(row.id);
        tokens.push(w);
      }
    }
    if (ids.length > 0) await sql`INSERT INTO patient_name_token (resource_id, token) SELECT * FROM unnest(${ids}::text[], ${tokens}::text[])`.execute(db);
    after = page.rows[page.rows.length - 1]!.id;
  }
  await sql`INSERT INTO patient_name_word (token) SELECT DISTINCT token FROM patient_name_token`.execute(db);
}

async function extensionSchema(db: Kysely<unknown>): Promise<string | undefined> {
  const r = await sql<{ schema: string }>`
    SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'`.execute(db);
  return r.rows[0]?.schema;
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The extension stays: other schemas of the database may use it.
  await sql`DROP TABLE patient_name_word`.execute(db);
  await sql`DROP TABLE patient_name_token`.execute(db);
}
