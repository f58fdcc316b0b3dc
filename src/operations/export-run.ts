import { promisify } from 'node:util';
import { gzip as zlibGzip } from 'node:zlib';
import type { Group, OperationOutcome, OperationOutcomeIssue } from 'fhir/r4.js';
import { FhirError, isFhirError } from '../fhir/errors.js';
import { JobLostError, runClaimed } from '../jobs/job-rows.js';
import { JobInterruptedError, PermanentJobError, type JobContext } from '../jobs/types.js';
import type { ExportFiles } from '../storage/export-files.js';
import type { ExportRow, ExportStore, Membership, OutputFile } from '../storage/export-store.js';
import type { JobStore } from '../storage/job-store.js';
import type { ResourceStore } from '../storage/resource-store.js';
import type { Compartment } from './export-compartments.js';
import type { ExportLevel } from './export-params.js';

/** What the kick-off stored in the job row; the job reads nothing else. */
export interface ExportRequest {
  level: ExportLevel;
  groupId?: string;
  /** `patient` parameter: restrict Patient / Group level export to these patients */
  patients?: string[];
  /** types to export, already narrowed to what the client's scopes allow */
  types: string[];
  since?: string;
  /** the snapshot instant: versions written later are left out (their earlier version goes in) */
  transactionTime: string;
  typeFilters: Record<string, string[]>;
  /** the granular-scope queries forced into `typeFilters` per type (see Caller.scopeFilters) */
  scopeFilters?: Record<string, string[]>;
  requestUrl: string;
  warnings: OperationOutcomeIssue[];
}

/** What the completed job keeps in `job.result`; URLs are built when the manifest is served. */
export interface ExportResult {
  files: OutputFile[];
}

export interface ExportTuning {
  /** resources per keyset page: the most the job holds in memory at once */
  chunkSize: number;
  /** a type's file is continued until it holds at least this many resources */
  fileMaxResources: number;
  /** pause after each page, to leave database capacity to interactive traffic */
  throttleMs: number;
}

export const DEFAULT_EXPORT_TUNING: ExportTuning = { chunkSize: 1000, fileMaxResources: 100_000, throttleMs: 0 };
/** How long a finished export's files stay downloadable. */
export const EXPORT_RETENTION_MS = 24 * 3600 * 1000;

/** Fast gzip: the aim is fewer bytes through PostgreSQL, not the smallest file. */
export const EXPORT_GZIP_LEVEL = 1;
const gzip = promisify(zlibGzip);

/** _typeFilter is checked with SearchService.findIds, whose `_id` takes at most 100 values of ≤ 4096 characters. */
const FILTER_BATCH_IDS = 100;
const FILTER_BATCH_CHARS = 3500;

export interface ExportRunDeps {
  jobs: JobStore;
  exports: ExportStore;
  files: ExportFiles;
  store: Pick<ResourceStore, 'read'>;
  search: { findIds(resourceType: string, query: string, opts: { limit: number }): Promise<string[]> };
  patientCompartment: Compartment;
  fhirBase: string;
  tuning: ExportTuning;
  log?: (message: string, error?: unknown) => void;
}

/** Appends NDJSON chunks to per-type files (each append also records progress and the heartbeat). */
class OutputWriter {
  private nextFile = 0;
  private readonly open = new Map<string, { fileNo: number; count: number; seq: number }>();
  private readonly done: OutputFile[] = [];
  written = 0;

  constructor(
    private readonly deps: ExportRunDeps,
    private readonly jobId: string,
    private readonly runId: string,
  ) {}

