import type { OperationOutcome, Parameters, ParametersParameter } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { JobRunner } from '../jobs/types.js';
import type { ImportStateStore } from '../storage/import-state.js';
import type { JobStore } from '../storage/job-store.js';
import { AsyncJobs, type AsyncJobStatus } from './async-jobs.js';
import { importFailure, importReport, IMPORT_QUEUE, IMPORT_RETENTION_MS, type ImportJobRequest, type ImportJobResult, type ImportJobRunner } from './import-job.js';
import { formatOf, resolveAllowedFile } from './import-sources.js';

const MAX_INPUTS = 1000;

/** A completed import's result is its report, an OperationOutcome. */
export type ImportStatus = AsyncJobStatus<OperationOutcome>;

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
  private readonly asyncJobs: AsyncJobs;

  constructor(private readonly deps: ImportServiceDeps) {
    // A job's inline inputs and progress rows go with it.
    const cleanUp = async (ids: string[]) => {
      for (const id of ids) await deps.jobRunner.cleanUp(id);
    };
    this.asyncJobs = new AsyncJobs(deps, { queue: IMPORT_QUEUE, what: 'import', retentionMs: IMPORT_RETENTION_MS, failure: importFailure, cleanUp });
  }

  statusUrl(jobId: string): string {
    return `${this.deps.fhirBase}/$import-status/${jobId}`;
  }

  async kickOff(body: unknown, owner: string, requestUrl: string): Promise<{ jobId: string; statusUrl: string }> {
    const inputs = await this.parse(body);
    const inline = inputs.filter((i) => i.kind === 'inline');
    const request: ImportJobRequest = {
      requestUrl,
      inputs: inputs.map((i) => (i.kind === 'file' ? { kind: 'file', url: i.url, name: i.name } : { kind: 'inline', inputNo: inline.indexOf(i), name: i.name })),
    };
    // Inline NDJSON is stored beside the job (not in its request) before the job is queued.
    const jobId = await this.asyncJobs.start(owner, request, (id) => this.deps.state.saveInputs(id, inline.map((i) => i.text)));
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

  async status(jobId: string, owner: string): Promise<ImportStatus> {
    return this.asyncJobs.status(jobId, owner, (job) => importReport(job.result as ImportJobResult));
  }

  /** Stops a running import (what it committed stays) or forgets a finished one; afterwards its status is 404. */
  async cancel(jobId: string, owner: string): Promise<void> {
    const previous = await this.asyncJobs.cancel(jobId, owner);
    // A running import cleans up itself when it notices (its inputs are in use until then).
    if (previous !== 'in-progress') await this.deps.jobRunner.cleanUp(jobId);
  }
}
