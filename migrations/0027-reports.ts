import { sql, type Kysely } from 'kysely';

/**
 * Reports (issue 14 §5, src/storage/report-queries.ts). Payments received are counted by
 * `PaymentReconciliation.paymentDate`, which no R4 search parameter indexes (`created` is when
 * the record was made, not when the money came): without this index the revenue report reads
 * every PaymentReconciliation to find a month's; with it EXPLAIN (bench/reports.ts, 2,400
 * payments) shows a bitmap range over the month's 146 rows, 0.5 ms. paymentDate is a FHIR
 * `date`, so its text orders as the date does. Partial: only that type's live rows carry an
 * entry, so other writes pay nothing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX resource_payment_date ON resource ((content->>'paymentDate'))
    WHERE resource_type = 'PaymentReconciliation' AND NOT deleted`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS resource_payment_date`.execute(db);
}
