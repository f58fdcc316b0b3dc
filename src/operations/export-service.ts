import { randomUUID } from 'node:crypto';
import type { OperationOutcome } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import type { JobRunner } from '../jobs/types.js';
import type { ExportFiles } from '../storage/export-files.js';
import type { JobRecord, JobStore } from '../storage/job-store.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { compartmentTypes, type Compartment } from './export-compartments.js';
import { checkAccept, checkPrefer, parseExportParams, type ExportLevel, type FilterParser } from './export-params.js';
import { EXPORT_RETENTION_MS, failureOutcome, type ExportRequest, type ExportResult } from './export-run.js';

export const EXPORT_QUEUE = 'export';
/** Poll interval suggested to clients (Retry-After) while an export runs. */
export const STATUS_RETRY_AFTER_SECONDS = 2;
/** Expired jobs removed per kick-off: retention costs nothing when nobody exports. */
const CLEANUP_BATCH = 20;

/** Who is asking: the OAuth client (jobs belong to it) and what its scopes let it read. */
export interface Caller {
  clientId: string;
  canRead(resourceType: string): boolean;
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
}

export interface ExportManifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: true;
  output: Array<{ type: string; url: string; count: number }>;
  error: Array<{ type: string; url: string; count: number }>;
}

export type ExportStatus =
  | { state: 'running'; progress: string }
  | { state: 'completed'; manifest: ExportManifest; expires?: string }
  | { state: 'failed'; outcome: OperationOutcome };

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

const JOB_ID = /^[0-9a-f-]{36}$/;

/**
 * Bulk Data export as seen by clients: kick-off (validates, records the job, queues it),
 * status / manifest, cancellation and file downloads. Knows nothing of HTTP.
 */
export class ExportService {
  constructor(private readonly deps: ExportServiceDeps) {}

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
    if (input.level === 'group') {
      if (!input.caller.canRead('Group')) throw errors.forbidden('the access token does not allow reading Group');
      const group = await deps.store.read('Group', input.groupId ?? '');
      if (!group || group.deleted) throw errors.notFound(`Group/${(input.groupId ?? '').slice(0, 64)} is not known`);
    }
    const types = this.types(input, params.types, Object.keys(params.typeFilters));
    const request: ExportRequest = {
      level: input.level,
      groupId: input.groupId,
      patients: params.patients,
      types,
      since: params.since,
      transactionTime: new Date().toISOString(),
      typeFilters: params.typeFilters,
      requestUrl: input.requestUrl,
      warnings: params.warnings,
    };
    await this.removeExpired();
    const jobId = randomUUID();
    await deps.jobs.create({ id: jobId, queue: EXPORT_QUEUE, owner: input.caller.clientId, request });
    try {
      await deps.runner.enqueue(EXPORT_QUEUE, { jobId });
    } catch {
      await deps.jobs.fail(jobId, failureOutcome(undefined), EXPORT_RETENTION_MS);
      throw new FhirError('unavailable', 'the job queue is not reachable; try again later');
    }
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

  /** The job if `caller` may see it: its own, an export, not cancelled, not expired. */
  private async visible(jobId: string, caller: Caller): Promise<JobRecord> {
    const job = JOB_ID.test(jobId) ? await this.deps.jobs.get(jobId) : undefined;
    const expired = job?.expiresAt !== null && job?.expiresAt !== undefined && Date.parse(job.expiresAt) < Date.now();
    if (!job || job.queue !== EXPORT_QUEUE || job.owner !== caller.clientId || job.status === 'cancelled' || expired) {
      throw errors.notFound(`no export ${jobId.slice(0, 64)} (unknown, cancelled or expired)`);
    }
    return job;
  }

  async status(jobId: string, caller: Caller): Promise<ExportStatus> {
    const job = await this.visible(jobId, caller);
    if (job.status === 'failed') return { state: 'failed', outcome: (job.error as OperationOutcome | null) ?? failureOutcome(undefined) };
    if (job.status !== 'completed') return { state: 'running', progress: job.status === 'accepted' ? 'queued' : (job.progress ?? 'started') };
    const request = job.request as ExportRequest;
    const files = (job.result as ExportResult | null)?.files ?? [];
    const entry = (f: ExportResult['files'][number]) => ({ type: f.resourceType, url: this.fileUrl(jobId, f.fileNo), count: f.count });
    return {
      state: 'completed',
      expires: job.expiresAt ?? undefined,
      manifest: {
        transactionTime: request.transactionTime,
        request: request.requestUrl,
        requiresAccessToken: true,
        output: files.filter((f) => f.kind === 'output').map(entry),
        error: files.filter((f) => f.kind === 'error').map(entry),
      },
    };
  }

  /** Cancels a running export or deletes a finished one with its files; afterwards its status is 404. */
  async cancel(jobId: string, caller: Caller): Promise<void> {
    await this.visible(jobId, caller);
    const previous = await this.deps.jobs.cancel(jobId);
    if (previous === undefined) throw errors.notFound(`no export ${jobId.slice(0, 64)}`);
    // A running job may still be writing its current chunk; it removes its files itself when it notices.
    await this.deps.files.remove([jobId]);
  }

  /**
   * A completed export's file as its stored gzip members (concatenated, one gzip stream);
   * output files need read access to their type.
   */
  async file(jobId: string, fileName: string, caller: Caller): Promise<AsyncIterable<Buffer>> {
    const job = await this.visible(jobId, caller);
    const m = /^(\d{1,6})\.ndjson$/.exec(fileName);
    const files = job.status === 'completed' ? ((job.result as ExportResult | null)?.files ?? []) : [];
    const file = m ? files.find((f) => f.fileNo === Number(m[1])) : undefined;
    if (!file) throw errors.notFound(`export ${jobId} has no file ${fileName.slice(0, 40)}`);
    if (file.kind === 'output' && !caller.canRead(file.resourceType)) {
      throw errors.forbidden(`the access token's scopes do not allow reading ${file.resourceType}`);
    }
    return this.deps.files.chunks(jobId, file.fileNo);
  }

  private async removeExpired(): Promise<void> {
    const ids = await this.deps.jobs.expired(EXPORT_QUEUE, CLEANUP_BATCH);
    if (ids.length === 0) return;
    await this.deps.files.remove(ids);
    await this.deps.jobs.remove(ids);
  }
}
