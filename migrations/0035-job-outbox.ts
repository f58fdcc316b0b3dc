import { sql, type Kysely } from 'kysely';

/**
 * `job_outbox` (src/storage/job-outbox-store.ts): jobs of durable queues (hospital notification
 * events) whose enqueue failed while Redis was away. Kept here until a process can hand them to
 * BullMQ, so a write committed during a Redis outage still gets its notification.
 * Only a new table: the previous release runs unchanged on this schema (docs/migrations.md).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS job_outbox (
      queue text NOT NULL,
      job_id text NOT NULL,
      held_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (queue, job_id))`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE IF EXISTS job_outbox`.execute(db);
}
