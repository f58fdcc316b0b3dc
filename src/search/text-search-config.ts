import { sql, type Kysely } from 'kysely';

/**
 * Start-up check of FHIR_TEXT_SEARCH_LANGUAGE: the configuration must exist in the database,
 * else every write would fail in `to_tsvector`. Rows written under another configuration stay
 * until their resource is written again or reindexed (`search_text.config` says which).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function checkTextSearchLanguage(db: Kysely<any>, language: string): Promise<void> {
  const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_catalog.pg_ts_config WHERE cfgname = ${language}`.execute(db);
  if ((r.rows[0]?.n ?? 0) === 0) {
    throw new Error(`FHIR_TEXT_SEARCH_LANGUAGE='${language}' is not a text search configuration of this database (see \\dF in psql: english, german, simple, …)`);
  }
}