  async write(kind: 'output' | 'error', resourceType: string, lines: string[], progress: () => string): Promise<void> {
    const key = `${kind}/${resourceType}`;
    let file = this.open.get(key);
    if (!file || file.count >= this.deps.tuning.fileMaxResources) {
      file = { fileNo: this.nextFile++, count: 0, seq: 0 };
      this.open.set(key, file);
      this.done.push({ fileNo: file.fileNo, kind, resourceType, count: 0 });
    }
    // Compressed here, in libuv's thread pool, so the database stores and logs far fewer bytes.
    const body = await gzip(`${lines.join('\n')}\n`, { level: EXPORT_GZIP_LEVEL });
    this.written += lines.length;
    const ok = await this.deps.files.append(this.jobId, this.runId, { fileNo: file.fileNo, seq: file.seq++, kind, resourceType, count: lines.length, body }, progress());
    file.count += lines.length;
    this.done[file.fileNo]!.count = file.count;
    if (!ok) throw new JobLostError();
  }

  /** The files written, in the order they were started (the manifest's order). */
  files(): OutputFile[] {
    return this.done.map((f) => ({ ...f }));
  }
}

function idBatches(ids: string[]): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  let chars = 0;
  for (const id of ids) {
    if (batch.length >= FILTER_BATCH_IDS || chars + id.length + 1 > FILTER_BATCH_CHARS) {
      batches.push(batch);
      batch = [];
      chars = 0;
    }
    batch.push(id);
    chars += id.length + 1;
  }
  if (batch.length) batches.push(batch);
  return batches;
}

function groupMembers(group: Group, fhirBase: string): string[] {
  const ids = new Set<string>();
  for (const member of group.member ?? []) {
    if (member.inactive) continue;
    const ref = member.entity?.reference ?? '';
    const local = ref.startsWith(`${fhirBase}/`) ? ref.slice(fhirBase.length + 1) : ref;
    const m = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(local);
    if (m) ids.add(m[1]!);
  }
  return [...ids];
}

/** The OperationOutcome a failed export reports on its status URL. */
export function failureOutcome(error: unknown): OperationOutcome {
  if (isFhirError(error)) return error.toOutcome();
  if (error instanceof Error && isFhirError(error.cause)) return error.cause.toOutcome();
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: 'the export failed on a server error; start a new export' }] };
}

/**
 * Runs one export job: claims the job row, streams every requested type from the database in
 * keyset pages into NDJSON chunks, and completes the row with the file list. Idempotent: a
 * retried or resumed run drops the partial files of the previous run and starts over.
 */
export class ExportRunner {
  constructor(private readonly deps: ExportRunDeps) {}

  async run(jobId: string, ctx: JobContext): Promise<void> {
    const { jobs, files } = this.deps;
    const cleanUp = (id: string) => files.remove([id]);
    await runClaimed({ jobs, what: 'export', cleanUp, log: this.deps.log }, jobId, ctx, async (job, runId) => {
      // A retried or resumed run starts over: the partial files of the previous run go first.
      await files.remove([jobId]);
      const writer = new OutputWriter(this.deps, jobId, runId);
      await this.export(job.request as ExportRequest, writer, jobId, runId, ctx);
      const result: ExportResult = { files: writer.files() };
      if (!(await jobs.complete(jobId, runId, result, EXPORT_RETENTION_MS))) throw new JobLostError();
    });
  }

  private async export(request: ExportRequest, writer: OutputWriter, jobId: string, runId: string, ctx: JobContext): Promise<void> {
    const owners = await this.owners(request);
    const types = await this.deps.exports.presentTypes(request.types);
    for (const [index, resourceType] of types.entries()) {
      const membership = this.membership(request, resourceType, owners);
      if (!membership) continue;
      const progress = () => `exporting ${resourceType} (type ${index + 1} of ${types.length}), ${writer.written} resources written`;
      await this.checkpoint(jobId, runId, progress(), ctx);
      const filters = request.typeFilters[resourceType];
      const queries = filters && !filters.includes('') ? filters : undefined;
      const emit = async (rows: ExportRow[]) => {
        const kept = queries ? await this.matching(resourceType, rows, queries) : rows;
        if (kept.length) await writer.write('output', resourceType, kept.map((r) => r.json), progress);
        else await this.checkpoint(jobId, runId, progress(), ctx);
        if (ctx.signal.aborted) throw new JobInterruptedError('export interrupted by shutdown');
        if (this.deps.tuning.throttleMs > 0) await new Promise((resolve) => setTimeout(resolve, this.deps.tuning.throttleMs));
      };
      await this.scanType(request, resourceType, membership, emit);
    }
    if (request.warnings.length) {
      const lines = request.warnings.map((issue) => JSON.stringify({ resourceType: 'OperationOutcome', issue: [issue] } satisfies OperationOutcome));
      await writer.write('error', 'OperationOutcome', lines, () => `${writer.written} resources written`);
    }
  }

