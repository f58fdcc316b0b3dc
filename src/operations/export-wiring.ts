import { queueDefinitions, createJobRunner, queuePrefix } from '../jobs/registry.js';
import type { JobRunner } from '../jobs/types.js';
import type { Db } from '../storage/db.js';
import { ExportStore } from '../storage/export-store.js';
import { JobStore } from '../storage/job-store.js';
import type { ResourceStore } from '../storage/resource-store.js';
import type { EverythingDeps } from './everything.js';
import { encounterCompartment, patientCompartment, type ReferenceParamSource } from './export-compartments.js';
import type { FilterParser } from './export-params.js';
import { DEFAULT_EXPORT_TUNING, ExportRunner, type ExportTuning } from './export-run.js';
import { ExportService } from './export-service.js';

/** Operations to declare in the CapabilityStatement (Bulk Data 2.0 and R4 $everything canonicals). */
export const BULK_OPERATIONS = {
  system: [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }],
  types: {
    Patient: [
      { name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export' },
      { name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' },
    ],
    Group: [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export' }],
    Encounter: [{ name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Encounter-everything' }],
  },
};

export interface BulkDeps {
  db: Db;
  store: ResourceStore;
  search: FilterParser & { findIds(resourceType: string, query: string, opts: { limit: number }): Promise<string[]> };
  types: { isResourceType(type: string): boolean; resourceTypes(): string[] };
  referenceParams: ReferenceParamSource['referenceParams'];
  fhirBase: string;
  database: { databaseUrl?: string; schema?: string; dataDir: string };
  redisUrl?: string;
  log: (message: string, error?: unknown) => void;
}

export interface BulkComponents {
  runner: JobRunner;
  exports: ExportService;
  everything: EverythingDeps;
  /** live settings of export jobs in this process (page size, throttling) */
  tuning: ExportTuning;
  close(): Promise<void>;
}

/** Builds the job runner, its workers and the export / $everything services from their dependencies. */
export async function createBulk(deps: BulkDeps): Promise<BulkComponents> {
  const jobs = new JobStore(deps.db);
  const exportStore = new ExportStore(deps.db);
  const patient = patientCompartment();
  const types = deps.types;
  const encounter = encounterCompartment({ resourceTypes: () => types.resourceTypes(), referenceParams: deps.referenceParams });
  const tuning: ExportTuning = { ...DEFAULT_EXPORT_TUNING };
  const runner = new ExportRunner({ jobs, exports: exportStore, store: deps.store, search: deps.search, patientCompartment: patient, fhirBase: deps.fhirBase, tuning, log: deps.log });
  const jobRunner = await createJobRunner(queueDefinitions({ runner, jobs, exports: exportStore }), {
    redisUrl: deps.redisUrl,
    prefix: queuePrefix(deps.database),
    onError: (e) => deps.log('job runner error', e),
  });
  const exports = new ExportService({
    jobs,
    exports: exportStore,
    runner: jobRunner,
    store: deps.store,
    search: deps.search,
    isResourceType: (t) => types.isResourceType(t),
    resourceTypes: () => types.resourceTypes(),
    patientCompartment: patient,
    fhirBase: deps.fhirBase,
  });
  const everything: EverythingDeps = {
    db: deps.db,
    store: deps.store,
    fhirBase: deps.fhirBase,
    isResourceType: (t) => types.isResourceType(t),
    resourceTypes: () => types.resourceTypes(),
    compartments: new Map([
      ['Patient', patient],
      ['Encounter', encounter],
    ]),
  };
  return { runner: jobRunner, exports, everything, tuning, close: () => jobRunner.close() };
}
