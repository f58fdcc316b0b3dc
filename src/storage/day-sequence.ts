import { sql } from 'kysely';
import type { Db } from './db.js';

/** Tables of per-day counters (day text primary key, last_value): patient numbers, accession numbers. */
export type DaySequenceTable = 'patient_number_sequence' | 'lab_accession_sequence';

/**
 * The next number of `day` in a per-day counter table: one upsert, so concurrent callers in any
 * process get distinct numbers (the row lock of the conflict update serialises them). `count`
 * numbers at once: the LAST of them is returned (the others are the `count - 1` before it).
 */
export async function nextInDaySequence(db: Db, table: DaySequenceTable, day: string, count = 1): Promise<number> {
  const result = await sql<{ last_value: number }>`
    INSERT INTO ${sql.table(table)} AS s (day, last_value) VALUES (${day}, ${count}::integer)
    ON CONFLICT (day) DO UPDATE SET last_value = s.last_value + ${count}::integer
    RETURNING s.last_value`.execute(db);
  return Number(result.rows[0]!.last_value);
}
