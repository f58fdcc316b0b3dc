import { sql, type Kysely } from 'kysely';

/**
 * GDPR erasure reaches beyond the resource tables (src/storage/erase-store.ts, docs/backup.md):
 *
 * - `hl7_message_resources`: the raw HL7 v2 messages that wrote any version of an erased
 *   resource are found through `resources` (`Type/id/_history/v` strings) with `?|`, not by
 *   reading every stored message.
 * - `pharmacy_stock_movement_source`: the stock movements made by an erased MedicationDispense
 *   lose their link to it (the quantities stay: the stock ledger must still add up).
 *
 * Only indexes: the previous release runs unchanged on this schema (docs/migrations.md).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX IF NOT EXISTS hl7_message_resources ON hl7_message USING gin (resources)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS pharmacy_stock_movement_source ON pharmacy_stock_movement (source) WHERE source IS NOT NULL`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX IF EXISTS pharmacy_stock_movement_source`.execute(db);
  await sql`DROP INDEX IF EXISTS hl7_message_resources`.execute(db);
}
