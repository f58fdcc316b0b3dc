import { EXPORT_QUEUE } from '../operations/export-service.js';
import { EXPORT_RETENTION_MS, failureOutcome, STALE_CLAIM_MS, type ExportRunner } from '../operations/export-run.js';
import type { ExportFiles } from '../storage/export-files.js';
import type { JobStore } from '../storage/job-store.js';
import type { QueueDefinition } from './types.js';

/** Runs of a failing export (database hiccup, restart of PostgreSQL) before the client sees the failure. */
export const EXPORT_ATTEMPTS = 3;
/** 10 s, then 20 s: long enough for a failover, short against a client polling for minutes. */
export const EXPORT_BACKOFF_MS = 10_000;
/** Exports per process at once: each one streams a whole table, and the machine has 2 cores. */
export const EXPORT_CONCURRENCY = 1;

export interface ExportWorkerDeps {
  runner: ExportRunner;
  jobs: JobStore;
  files: ExportFiles;
}

/** The `export` queue: Bulk Data $export jobs (payload: the job row id). */
export function exportQueue(deps: ExportWorkerDeps): QueueDefinition {
  return {
    name: EXPORT_QUEUE,
    attempts: EXPORT_ATTEMPTS,
    backoffMs: EXPORT_BACKOFF_MS,
    concurrency: EXPORT_CONCURRENCY,
    handler: (payload, ctx) => deps.runner.run(payload.jobId, ctx),
    async onGiveUp(payload, error) {
      await deps.files.remove([payload.jobId]);
      await deps.jobs.fail(payload.jobId, failureOutcome(error), EXPORT_RETENTION_MS);
    },
    async recoverable() {
      return (await deps.jobs.recoverable(EXPORT_QUEUE, STALE_CLAIM_MS)).map((jobId) => ({ jobId }));
    },
  };
}
