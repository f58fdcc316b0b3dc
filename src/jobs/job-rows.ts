/**
 * Jobs whose state is a row of the `job` table (every queue so far): how a run holds its row,
 * and the queue definition such jobs share.
 */
import { randomUUID } from 'node:crypto';
import { isFhirError } from '../fhir/errors.js';
import type { JobRecord, JobStore } from '../storage/job-store.js';
import { JobInterruptedError, PermanentJobError, RetryLaterError, type JobContext, type QueueDefinition } from './types.js';

/**
 * A claim whose heartbeat is older than this belongs to a dead run and may be taken over; runs
 * write their heartbeat at least every few seconds (every page or progress step).
 */
export const STALE_CLAIM_MS = 60_000;

/** Thrown by a run's work when a checkpoint says the run lost its job (cancelled, or taken over after a stall). */
export class JobLostError extends Error {
  override readonly name = 'JobLostError';
}

export interface ClaimedRunOptions {
  jobs: JobStore;
  /** what the job is, for messages: `export`, `import` */
  what: string;
  /** the run lost its job and it is cancelled or gone: remove what it leaves behind */
  cleanUp(jobId: string): Promise<void>;
  log?: (message: string, error?: unknown) => void;
}

/**
 * The life of one run of a job row, shared by every queue: claim the row (another live run
 * holding it → try again once its claim would be stale; a finished job → nothing to do), do
 * the work, and turn failures into what the job runner needs: a lost job ends quietly, a
 * shutdown hands the job back, a 4xx FhirError is permanent, anything else is retried.
 */
export async function runClaimed(options: ClaimedRunOptions, jobId: string, ctx: JobContext, work: (job: JobRecord, runId: string) => Promise<void>): Promise<void> {
  const { jobs, what } = options;
  const runId = randomUUID();
  const claim = await jobs.claim(jobId, runId, STALE_CLAIM_MS);
  if (claim === 'gone') return;
  if (claim === 'busy') throw new RetryLaterError(`another run holds this ${what}`, STALE_CLAIM_MS);
  try {
    const job = await jobs.get(jobId);
    if (!job) return;
    await work(job, runId);
  } catch (e) {
    if (e instanceof JobLostError) {
      // Cancelled: nobody wants the output. Taken over: the new run owns it.
      const now = await jobs.get(jobId);
      if (!now || now.status === 'cancelled') await options.cleanUp(jobId);
      return;
    }
    await jobs.release(jobId, runId);
    if (ctx.signal.aborted) throw new JobInterruptedError(`${what} interrupted by shutdown`);
    if (isFhirError(e) && e.status < 500) throw new PermanentJobError(e.message, { cause: e });
    options.log?.(`${what} ${jobId} attempt ${ctx.attempt} failed`, e);
    throw e;
  }
}

export interface JobRowQueue {
  name: string;
  jobs: JobStore;
  run(jobId: string, ctx: JobContext): Promise<void>;
  /** marks the row failed and removes what the job left */
  giveUp(jobId: string, error: unknown): Promise<void>;
}

/**
 * A queue of job rows (payload: the row id); runners without a durable queue recover rows that
 * nobody holds. One policy for every such queue so far: a failing run (a database hiccup, a
 * PostgreSQL restart or failover) is tried 3 times, 10 s then 20 s later, short against a client
 * polling for minutes; one job per queue per process at once, because one export or import
 * keeps the database busy and the machine has 2 cores. A resumed run continues from what the
 * earlier one committed (import) or starts over (export).
 */
export function jobRowQueue(q: JobRowQueue): QueueDefinition {
  return {
    name: q.name,
    attempts: 3,
    backoffMs: 10_000,
    concurrency: 1,
    handler: (payload, ctx) => q.run(payload.jobId, ctx),
    onGiveUp: (payload, error) => q.giveUp(payload.jobId, error),
    recoverable: async () => (await q.jobs.recoverable(q.name, STALE_CLAIM_MS)).map((jobId) => ({ jobId })),
  };
}