  /**
   * Keyset pages of the type as of transactionTime: current content where it has not changed
   * since, else the version current then (membership judged on the current index rows).
   */
  private async scanType(request: ExportRequest, resourceType: string, membership: Membership, emit: (rows: ExportRow[]) => Promise<void>): Promise<void> {
    const { exports, tuning } = this.deps;
    const until = request.transactionTime;
    const limit = tuning.chunkSize;
    const fetch = (after: string) => {
      const page = exports.scan({ resourceType, after, limit, until, since: request.since, membership });
      page.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
      return page;
    };
    // The next page is read while the current one is written (two pages in memory at most):
    // on PostgreSQL the read and the write overlap on two pool connections.
    for (let next = fetch(''); ; ) {
      const rows = await next;
      if (rows.length === 0) break;
      next = rows.length < limit ? Promise.resolve([]) : fetch(rows[rows.length - 1]!.id);
      const changed = rows.filter((r) => r.changed).map((r) => r.id);
      const asOf = new Map((await exports.versionsAsOf(resourceType, changed, until, request.since)).map((r) => [r.id, r.json]));
      const page: ExportRow[] = [];
      for (const row of rows) {
        const json = row.changed ? asOf.get(row.id) : row.json;
        if (json) page.push({ id: row.id, json });
      }
      await emit(page);
    }
  }

  /** _typeFilter: the rows any of the queries matches, asked of the search layer in id batches. */
  private async matching(resourceType: string, rows: ExportRow[], queries: string[]): Promise<ExportRow[]> {
    const keep = new Set<string>();
    for (const batch of idBatches(rows.map((r) => r.id))) {
      for (const query of queries) {
        const open = batch.filter((id) => !keep.has(id));
        if (open.length === 0) break;
        const ids = await this.deps.search.findIds(resourceType, `${query}&_id=${open.join(',')}`, { limit: open.length });
        for (const id of ids) keep.add(id);
      }
    }
    return rows.filter((r) => keep.has(r.id));
  }

  private async checkpoint(jobId: string, runId: string, progress: string, ctx: JobContext): Promise<void> {
    if (ctx.signal.aborted) throw new JobInterruptedError('export interrupted by shutdown');
    if (!(await this.deps.jobs.checkpoint(jobId, runId, progress))) throw new JobLostError();
  }

  /** The patients whose compartments are exported; undefined = all (system, or Patient level without `patient`). */
  private async owners(request: ExportRequest): Promise<string[] | undefined> {
    if (request.level !== 'group') return request.patients;
    const stored = await this.deps.store.read('Group', request.groupId ?? '');
    if (!stored || stored.deleted || !stored.json) throw new PermanentJobError(`Group/${request.groupId} no longer exists`, { cause: new FhirError('not-found', `Group/${request.groupId} no longer exists`) });
    const members = groupMembers(JSON.parse(stored.json) as Group, this.deps.fhirBase);
    return request.patients ? members.filter((id) => request.patients!.includes(id)) : members;
  }

  /** undefined: the type cannot hold members of the requested compartments (nothing to scan). */
  private membership(request: ExportRequest, resourceType: string, owners: string[] | undefined): Membership | undefined {
    if (request.level === 'system') return { kind: 'all' };
    const compartment = this.deps.patientCompartment;
    const params = compartment.params.get(resourceType) ?? [];
    const isOwnerType = resourceType === compartment.ownerType;
    if (params.length === 0 && !isOwnerType) return undefined;
    if (owners && owners.length === 0) return undefined;
    return { kind: 'compartment', ownerType: compartment.ownerType, params, ownerIds: owners, isOwnerType };
  }
}
