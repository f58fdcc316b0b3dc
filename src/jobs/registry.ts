import { createHash, randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { BullMqJobRunner } from './bullmq-runner.js';
import { exportQueue, type ExportWorkerDeps } from './export-worker.js';
import { InProcessJobRunner } from './in-process-runner.js';
import type { JobRunner, QueueDefinition } from './types.js';

/** Everything the workers of all queues need; each worker file takes its part. */
export type WorkerDeps = ExportWorkerDeps;

/** The queue registry: one definition per queue, each from its worker file. */
export function queueDefinitions(deps: WorkerDeps): QueueDefinition[] {
  return [exportQueue(deps)];
}

export interface RunnerOptions {
  /** BullMQ on this Redis when set, else the in-process runner. */
  redisUrl?: string;
  prefix: string;
  onError?: (error: unknown) => void;
}

export async function createJobRunner(definitions: QueueDefinition[], options: RunnerOptions): Promise<JobRunner> {
  if (options.redisUrl) return BullMqJobRunner.create(definitions, { redisUrl: options.redisUrl, prefix: options.prefix, onError: options.onError });
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
