/**
 * The job runner contract shared by the BullMQ runner (REDIS_URL set) and the in-process
 * runner. Job data carries ids only: everything else is read from the database when the job
 * runs, so a queued job never holds PHI in Redis and always sees current state.
 */
export interface JobPayload {
  jobId: string;
}

export interface JobContext {
  /** 1 for the first run, counting only runs that failed (not postponements). */
  attempt: number;
  maxAttempts: number;
  /** Aborted when the runner closes: the handler stops at its next checkpoint. */
  signal: AbortSignal;
}

export type JobHandler = (payload: JobPayload, ctx: JobContext) => Promise<void>;

/** One queue: its worker and its retry policy (see the worker file of each queue). */
export interface QueueDefinition {
  name: string;
  /** Runs of a failing job before it is given up (1 = no retry). */
  attempts: number;
  /** First retry delay; doubles with every further attempt. */
  backoffMs: number;
  /** Jobs of this queue run at once per process. */
  concurrency: number;
  /**
   * How soon a job whose process died is run again (BullMQ: lock duration; the stalled check
   * runs twice as often). Unset: BullMQ's defaults (30 s lock, 30 s check, up to a minute).
   * Keep it above what one checkpoint-free stretch of the handler can block the event loop.
   */
  stallRecoveryMs?: number;
  handler: JobHandler;
  /** Called once when the job is given up (retries exhausted or a PermanentJobError). */
  onGiveUp(payload: JobPayload, error: unknown): Promise<void>;
  /** Unfinished jobs nobody works on, for runners without a durable queue (in-process). */
  recoverable?(): Promise<JobPayload[]>;
  /**
   * Jobs queued by after-commit hooks, which have nothing else to recover them from: an enqueue
   * that fails while Redis is away is held in the database (JobOutbox) and queued when it is
   * back, instead of failing (BullMQ runner; the in-process runner never fails to queue).
   */
  outbox?: boolean;
}

/** Where a runner holds the jobs of `outbox` queues it could not queue (src/storage/job-outbox-store.ts). */
export interface JobOutbox {
  hold(queue: string, jobId: string): Promise<void>;
  flush(send: (queue: string, jobId: string) => Promise<void>): Promise<number>;
}

export interface JobRunner {
  readonly kind: 'bullmq' | 'in-process';
  /** Queues `payload`; a job id already queued or running is not queued twice. */
  enqueue(queue: string, payload: JobPayload): Promise<void>;
  /** Stops starting jobs (running ones continue): for maintenance windows and tests. BullMQ: all processes. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Interrupts running jobs at their next checkpoint and releases connections and timers. */
  close(): Promise<void>;
  /** Jobs per queue by state, for /metrics (BullMQ: the shared queues in Redis; in-process: this process). */
  depths(): Promise<Array<{ queue: string; waiting: number; active: number; delayed: number; failed: number }>>;
}

/** A failure that retrying cannot fix (bad stored request, missing data). */
export class PermanentJobError extends Error {
  override readonly name = 'PermanentJobError';
}

/** Not a failure: run the job again after `delayMs` without counting an attempt. */
export class RetryLaterError extends Error {
  override readonly name = 'RetryLaterError';
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
  }
}

/** The runner is closing; the job was released and will be picked up again. */
export class JobInterruptedError extends Error {
  override readonly name = 'JobInterruptedError';
}

/** Exponential backoff shared by both runners so a job behaves the same on either. */
export function backoffDelay(definition: Pick<QueueDefinition, 'backoffMs'>, failedAttempts: number): number {
  return definition.backoffMs * 2 ** Math.max(0, failedAttempts - 1);
}
