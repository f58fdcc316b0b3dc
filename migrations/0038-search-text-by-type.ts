import { sql, type Kysely } from 'kysely';

/**
 * `search_text` partitioned by resource type (issue 15 §3; measured at 1 M resources, a quarter
 * DocumentReference notes, on PostgreSQL 15 with 128 MB of shared buffers).
 *
 * Every `_content` / `_text` search names its type, yet the GIN index finds rows of every type:
 * a common word's `_total` then visited the heap pages of all of them to keep only one type's
 * rows. Long notes and short Observation texts shared every page, so counting a word found in
 * 105,000 notes read 27,547 pages, nearly the whole 217 MB table (170–200 ms, from the operating
 * system's cache, as the table is larger than the shared buffers). With the notes in a
 * partition of their own the same count reads 13,689 pages, which stay in the shared buffers:
 * 42 ms. The planner prunes to the searched type's partition (the type is always a constant).
 *
 * The partitions: the types that hold most rows (Observation) or most text (DocumentReference
 * notes, DiagnosticReport conclusions and presented forms) in a hospital's records, one each;
 * every other type shares `search_text_other`. A partition per type would cost every write that
 * replaces index rows ~30 µs of planning per partition (the delete of the replaced rows names
 * its keys as a VALUES list, pruned only when the statement runs), and every new database
 * (each test's) ~500 more tables and indexes.
 *
 * The rows are moved in this migration's transaction, the table locked against writes until it
 * commits (~10 s per million rows plus the index builds; readers go on). The previous release
 * reads and writes the same table name and columns, and a partitioned table takes the same
 * INSERT / DELETE / SELECT statements, so it runs unchanged on this schema.
 */
const PARTITIONS: ReadonlyArray<readonly [suffix: string, type: string]> = [
  ['observation', 'Observation'],
  ['document_reference', 'DocumentReference'],
  ['diagnostic_report', 'DiagnosticReport'],
];

/** search_text's columns, as migration 0028 made them. */
const COLUMNS = sql.raw('resource_type text NOT NULL, resource_id text NOT NULL, config regconfig NOT NULL, content tsvector NOT NULL, narrative tsvector');

/** search_text's indexes (as migration 0028 made them), on whichever table now bears the name. */
async function createIndexes(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX search_text_res ON search_text (resource_type, resource_id)`.execute(db);
  await sql`CREATE INDEX search_text_content ON search_text USING gin (content)`.execute(db);
  await sql`CREATE INDEX search_text_narrative ON search_text USING gin (narrative) WHERE narrative IS NOT NULL`.execute(db);
}

export async function up(db: Kysely<unknown>): Promise<void> {
  // Writers (the previous release during a rolling restart) wait until the swap commits; a row
  // they wrote before the lock is copied, none can be written between the copy and the swap.
  await sql`LOCK TABLE search_text IN SHARE ROW EXCLUSIVE MODE`.execute(db);
  await sql`CREATE TABLE search_text_by_type (${COLUMNS}) PARTITION BY LIST (resource_type)`.execute(db);
  for (const [suffix, type] of PARTITIONS) {
    await sql.raw(`CREATE TABLE search_text_${suffix} PARTITION OF search_text_by_type FOR VALUES IN ('${type}') WITH (parallel_workers = 0)`).execute(db);
  }
  await sql`CREATE TABLE search_text_other PARTITION OF search_text_by_type DEFAULT WITH (parallel_workers = 0)`.execute(db);
  // The rows before the indexes: building a GIN index once is far cheaper than growing it row by row.
  await sql`INSERT INTO search_text_by_type (resource_type, resource_id, config, content, narrative)
    SELECT resource_type, resource_id, config, content, narrative FROM search_text`.execute(db);
  // expand-contract: the partitioned table takes the old one's name and columns in the same
  // transaction, so no release ever sees the table missing or the old one stale.
  await sql`DROP TABLE search_text`.execute(db);
  // expand-contract: (the same swap) the previous release's statements name search_text.
  await sql`ALTER TABLE search_text_by_type RENAME TO search_text`.execute(db);
  // The same indexes as migration 0028, on every partition (the planner uses the pruned one's).
  await createIndexes(db);
  // The new partitions start without statistics, and the plans of the first searches need them.
  await sql`ANALYZE search_text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TABLE search_text_single (${COLUMNS})`.execute(db);
  await sql`INSERT INTO search_text_single SELECT resource_type, resource_id, config, content, narrative FROM search_text`.execute(db);
  await sql`DROP TABLE search_text`.execute(db);
  await sql`ALTER TABLE search_text_single RENAME TO search_text`.execute(db);
  await createIndexes(db);
  await sql`ALTER TABLE search_text SET (parallel_workers = 0)`.execute(db);
}
