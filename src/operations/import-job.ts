import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4.js';
import { FhirError, isFhirError } from '../fhir/errors.js';
import { JobLostError, runClaimed } from '../jobs/job-rows.js';
import { PermanentJobError, type JobContext } from '../jobs/types.js';
import type { ImportStateStore } from '../storage/import-state.js';
import type { JobStore } from '../storage/job-store.js';
import { resolveAllowedFile, type ImportSource } from './import-sources.js';
import type { Importer, ImportSummary } from './import.js';

export const IMPORT_QUEUE = 'import';
/** How long a finished import's report stays readable at its status URL. */
export const IMPORT_RETENTION_MS = 24 * 3600 * 1000;
/** Progress is written to the job row at most this often (it is also the heartbeat). */
const CHECKPOINT_INTERVAL_MS = 1000;

/** What the kick-off stores in the job row: where the inputs are, nothing else. */
export interface ImportJobRequest {
  inputs: Array<{ kind: 'file'; url: string; name: string } | { kind: 'inline'; inputNo: number; name: string }>;
  requestUrl: string;
}

/** What a completed import keeps in `job.result`. */
export interface ImportJobResult {
  inputs: ImportSummary['inputs'];
  resources: number;
  errorCount: number;
  issues: ImportSummary['issues'];
  seconds: number;
}

export interface ImportJobDeps {
  jobs: JobStore;
  state: ImportStateStore;
  importer: Importer;
  /** where file inputs may be read from; unset: file inputs are refused */
  importDir?: string;
  /** inputs imported at once within a job (2 on PostgreSQL, 1 embedded) */
  concurrency: number;
  log?: (message: string, error?: unknown) => void;
}

/** The job's scope in import_progress: a resumed run of the job skips what earlier runs committed. */
export const jobScope = (jobId: string) => `job:${jobId}`;

/** The OperationOutcome a failed import reports on its status URL. */
export function importFailure(error: unknown): OperationOutcome {
  if (isFhirError(error)) return error.toOutcome();
  if (error instanceof Error && isFhirError(error.cause)) return error.cause.toOutcome();
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: 'the import failed on a server error; what was committed stays, start it again to resume' }] };
}

/** The report of a completed import as an OperationOutcome: one issue per input, one per error kept. */
export function importReport(result: ImportJobResult): OperationOutcome {
  const issue: OperationOutcomeIssue[] = [
    {
      severity: 'information',
      code: 'informational',
      diagnostics: `${result.resources} resources written in ${result.seconds.toFixed(1)} s; ${result.errorCount} errors`,
    },
  ];
  for (const input of result.inputs) {
    issue.push({
      severity: input.status === 'failed' ? 'error' : 'information',
      code: input.status === 'failed' ? 'processing' : 'informational',
      diagnostics: `${input.name}: ${input.status}, ${input.resources} resources written, ${input.errors} errors`,
    });
  }
  for (const e of result.issues) {
    issue.push({ severity: 'error', code: 'processing', diagnostics: `${e.input}${e.line ? ` line ${e.line}` : ''}: ${e.message.slice(0, 500)}` });
  }
  return { resourceType: 'OperationOutcome', issue };
}

/** Runs $import jobs: claims the row, imports its inputs with progress + heartbeat, completes it. */
export class ImportJobRunner {
  constructor(private readonly deps: ImportJobDeps) {}

  async run(jobId: string, ctx: JobContext): Promise<void> {
    const { jobs } = this.deps;
    await runClaimed({ jobs, what: 'import', cleanUp: (id) => this.cleanUp(id), log: this.deps.log }, jobId, ctx, async (job, runId) => {
      const sources = await this.sources(jobId, job.request as ImportJobRequest);
      let last = 0;
      let resources = 0;
      const summary = await this.deps.importer.run(sources, {
        scope: jobScope(jobId),
        concurrency: this.deps.concurrency,
        signal: ctx.signal,
        onProgress: async (e) => {
          resources += e.resources;
          if (Date.now() - last < CHECKPOINT_INTERVAL_MS) return;
          last = Date.now();
          if (!(await jobs.checkpoint(jobId, runId, `${resources} resources written (${e.input.slice(0, 80)})`))) throw new JobLostError();
        },
      });
      const result: ImportJobResult = { inputs: summary.inputs, resources: summary.resources, errorCount: summary.errorCount, issues: summary.issues, seconds: summary.seconds };
      if (!(await jobs.complete(jobId, runId, result, IMPORT_RETENTION_MS))) throw new JobLostError();
      await this.cleanUp(jobId);
    });
  }

  /** Inputs are resolved again at run time: the import directory may have changed since the kick-off. */
  private async sources(jobId: string, request: ImportJobRequest): Promise<ImportSource[]> {
    const out: ImportSource[] = [];
    for (const input of request.inputs) {
      if (input.kind === 'inline') {
        const text = await this.deps.state.input(jobId, input.inputNo);
        if (text === undefined) throw new PermanentJobError(`inline input ${input.inputNo} is missing`);
        out.push({ kind: 'inline', name: input.name, text });
      } else {
        if (!this.deps.importDir) throw new PermanentJobError('file inputs are disabled (FHIR_IMPORT_DIR is not set)', { cause: new FhirError('incorrect', 'file inputs are disabled') });
        out.push({ kind: 'file', path: await resolveAllowedFile(this.deps.importDir, input.url), name: input.name });
      }
    }
    return out;
  }

  /** A finished job needs neither its inline input nor its progress rows. */
  async cleanUp(jobId: string): Promise<void> {
    await this.deps.state.removeInputs(jobId);
    await this.deps.state.removeScope(jobScope(jobId));
  }
}
