import { sql, type Kysely } from 'kysely';

/**
 * Front desk (issue 12, src/workflows/patient-registration.ts): the per-day sequence behind the
 * patient number PT-YYYYMMDD-XXXX. One row per registration day; the number is taken with one
 * `INSERT … ON CONFLICT DO UPDATE … RETURNING` inside the registering write's transaction, so
 * two processes never get the same number and a rolled-back registration only leaves a gap.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE patient_number_sequence (
      day text PRIMARY KEY,
      last_value integer NOT NULL
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE patient_number_sequence`.execute(db);
}
