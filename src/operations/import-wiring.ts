import { createJobRunner, queuePrefix } from '../jobs/registry.js';
import type { JobRunner } from '../jobs/types.js';
import type { InteractionDeps } from '../interactions/types.js';
import type { Db } from '../storage/db.js';
import { ImportStateStore } from '../storage/import-state.js';
import { JobStore } from '../storage/job-store.js';
import { ImportJobRunner, importQueue } from './import-job.js';
import { ImportService } from './import-service.js';
import { Importer } from './import.js';

export interface ImportWiringDeps {
  db: Db;
  interactions: InteractionDeps;
  /** FHIR_IMPORT_DIR: where $import may read files */
  importDir?: string;
  /** inputs of one job imported at once */
  concurrency: number;
  database: { databaseUrl?: string; schema?: string; dataDir: string };
  redisUrl?: string;
  log: (message: string, error?: unknown) => void;
}

export interface ImportComponents {
  service: ImportService;
  runner: JobRunner;
  close(): Promise<void>;
}

/**
 * The $import service and its queue. The queue runs on the shared job runner of src/jobs
 * (BullMQ on REDIS_URL, else in-process with durable state in the `job` table), in a runner
 * instance of its own so the import queue can be wired without touching the export wiring;
 * both use the same key prefix and the same `job` table.
 */
export async function createImports(deps: ImportWiringDeps): Promise<ImportComponents> {
  const jobs = new JobStore(deps.db);
  const state = new ImportStateStore(deps.db);
  const importer = new Importer({ interactions: deps.interactions, state });
  const jobDeps = { jobs, state, importer, importDir: deps.importDir, concurrency: deps.concurrency, log: deps.log };
  const jobRunner = new ImportJobRunner(jobDeps);
  const runner = await createJobRunner([importQueue(jobDeps, jobRunner)], {
    redisUrl: deps.redisUrl,
    prefix: queuePrefix(deps.database),
    onError: (e) => deps.log('import job runner error', e),
  });
  const service = new ImportService({ jobs, state, runner, jobRunner, importDir: deps.importDir, fhirBase: deps.interactions.fhirBase });
  return { service, runner, close: () => runner.close() };
}
