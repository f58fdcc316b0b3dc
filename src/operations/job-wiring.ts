import { createJobRunner, queueDefinitions, queuePrefix } from '../jobs/registry.js';
import type { JobRunner, QueueDefinition } from '../jobs/types.js';
import { JobStore } from '../storage/job-store.js';
import { JobOutboxStore } from '../storage/job-outbox-store.js';
import type { ImportService } from './import-service.js';
import { exportWiring, type BulkComponents, type BulkDeps } from './export-wiring.js';
import { importWiring, type ImportWiringDeps } from './import-wiring.js';

export interface JobWiringDeps {
  exports: BulkDeps;
  imports: ImportWiringDeps;
  /** the database the job rows live in: processes on one database share their queues */
  database: { databaseUrl?: string; schema?: string; dataDir: string };
  /** BullMQ on this Redis when set, else the in-process runner */
  redisUrl?: string;
  /** Further queues for the same runner (subscription deliveries). */
  extraQueues?: readonly QueueDefinition[];
  log: (message: string, error?: unknown) => void;
}

export interface JobComponents {
  /** the process's one job runner, serving every queue of src/jobs/registry.ts */
  runner: JobRunner;
  bulk: BulkComponents;
  imports: ImportService;
  /** Stops the runner (running jobs hand their work back at the next checkpoint). */
  close(): Promise<void>;
}

/**
 * The asynchronous operations and the one job runner that serves their queues: each side
 * (export, import) first builds its worker, then the runner is created over all queues,
 * then the services that queue jobs on it.
 */
export async function createJobs(deps: JobWiringDeps): Promise<JobComponents> {
  const exportSide = exportWiring(deps.exports);
  const importSide = importWiring(deps.imports);
  let runner: JobRunner;
  try {
    runner = await createJobRunner(queueDefinitions({ jobs: new JobStore(deps.exports.db), export: exportSide.worker, import: importSide.worker, extra: deps.extraQueues }), {
      redisUrl: deps.redisUrl,
      prefix: queuePrefix(deps.database),
      onError: (e) => deps.log('job runner error', e),
      outbox: new JobOutboxStore(deps.exports.db),
    });
  } catch (e) {
    exportSide.dispose();
    throw e;
  }
  return {
    runner,
    bulk: exportSide.services(runner),
    imports: importSide.service(runner),
    async close() {
      await runner.close();
      exportSide.dispose();
    },
  };
}
