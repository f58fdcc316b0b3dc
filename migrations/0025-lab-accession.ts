import { sql, type Kysely } from 'kysely';

/**
 * Laboratory (issue 14, src/workflows/lab/specimens.ts): the per-day sequence behind specimen
 * accession numbers `LAB-YYYYMMDD-NNNNN` (the barcode on the tube). Taken like the patient number
 * (migration 0018): one `INSERT … ON CONFLICT DO UPDATE … RETURNING` in the writing transaction,
 * so two processes never get the same number; a rolled-back write only leaves a gap.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE lab_accession_sequence (
      day text PRIMARY KEY,
      last_value integer NOT NULL
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE lab_accession_sequence`.execute(db);
}
