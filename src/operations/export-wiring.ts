import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { WorkerDeps } from '../jobs/registry.js';
import type { JobRunner } from '../jobs/types.js';
import type { Db } from '../storage/db.js';
import { DatabaseExportFiles, DiskExportFiles, type ExportFiles } from '../storage/export-files.js';
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
  /** where export files go: the database on PostgreSQL, disk under dataDir embedded */
  database: { databaseUrl?: string; dataDir: string };
  log: (message: string, error?: unknown) => void;
}

export interface BulkComponents {
  exports: ExportService;
  everything: EverythingDeps;
  /** live settings of export jobs in this process (page size, throttling) */
  tuning: ExportTuning;
  /** where export files are kept (database table or disk, see exportFiles) */
  files: ExportFiles;
}

/** The export side of the job wiring: the `export` queue's worker first, then (given the one job runner) the services. */
export interface ExportWiring {
  worker: WorkerDeps['export'];
  services(runner: JobRunner): BulkComponents;
  /** Removes the temporary export folder of an in-memory database (at close). */
  dispose(): void;
}

/** Builds the export runner and files, and the export / $everything services once the job runner exists. */
export function exportWiring(deps: BulkDeps): ExportWiring {
  const jobs = new JobStore(deps.db);
  const exportStore = new ExportStore(deps.db);
  const { files, dispose } = exportFiles(deps, jobs);
  const patient = patientCompartment();
  const types = deps.types;
  const encounter = encounterCompartment({ resourceTypes: () => types.resourceTypes(), referenceParams: deps.referenceParams });
  const tuning: ExportTuning = { ...DEFAULT_EXPORT_TUNING };
  const runner = new ExportRunner({ jobs, exports: exportStore, files, store: deps.store, search: deps.search, patientCompartment: patient, fhirBase: deps.fhirBase, tuning, log: deps.log });
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
  return {
    worker: { runner, files },
    dispose,
    services: (jobRunner) => ({
      exports: new ExportService({
        jobs,
        files,
        runner: jobRunner,
        store: deps.store,
        search: deps.search,
        isResourceType: (t) => types.isResourceType(t),
        resourceTypes: () => types.resourceTypes(),
        patientCompartment: patient,
        fhirBase: deps.fhirBase,
      }),
      everything,
      tuning,
      files,
    }),
  };
}

/**
 * PostgreSQL: files in the database, so every process serves every download. Embedded
 * (PGlite, one process by construction): files on disk under DATA_DIR/exports, or in a
 * temporary folder removed at close when the database itself lives in memory.
 */
function exportFiles(deps: BulkDeps, jobs: JobStore): { files: ExportFiles; dispose(): void } {
  if (deps.database.databaseUrl) return { files: new DatabaseExportFiles(deps.db), dispose: () => undefined };
  if (deps.database.dataDir !== 'memory') return { files: new DiskExportFiles(join(resolve(deps.database.dataDir), 'exports'), jobs), dispose: () => undefined };
  const root = mkdtempSync(join(tmpdir(), 'fhir-exports-'));
  return { files: new DiskExportFiles(root, jobs), dispose: () => rmSync(root, { recursive: true, force: true }) };
}
