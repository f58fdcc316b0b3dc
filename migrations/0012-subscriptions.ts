import { sql, type Kysely } from 'kysely';

/**
 * Subscriptions (src/subscriptions, docs/subscriptions.md).
 *
 * subscription_state: per Subscription, the grant of the client that last wrote it through the
 * API (scopes, user, patient: what notifications may carry), when it became active (events
 * before are not notified) and its event counter (eventsSinceSubscriptionStart).
 *
 * subscription_dispatch: the dispatcher's durable cursor over resource_history (a position in
 * last_updated) and the lease of the one process that advances it. Events committed before a
 * crash are found again from here, so none is lost.
 *
 * subscription_delivery: one row per (subscription, resource version) notified — the unique key
 * makes dispatching idempotent — with its event number and delivery outcome: pending,
 * delivered, dead-letter (retries exhausted; `error` says why) or cancelled (the Subscription
 * went away). The row id is the job id (job data holds ids only, no PHI in Redis).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE subscription_state (
      subscription_id text PRIMARY KEY,
      client_id text,
      subject text,
      token_kind text,
      role text,
      patient text,
      scope text,
      activated_at timestamptz NOT NULL DEFAULT now(),
      events bigint NOT NULL DEFAULT 0
    )`.execute(db);
  await sql`
    CREATE TABLE subscription_dispatch (
      name text PRIMARY KEY,
      position timestamptz NOT NULL,
      leader text,
      lease_until timestamptz
    )`.execute(db);
  // Writes made before this migration are history, not events.
  await sql`INSERT INTO subscription_dispatch (name, position) VALUES ('default', now())`.execute(db);
  await sql`
    CREATE TABLE subscription_delivery (
      id text PRIMARY KEY,
      subscription_id text NOT NULL,
      event_number bigint NOT NULL,
      resource_type text NOT NULL,
      resource_id text NOT NULL,
      version_id bigint NOT NULL,
      action text NOT NULL,
      committed_at timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      status text NOT NULL DEFAULT 'pending',
      attempts integer NOT NULL DEFAULT 0,
      error text,
      claimed_by text,
      claimed_at timestamptz,
      delivered_at timestamptz
    )`.execute(db);
  await sql`
    CREATE UNIQUE INDEX subscription_delivery_event
    ON subscription_delivery (subscription_id, resource_type, resource_id, version_id)`.execute(db);
  await sql`CREATE INDEX subscription_delivery_number ON subscription_delivery (subscription_id, event_number)`.execute(db);
  await sql`CREATE INDEX subscription_delivery_pending ON subscription_delivery (created_at) WHERE status = 'pending'`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE subscription_delivery`.execute(db);
  await sql`DROP TABLE subscription_dispatch`.execute(db);
  await sql`DROP TABLE subscription_state`.execute(db);
}
