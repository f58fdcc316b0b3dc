import { randomUUID } from 'node:crypto';
import type { OperationOutcome } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import type { JobRunner } from '../jobs/types.js';
import type { JobRecord, JobStatus, JobStore } from '../storage/job-store.js';

/** Poll interval suggested to clients (Retry-After) while a job runs. */
export const STATUS_RETRY_AFTER_SECONDS = 2;
/** Expired jobs removed per kick-off: retention costs nothing when nobody starts jobs. */
const CLEANUP_BATCH = 20;
const JOB_ID = /^[0-9a-f-]{36}$/;

/** What a status URL answers: still running, the finished result, or the failure. */
export type AsyncJobStatus<T> =
  | { state: 'running'; progress: string }
  | { state: 'completed'; result: T; expires?: string }
  | { state: 'failed'; outcome: OperationOutcome };

/** What differs between the asynchronous operations. */
export interface AsyncJobSpec {
  queue: string;
  /** what the jobs are, for messages: `export`, `import` */
  what: string;
  /** how long a finished job stays readable at its status URL */
  retentionMs: number;
  /** Removes what the jobs leave beside their rows (files, inputs). */
  cleanUp(jobIds: string[]): Promise<void>;
  /** The outcome of a failed job that recorded none. */
  failure(error: unknown): OperationOutcome;
}

/**
 * The client-facing life of the jobs of one queue, shared by the asynchronous operations
 * ($export, $import): start (record the row, queue it), status as its owner polls it, cancel,
 * and removal after retention. Knows nothing of HTTP (see src/http/async-operation.ts).
 */
export class AsyncJobs {
  private readonly deps: AsyncJobSpec & { jobs: JobStore; runner: JobRunner };

  constructor(shared: { jobs: JobStore; runner: JobRunner }, spec: AsyncJobSpec) {
    this.deps = { jobs: shared.jobs, runner: shared.runner, ...spec };
  }

  /**
   * Records and queues a new job; `prepare` stores what the job reads beside its request
   * before the row exists. A queue that cannot be reached fails the job and answers 503.
   */
  async start(owner: string, request: unknown, prepare?: (jobId: string) => Promise<void>): Promise<string> {
    const { jobs, queue } = this.deps;
    await this.removeExpired();
    const jobId = randomUUID();
    await prepare?.(jobId);
    await jobs.create({ id: jobId, queue, owner, request });
    try {
      await this.deps.runner.enqueue(queue, { jobId });
    } catch {
      await jobs.fail(jobId, this.deps.failure(undefined), this.deps.retentionMs);
      await this.deps.cleanUp([jobId]);
      throw new FhirError('unavailable', 'the job queue is not reachable; try again later');
    }
    return jobId;
  }

  /** The job if `owner` may see it: its own, of this queue, not cancelled, not expired. */
  async visible(jobId: string, owner: string): Promise<JobRecord> {
    const job = JOB_ID.test(jobId) ? await this.deps.jobs.get(jobId) : undefined;
    const expired = job?.expiresAt !== null && job?.expiresAt !== undefined && Date.parse(job.expiresAt) < Date.now();
    if (!job || job.queue !== this.deps.queue || job.owner !== owner || job.status === 'cancelled' || expired) {
      throw errors.notFound(`no ${this.deps.what} ${jobId.slice(0, 64)} (unknown, cancelled or expired)`);
    }
    return job;
  }

  /** Running or failed from the row; a completed job's row is turned into its result by `completed`. */
  async status<T>(jobId: string, owner: string, completed: (job: JobRecord) => T): Promise<AsyncJobStatus<T>> {
    const job = await this.visible(jobId, owner);
    if (job.status === 'failed') return { state: 'failed', outcome: (job.error as OperationOutcome | null) ?? this.deps.failure(undefined) };
    if (job.status !== 'completed') return { state: 'running', progress: job.status === 'accepted' ? 'queued' : (job.progress ?? 'started') };
    return { state: 'completed', result: completed(job), expires: job.expiresAt ?? undefined };
  }

  /** Marks the owner's job cancelled (a running job stops at its next checkpoint); returns the status it had. */
  async cancel(jobId: string, owner: string): Promise<JobStatus> {
    await this.visible(jobId, owner);
    const previous = await this.deps.jobs.cancel(jobId);
    if (previous === undefined) throw errors.notFound(`no ${this.deps.what} ${jobId.slice(0, 64)}`);
    return previous;
  }

  private async removeExpired(): Promise<void> {
    const ids = await this.deps.jobs.expired(this.deps.queue, CLEANUP_BATCH);
    if (ids.length === 0) return;
    await this.deps.cleanUp(ids);
    await this.deps.jobs.remove(ids);
  }
}
