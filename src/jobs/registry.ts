import { createHash, randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { EXPORT_RETENTION_MS, failureOutcome, type ExportRunner } from '../operations/export-run.js';
import { EXPORT_QUEUE } from '../operations/export-service.js';
import { importFailure, IMPORT_QUEUE, IMPORT_RETENTION_MS, type ImportJobRunner } from '../operations/import-job.js';
import type { ExportFiles } from '../storage/export-files.js';
import type { JobStore } from '../storage/job-store.js';
import { BullMqJobRunner } from './bullmq-runner.js';
import { InProcessJobRunner } from './in-process-runner.js';
import { jobRowQueue } from './job-rows.js';
import type { JobOutbox, JobRunner, QueueDefinition } from './types.js';

/** What the workers of all queues need. */
export interface WorkerDeps {
  jobs: JobStore;
  export: { runner: ExportRunner; files: ExportFiles };
  import: { runner: ImportJobRunner };
  /** Queues defined elsewhere (subscription deliveries), served by the same runner. */
  extra?: readonly QueueDefinition[];
}

/**
 * The queue registry: every queue with its worker. A process runs one job runner serving all
 * of them (`createJobRunner(queueDefinitions(…))`); the job data is the job row id only.
 */
export function queueDefinitions(deps: WorkerDeps): QueueDefinition[] {
  const { jobs } = deps;
  return [
    // Bulk Data $export: a given-up export's partial files go.
    jobRowQueue({
      name: EXPORT_QUEUE,
      jobs,
      run: (jobId, ctx) => deps.export.runner.run(jobId, ctx),
      async giveUp(jobId, error) {
        await deps.export.files.remove([jobId]);
        await jobs.fail(jobId, failureOutcome(error), EXPORT_RETENTION_MS);
      },
    }),
    // $import: what a given-up import committed stays; its inline inputs and progress rows go.
    jobRowQueue({
      name: IMPORT_QUEUE,
      jobs,
      run: (jobId, ctx) => deps.import.runner.run(jobId, ctx),
      async giveUp(jobId, error) {
        await jobs.fail(jobId, importFailure(error), IMPORT_RETENTION_MS);
        await deps.import.runner.cleanUp(jobId);
      },
    }),
    ...(deps.extra ?? []),
  ];
}

export interface RunnerOptions {
  /** BullMQ on this Redis when set, else the in-process runner. */
  redisUrl?: string;
  prefix: string;
  onError?: (error: unknown) => void;
  /** BullMQ: where jobs of `outbox` queues are held while Redis is away. */
  outbox?: JobOutbox;
}

export async function createJobRunner(definitions: QueueDefinition[], options: RunnerOptions): Promise<JobRunner> {
  if (options.redisUrl) return BullMqJobRunner.create(definitions, { redisUrl: options.redisUrl, prefix: options.prefix, onError: options.onError, outbox: options.outbox });
  const runner = new InProcessJobRunner(definitions, options.onError);
  await runner.start();
  return runner;
}

/**
 * The Redis key prefix of the queues, derived from the database the job rows live in: every
 * process on one database (and schema) shares its queues, and two databases on one Redis
 * (test schemas, tenants, a bench run) never pick up each other's jobs. An in-memory
 * database is private to its process, so it gets a prefix of its own.
 */
export function queuePrefix(db: { databaseUrl?: string; schema?: string; dataDir: string }): string {
  let identity: string;
  if (db.databaseUrl) {
    const url = new URL(db.databaseUrl);
    identity = `pg:${url.hostname}:${url.port || '5432'}${url.pathname}#${db.schema ?? 'public'}`;
  } else if (db.dataDir === 'memory') {
    identity = `memory:${randomUUID()}`;
  } else {
    identity = `pglite:${resolve(db.dataDir)}`;
  }
  return `fhir-${createHash('sha256').update(identity).digest('hex').slice(0, 16)}`;
}
