import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * accepted → in-progress → completed | failed; cancelled from any unfinished state (or from
 * completed, which removes the files). Only accepted / in-progress can be claimed by a run.
 */
export type JobStatus = 'accepted' | 'in-progress' | 'completed' | 'failed' | 'cancelled';

export interface JobRecord {
  id: string;
  queue: string;
  status: JobStatus;
  owner: string | null;
  request: unknown;
  progress: string | null;
  result: unknown;
  error: unknown;
  attempts: number;
  createdAt: string;
  finishedAt: string | null;
  expiresAt: string | null;
}

/** Outcome of trying to claim a job for a run. */
export type ClaimResult = 'claimed' | 'busy' | 'gone';

interface JobRow {
  id: string;
  queue: string;
  status: JobStatus;
  owner: string | null;
  request: unknown;
  progress: string | null;
  result: unknown;
  error: unknown;
  attempts: number;
  created_at: Date | string;
  finished_at: Date | string | null;
  expires_at: Date | string | null;
}

const iso = (v: Date | string | null): string | null => (v === null ? null : new Date(v).toISOString());

/** JSONB columns come back parsed from pg and as text from some drivers; accept both. */
function json(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

function toRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    queue: row.queue,
    status: row.status,
    owner: row.owner,
    request: json(row.request),
    progress: row.progress,
    result: json(row.result),
    error: json(row.error),
    attempts: Number(row.attempts),
    createdAt: iso(row.created_at)!,
    finishedAt: iso(row.finished_at),
    expiresAt: iso(row.expires_at),
  };
}

/**
 * The one definition of a job a run may take: unfinished, and nobody holds it (never claimed,
 * released, or its holder's heartbeat is older than `staleMs`, so that run is presumed dead).
 * `claim` takes such a job; `recoverable` lists them for runners without a durable queue.
 */
function claimable(staleMs: number) {
  return sql`status IN ('accepted', 'in-progress')
    AND (run_id IS NULL OR heartbeat_at IS NULL OR heartbeat_at < now() - ${staleMs} * interval '1 millisecond')`;
}

/**
 * Progress + heartbeat of run `runId` while it still holds the job; no row returned = the run
 * lost it. Export files embed it in their append statement (one statement, one row lock).
 */
export function checkpointStatement(id: string, runId: string, progress: string) {
  return sql<{ id: string }>`
    UPDATE job SET progress = ${progress}, heartbeat_at = now(), updated_at = now()
    WHERE id = ${id} AND run_id = ${runId} AND status = 'in-progress'
    RETURNING id`;
}

/**
 * The `job` table: the state of background jobs that clients poll. Every transition is one
 * conditional UPDATE, so concurrent processes (an API process cancelling, a worker writing
 * progress, a second delivery of the same job) never overwrite each other's decision.
 */
export class JobStore {
  constructor(private readonly db: Db) {}

  async create(job: { id: string; queue: string; owner?: string; request: unknown }): Promise<void> {
    await sql`
      INSERT INTO job (id, queue, status, owner, request)
      VALUES (${job.id}, ${job.queue}, 'accepted', ${job.owner ?? null}, ${JSON.stringify(job.request)}::jsonb)`.execute(this.db);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const r = await sql<JobRow>`
      SELECT id, queue, status, owner, request, progress, result, error, attempts, created_at, finished_at, expires_at
      FROM job WHERE id = ${id}`.execute(this.db);
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  /**
   * Takes the job for run `runId` unless it is finished ('gone') or another run holds a claim
   * whose heartbeat is younger than `staleMs` ('busy': that run is probably alive).
   */
  async claim(id: string, runId: string, staleMs: number): Promise<ClaimResult> {
    const r = await sql<{ id: string }>`
      UPDATE job SET status = 'in-progress', run_id = ${runId}, heartbeat_at = now(), updated_at = now(), attempts = attempts + 1
      WHERE id = ${id} AND ${claimable(staleMs)}
      RETURNING id`.execute(this.db);
    if (r.rows.length > 0) return 'claimed';
    const current = await sql<{ status: JobStatus }>`SELECT status FROM job WHERE id = ${id}`.execute(this.db);
    const status = current.rows[0]?.status;
    return status === 'accepted' || status === 'in-progress' ? 'busy' : 'gone';
  }

  /** Progress + heartbeat; false when the run lost the job (cancelled, or taken over). */
  async checkpoint(id: string, runId: string, progress: string): Promise<boolean> {
    const r = await checkpointStatement(id, runId, progress).execute(this.db);
    return r.rows.length > 0;
  }

  /** Lets another run claim the job at once (this run failed or is shutting down). */
  async release(id: string, runId: string): Promise<void> {
    await sql`UPDATE job SET run_id = NULL, heartbeat_at = NULL, updated_at = now()
      WHERE id = ${id} AND run_id = ${runId}`.execute(this.db);
  }

  async complete(id: string, runId: string, result: unknown, retentionMs: number): Promise<boolean> {
    const r = await sql<{ id: string }>`
      UPDATE job SET status = 'completed', result = ${JSON.stringify(result)}::jsonb, progress = 'completed',
        run_id = NULL, finished_at = now(), updated_at = now(), expires_at = now() + ${retentionMs} * interval '1 millisecond'
      WHERE id = ${id} AND run_id = ${runId} AND status = 'in-progress'
      RETURNING id`.execute(this.db);
    return r.rows.length > 0;
  }

  /** Final failure (retries exhausted or not retryable); a cancelled job stays cancelled. */
  async fail(id: string, error: unknown, retentionMs: number): Promise<void> {
    await sql`
      UPDATE job SET status = 'failed', error = ${JSON.stringify(error)}::jsonb, run_id = NULL,
        finished_at = now(), updated_at = now(), expires_at = now() + ${retentionMs} * interval '1 millisecond'
      WHERE id = ${id} AND status IN ('accepted', 'in-progress')`.execute(this.db);
  }

  /**
   * Marks the job cancelled (the run notices at its next checkpoint) and returns the status it
   * had, or undefined when there is no such job or it was already cancelled.
   */
  async cancel(id: string): Promise<JobStatus | undefined> {
    // The row lock makes two racing cancels (or a cancel racing a completion) decide in turn.
    const r = await sql<{ previous: JobStatus }>`
      WITH prev AS (SELECT status AS previous FROM job WHERE id = ${id} AND status <> 'cancelled' FOR UPDATE)
      UPDATE job SET status = 'cancelled', run_id = NULL, updated_at = now(), finished_at = now(), expires_at = now()
      FROM prev WHERE job.id = ${id}
      RETURNING prev.previous`.execute(this.db);
    return r.rows[0]?.previous;
  }

  /** Unfinished jobs of `queue` nobody is working on (never claimed, released, or stale). */
  async recoverable(queue: string, staleMs: number, limit = 100): Promise<string[]> {
    const r = await sql<{ id: string }>`
      SELECT id FROM job
      WHERE queue = ${queue} AND ${claimable(staleMs)}
      ORDER BY created_at LIMIT ${limit}`.execute(this.db);
    return r.rows.map((x) => x.id);
  }

  /** Jobs past their retention time (finished ones; cancelled ones expire at once). */
  async expired(queue: string, limit = 100): Promise<string[]> {
    const r = await sql<{ id: string }>`
      SELECT id FROM job WHERE queue = ${queue} AND expires_at < now() ORDER BY expires_at LIMIT ${limit}`.execute(this.db);
    return r.rows.map((x) => x.id);
  }

  async remove(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await sql`DELETE FROM job WHERE id = ANY(${ids}::text[])`.execute(this.db);
  }
}
