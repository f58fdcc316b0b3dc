import { errors } from '../fhir/errors.js';
import type { JobRunner } from '../jobs/types.js';
import type { ExportFiles } from '../storage/export-files.js';
import type { JobStore } from '../storage/job-store.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { compartmentTypes, type Compartment } from './export-compartments.js';
import { checkAccept, checkPrefer, parseExportParams, type ExportLevel, type FilterParser } from './export-params.js';
import { AsyncJobs, type AsyncJobStatus } from './async-jobs.js';
import { EXPORT_RETENTION_MS, failureOutcome, type ExportRequest, type ExportResult } from './export-run.js';

export const EXPORT_QUEUE = 'export';

/** Who is asking: the OAuth client (jobs belong to it) and what its scopes let it read. */
export interface Caller {
  clientId: string;
  canRead(resourceType: string): boolean;
  /**
   * Types the caller may read only where one of these queries matches (SMART v2 granular scopes,
   * `Observation.rs?category=laboratory`): an export applies them like a `_typeFilter` the
   * client cannot drop (ANDed with its own), and their files are served only from exports
   * filtered the same way.
   */
  scopeFilters?: Readonly<Record<string, readonly string[]>>;
}

export interface KickOffInput {
  level: ExportLevel;
  groupId?: string;
  query: URLSearchParams;
  body?: unknown;
  prefer?: string;
  accept?: string;
  /** the full kick-off URL, echoed as `request` in the manifest */
  requestUrl: string;
  caller: Caller;
  /**
   * The caller is confined to this patient's compartment (SMART `patient/` scopes): only a
   * Patient-level export of that one patient is allowed.
   */
  onlyPatient?: string;
}

export interface ExportManifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: true;
  output: Array<{ type: string; url: string; count: number }>;
  error: Array<{ type: string; url: string; count: number }>;
}

export type ExportStatus = AsyncJobStatus<ExportManifest>;

export interface ExportServiceDeps {
  jobs: JobStore;
  files: ExportFiles;
  runner: JobRunner;
  store: Pick<ResourceStore, 'read'>;
  search: FilterParser;
  isResourceType(type: string): boolean;
  resourceTypes(): string[];
  patientCompartment: Compartment;
  fhirBase: string;
}

/**
 * Bulk Data export as seen by clients: kick-off (validates, records the job, queues it),
 * status / manifest, cancellation and file downloads. Knows nothing of HTTP.
 */
export class ExportService {
  private readonly asyncJobs: AsyncJobs;

  constructor(private readonly deps: ExportServiceDeps) {
    this.asyncJobs = new AsyncJobs(deps, { queue: EXPORT_QUEUE, what: 'export', retentionMs: EXPORT_RETENTION_MS, failure: failureOutcome, cleanUp: (ids) => deps.files.remove(ids) });
  }

  statusUrl(jobId: string): string {
    return `${this.deps.fhirBase}/$export-status/${jobId}`;
  }

  fileUrl(jobId: string, fileNo: number): string {
    return `${this.deps.fhirBase}/$export-output/${jobId}/${fileNo}.ndjson`;
  }

  async kickOff(input: KickOffInput): Promise<{ jobId: string; statusUrl: string }> {
    const { deps } = this;
    checkAccept(input.accept);
    const { lenient } = checkPrefer(input.prefer);
    const params = parseExportParams(input.query, input.body, {
      level: input.level,
      isResourceType: (t) => deps.isResourceType(t),
      search: deps.search,
      fhirBase: deps.fhirBase,
      lenient,
    });
    if (input.onlyPatient !== undefined) {
      if (input.level !== 'patient') throw errors.forbidden("a token confined to one patient's compartment may only export that patient (Patient/$export)");
      if (params.patients?.some((id) => id !== input.onlyPatient)) throw errors.forbidden('the patient parameter names a patient outside the compartment the access token is confined to');
      params.patients = [input.onlyPatient];
    }
    if (input.level === 'group') {
      if (!input.caller.canRead('Group')) throw errors.forbidden('the access token does not allow reading Group');
      const group = await deps.store.read('Group', input.groupId ?? '');
      if (!group || group.deleted) throw errors.notFound(`Group/${(input.groupId ?? '').slice(0, 64)} is not known`);
    }
    const types = this.types(input, params.types, Object.keys(params.typeFilters));
    let scopeFilters: Record<string, string[]> | undefined;
    for (const type of types) {
      const scoped = input.caller.scopeFilters?.[type];
      if (!scoped) continue;
      for (const query of scoped) {
        const parsed = deps.search.parse({ resourceType: type, params: [...new URLSearchParams(query)] as [string, string][], strict: true, baseUrl: deps.fhirBase });
        if (parsed.unknown.length) throw errors.forbidden(`the access token's granular scope for ${type} (?${query.slice(0, 100)}) cannot be applied to an export`);
      }
      const own = params.typeFilters[type];
      params.typeFilters[type] = !own || own.includes('') ? [...scoped] : own.flatMap((mine) => scoped.map((query) => `${mine}&${query}`));
      (scopeFilters ??= {})[type] = [...scoped].sort();
    }
    const request: ExportRequest = {
      level: input.level,
      groupId: input.groupId,
      patients: params.patients,
      types,
      since: params.since,
      transactionTime: new Date().toISOString(),
      typeFilters: params.typeFilters,
      ...(scopeFilters ? { scopeFilters } : {}),
      requestUrl: input.requestUrl,
      warnings: params.warnings,
    };
    const jobId = await this.asyncJobs.start(input.caller.clientId, request);
    return { jobId, statusUrl: this.statusUrl(jobId) };
  }

