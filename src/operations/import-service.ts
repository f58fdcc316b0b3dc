import { randomUUID } from 'node:crypto';
import type { OperationOutcome, Parameters, ParametersParameter } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import type { JobRunner } from '../jobs/types.js';
import type { ImportStateStore } from '../storage/import-state.js';
import type { JobRecord, JobStore } from '../storage/job-store.js';
import { importFailure, importReport, IMPORT_QUEUE, IMPORT_RETENTION_MS, type ImportJobRequest, type ImportJobResult, type ImportJobRunner } from './import-job.js';
import { formatOf, resolveAllowedFile } from './import-sources.js';

/** Poll interval suggested to clients (Retry-After) while an import runs. */
export const IMPORT_RETRY_AFTER_SECONDS = 2;
const JOB_ID = /^[0-9a-f-]{36}$/;
const CLEANUP_BATCH = 20;
const MAX_INPUTS = 1000;

export type ImportStatus =
  | { state: 'running'; progress: string }
  | { state: 'completed'; report: OperationOutcome; expires?: string }
  | { state: 'failed'; outcome: OperationOutcome };

export interface ImportServiceDeps {
  jobs: JobStore;
  state: ImportStateStore;
  runner: JobRunner;
  jobRunner: ImportJobRunner;
  importDir?: string;
  fhirBase: string;
}

function partValue(part: ParametersParameter): string | undefined {
  return part.valueUrl ?? part.valueUri ?? part.valueString ?? part.valueCode;
}

/**
 * $import as clients see it (kick-off, status, cancel); knows nothing of HTTP.
 *
 * The request is a Parameters resource with one `input` per source:
 *  - `input.url` (valueUrl / valueUri / valueString): a `.json[.gz]` Bundle or `.ndjson[.gz]`
 *    file under the server's import directory (FHIR_IMPORT_DIR), as a `file:` URL or a path
 *    relative to that directory. Nothing outside it can be named (symbolic links are resolved
 *    first); with FHIR_IMPORT_DIR unset, file inputs are refused. The server never fetches
 *    http(s) URLs (no server-side request forgery).
 *  - `input.ndjson` (valueString): NDJSON sent inline, one resource per line (ids kept).
 * Optional `input.type` (valueCode) is accepted and ignored: every line says its type.
 */
export class ImportService {
  constructor(private readonly deps: ImportServiceDeps) {}

  statusUrl(jobId: string): string {
    return `${this.deps.fhirBase}/$import-status/${jobId}`;
  }

  async kickOff(body: unknown, owner: string, requestUrl: string): Promise<{ jobId: string; statusUrl: string }> {
    const inputs = await this.parse(body);
    await this.removeExpired();
    const jobId = randomUUID();
    const inline = inputs.filter((i) => i.kind === 'inline');
    const request: ImportJobRequest = {
      requestUrl,
      inputs: inputs.map((i) => (i.kind === 'file' ? { kind: 'file', url: i.url, name: i.name } : { kind: 'inline', inputNo: inline.indexOf(i), name: i.name })),
    };
    await this.deps.state.saveInputs(jobId, inline.map((i) => i.text));
    await this.deps.jobs.create({ id: jobId, queue: IMPORT_QUEUE, owner, request });
    try {
      await this.deps.runner.enqueue(IMPORT_QUEUE, { jobId });
    } catch {
      await this.deps.jobs.fail(jobId, importFailure(undefined), IMPORT_RETENTION_MS);
      await this.deps.jobRunner.cleanUp(jobId);
      throw new FhirError('unavailable', 'the job queue is not reachable; try again later');
    }
    return { jobId, statusUrl: this.statusUrl(jobId) };
  }

  private async parse(body: unknown): Promise<Array<{ kind: 'file'; url: string; name: string } | { kind: 'inline'; text: string; name: string }>> {
    const parameters = body as Parameters | undefined;
    if (typeof body !== 'object' || body === null || parameters?.resourceType !== 'Parameters') {
      throw errors.incorrect('$import needs a Parameters resource with one or more `input` parameters');
    }
    const inputs = (parameters.parameter ?? []).filter((p) => p.name === 'input');
    if (inputs.length === 0) throw errors.incorrect('$import needs at least one `input` parameter', ['Parameters.parameter']);
    if (inputs.length > MAX_INPUTS) throw errors.incorrect(`$import takes at most ${MAX_INPUTS} inputs`);
    const out: Array<{ kind: 'file'; url: string; name: string } | { kind: 'inline'; text: string; name: string }> = [];
    for (const [n, input] of inputs.entries()) {
      const where = `Parameters.parameter[input ${n}]`;
      const url = input.part?.find((p) => p.name === 'url');
      const ndjson = input.part?.find((p) => p.name === 'ndjson');
      if ((url ? 1 : 0) + (ndjson ? 1 : 0) !== 1) throw errors.incorrect(`input ${n} needs exactly one of the parts url and ndjson`, [where]);
      if (ndjson) {
        const text = ndjson.valueString;
        if (typeof text !== 'string') throw errors.incorrect(`input ${n}: ndjson needs a valueString`, [where]);
        out.push({ kind: 'inline', text, name: `input ${n} (inline ndjson)` });
        continue;
      }
      const value = partValue(url!);
      if (!value) throw errors.incorrect(`input ${n}: url needs a valueUrl`, [where]);
      if (!this.deps.importDir) throw errors.incorrect('file inputs are disabled on this server (FHIR_IMPORT_DIR is not set); send NDJSON inline', [where]);
      const path = await resolveAllowedFile(this.deps.importDir, value);
      formatOf({ kind: 'file', path, name: value });
      out.push({ kind: 'file', url: value, name: value.slice(0, 200) });
    }
    return out;
  }

  /** The job if `owner` may see it: its own import, not cancelled, not expired. */
  private async visible(jobId: string, owner: string): Promise<JobRecord> {
    const job = JOB_ID.test(jobId) ? await this.deps.jobs.get(jobId) : undefined;
    const expired = job?.expiresAt !== null && job?.expiresAt !== undefined && Date.parse(job.expiresAt) < Date.now();
    if (!job || job.queue !== IMPORT_QUEUE || job.owner !== owner || job.status === 'cancelled' || expired) {
      throw errors.notFound(`no import ${jobId.slice(0, 64)} (unknown, cancelled or expired)`);
    }
    return job;
  }

  async status(jobId: string, owner: string): Promise<ImportStatus> {
    const job = await this.visible(jobId, owner);
    if (job.status === 'failed') return { state: 'failed', outcome: (job.error as OperationOutcome | null) ?? importFailure(undefined) };
    if (job.status !== 'completed') return { state: 'running', progress: job.status === 'accepted' ? 'queued' : (job.progress ?? 'started') };
    return { state: 'completed', report: importReport(job.result as ImportJobResult), expires: job.expiresAt ?? undefined };
  }

  /** Stops a running import (what it committed stays) or forgets a finished one; afterwards its status is 404. */
  async cancel(jobId: string, owner: string): Promise<void> {
    await this.visible(jobId, owner);
    const previous = await this.deps.jobs.cancel(jobId);
    if (previous === undefined) throw errors.notFound(`no import ${jobId.slice(0, 64)}`);
    if (previous !== 'in-progress') await this.deps.jobRunner.cleanUp(jobId);
  }

  private async removeExpired(): Promise<void> {
    const ids = await this.deps.jobs.expired(IMPORT_QUEUE, CLEANUP_BATCH);
    if (ids.length === 0) return;
    for (const id of ids) await this.deps.jobRunner.cleanUp(id);
    await this.deps.jobs.remove(ids);
  }
}
