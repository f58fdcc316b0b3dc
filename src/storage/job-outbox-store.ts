import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * Jobs held in the database because Redis was away when they were queued (migration 0035).
 * Any process hands them over once Redis answers again; a job is taken by one process at a time
 * (SKIP LOCKED) and deleted only in the transaction that handed it over, so a failed hand-over
 * leaves it held.
 */
export class JobOutboxStore {
  constructor(private readonly db: Db) {}

  async hold(queue: string, jobId: string): Promise<void> {
    await sql`INSERT INTO job_outbox (queue, job_id) VALUES (${queue}, ${jobId}) ON CONFLICT DO NOTHING`.execute(this.db);
  }

  /** Hands up to `limit` held jobs to `send`, oldest first; returns how many were handed over. */
  async flush(send: (queue: string, jobId: string) => Promise<void>, limit = 500): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      const held = await sql<{ queue: string; job_id: string }>`
        SELECT queue, job_id FROM job_outbox ORDER BY held_at LIMIT ${limit} FOR UPDATE SKIP LOCKED`.execute(trx);
      let sent = 0;
      for (const job of held.rows) {
        try {
          await send(job.queue, job.job_id);
        } catch {
          break; // Redis is away again: the rest stays held
        }
        await sql`DELETE FROM job_outbox WHERE queue = ${job.queue} AND job_id = ${job.job_id}`.execute(trx);
        sent++;
      }
      return sent;
    });
  }

  async count(): Promise<number> {
    const r = await sql<{ n: number }>`SELECT count(*)::int AS n FROM job_outbox`.execute(this.db);
    return r.rows[0]?.n ?? 0;
  }
}