  /** Export types: the _type list (each must be readable), else every readable type in scope of the level. */
  private types(input: KickOffInput, explicit: string[] | undefined, filtered: string[]): string[] {
    const { caller } = input;
    const refused = [...(explicit ?? []), ...filtered].filter((t) => !caller.canRead(t));
    if (refused.length) throw errors.forbidden(`the access token's scopes do not allow reading ${[...new Set(refused)].join(', ').slice(0, 200)}`);
    if (explicit) return explicit;
    const universe = input.level === 'system' ? this.deps.resourceTypes() : compartmentTypes(this.deps.patientCompartment);
    const allowed = universe.filter((t) => caller.canRead(t));
    if (allowed.length === 0) throw errors.forbidden('the access token allows reading no resource type');
    return allowed;
  }

  async status(jobId: string, caller: Caller): Promise<ExportStatus> {
    return this.asyncJobs.status(jobId, caller.clientId, (job) => {
      const request = job.request as ExportRequest;
      const files = (job.result as ExportResult | null)?.files ?? [];
      const entry = (f: ExportResult['files'][number]) => ({ type: f.resourceType, url: this.fileUrl(jobId, f.fileNo), count: f.count });
      return {
        transactionTime: request.transactionTime,
        request: request.requestUrl,
        requiresAccessToken: true,
        output: files.filter((f) => f.kind === 'output').map(entry),
        error: files.filter((f) => f.kind === 'error').map(entry),
      };
    });
  }

  /** Cancels a running export or deletes a finished one with its files; afterwards its status is 404. */
  async cancel(jobId: string, caller: Caller): Promise<void> {
    await this.asyncJobs.cancel(jobId, caller.clientId);
    // A running job may still be writing its current chunk; it removes its files itself when it notices.
    await this.deps.files.remove([jobId]);
  }

  /**
   * A completed export's file as its stored gzip members (concatenated, one gzip stream);
   * output files need read access to their type.
   */
  async file(jobId: string, fileName: string, caller: Caller): Promise<AsyncIterable<Buffer>> {
    const job = await this.asyncJobs.visible(jobId, caller.clientId);
    const m = /^(\d{1,6})\.ndjson$/.exec(fileName);
    const files = job.status === 'completed' ? ((job.result as ExportResult | null)?.files ?? []) : [];
    const file = m ? files.find((f) => f.fileNo === Number(m[1])) : undefined;
    if (!file) throw errors.notFound(`export ${jobId} has no file ${fileName.slice(0, 40)}`);
    if (file.kind === 'output' && !caller.canRead(file.resourceType)) {
      throw errors.forbidden(`the access token's scopes do not allow reading ${file.resourceType}`);
    }
    // A type the token reads through granular scopes only: the file must have been filtered by exactly those.
    const scoped = caller.scopeFilters?.[file.resourceType];
    if (file.kind === 'output' && scoped) {
      const applied = (job.request as ExportRequest).scopeFilters?.[file.resourceType] ?? [];
      if (applied.join('&&') !== [...scoped].sort().join('&&')) {
        throw errors.forbidden(`this export's ${file.resourceType} file was not filtered by the access token's granular scope`);
      }
    }
    return this.deps.files.chunks(jobId, file.fileNo);
  }
}
