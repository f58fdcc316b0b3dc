import { sql, type Kysely } from 'kysely';

/**
 * Terminology, issue 15 item 1 (src/terminology/release/, src/terminology/operations.ts):
 * `ConceptMap/$translate` with `reverse` looks map elements up by their target, so it needs
 * an index there too (0019 has the source side); `$expand` with a frequent filter word probes
 * display words by code (terminology_word_code). Loaded releases (LOINC, SNOMED CT, ICD-10-CM)
 * use the tables of 0019 as they are (source `loaded`).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX IF NOT EXISTS terminology_map_element_target ON terminology_map_element (target_system, target_code)`.execute(db);
  // $expand with a frequent filter word ("a" on 100,000 concepts) walks the expansion in order
  // and probes each member's words: by code, then word range.
  await sql`CREATE INDEX IF NOT EXISTS terminology_word_code ON terminology_word (system, code, word)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS terminology_word_code`.execute(db);
  await sql`DROP INDEX IF EXISTS terminology_map_element_target`.execute(db);
}
