import { sql, type Kysely } from 'kysely';

/**
 * Topic-based subscriptions and batched deliveries (src/subscriptions, docs/subscriptions.md).
 *
 * subscription_delivery.kind: `event` (a notification of a resource version, numbered),
 * `handshake` (sent when a topic-based rest-hook Subscription is activated) or `heartbeat`
 * (sent when a Subscription with a heartbeat period had nothing to send for that long).
 * Handshakes and heartbeats carry the event count at the time and do not increase it; they are
 * left out of $events.
 *
 * subscription_delivery.batch_id: deliveries of one Subscription stored by one dispatch round
 * share a batch id and are sent by one job (one claim and one finish statement for the batch
 * instead of two per row). Null for rows stored before this migration (delivered one by one).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE subscription_delivery ADD COLUMN kind text NOT NULL DEFAULT 'event'`.execute(db);
  await sql`ALTER TABLE subscription_delivery ADD COLUMN batch_id text`.execute(db);
  await sql`CREATE INDEX subscription_delivery_batch ON subscription_delivery (batch_id) WHERE status = 'pending'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP INDEX subscription_delivery_batch`.execute(db);
  await sql`ALTER TABLE subscription_delivery DROP COLUMN batch_id`.execute(db);
  await sql`ALTER TABLE subscription_delivery DROP COLUMN kind`.execute(db);
}
