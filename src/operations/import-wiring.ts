import type { WorkerDeps } from '../jobs/registry.js';
import type { JobRunner } from '../jobs/types.js';
import type { InteractionDeps } from '../interactions/types.js';
import type { Db } from '../storage/db.js';
import { ImportStateStore } from '../storage/import-state.js';
import { JobStore } from '../storage/job-store.js';
import { ImportJobRunner } from './import-job.js';
import { ImportService } from './import-service.js';
import { Importer } from './import.js';

export interface ImportWiringDeps {
  db: Db;
  interactions: InteractionDeps;
  /** FHIR_IMPORT_DIR: where $import may read files */
  importDir?: string;
  /** inputs of one job imported at once */
  concurrency: number;
  log: (message: string, error?: unknown) => void;
}

/** The import side of the job wiring: the `import` queue's worker first, then (given the one job runner) the service. */
export interface ImportWiring {
  worker: WorkerDeps['import'];
  service(runner: JobRunner): ImportService;
}

/** Builds the import job runner and, once the process's job runner exists, the $import service. */
export function importWiring(deps: ImportWiringDeps): ImportWiring {
  const jobs = new JobStore(deps.db);
  const state = new ImportStateStore(deps.db);
  const importer = new Importer({ interactions: deps.interactions, state });
  const jobRunner = new ImportJobRunner({ jobs, state, importer, importDir: deps.importDir, concurrency: deps.concurrency, log: deps.log });
  return {
    worker: { runner: jobRunner },
    service: (runner) => new ImportService({ jobs, state, runner, jobRunner, importDir: deps.importDir, fhirBase: deps.interactions.fhirBase }),
  };
}
