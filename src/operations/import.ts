import type { Bundle, BundleEntry, FhirResource, OperationOutcome, Resource } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import { parseEntry } from '../interactions/bundle-entries.js';
import { BundleEntryError, parseTransaction, processBundle, transactionIn, type ParsedEntry } from '../interactions/bundle.js';
import type { InteractionDeps } from '../interactions/types.js';
import type { ImportProgress, ImportStateStore } from '../storage/import-state.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import { bundleTypeHint, fingerprint, formatOf, ndjsonLines, readText, sizeOf, type ImportSource } from './import-sources.js';

export interface ImportDeps {
  interactions: InteractionDeps;
  state: ImportStateStore;
}

export interface ImportOptions {
  /** whose progress this is: 'cli', or `job:<id>` (see migrations/0004-import.ts) */
  scope: string;
  /** inputs imported at once; 1 on the embedded database (one connection) */
  concurrency?: number;
  /** NDJSON resources per database transaction (and per write statement) */
  chunkSize?: number;
  /** import again inputs recorded as done */
  force?: boolean;
  signal?: AbortSignal;
  /** after each commit; an exception thrown here stops the import (a cancelled job) */
  onProgress?: (event: ImportProgressEvent) => void | Promise<void>;
  /** error details kept (all errors are counted) */
  maxIssues?: number;
}

export interface ImportProgressEvent {
  input: string;
  /** resources written by this commit */
  resources: number;
  /** input bytes consumed since the last event of this input */
  bytes: number;
}

export interface InputReport {
  name: string;
  status: 'imported' | 'skipped' | 'failed';
  /** resources written by this run */
  resources: number;
  errors: number;
}

export interface ImportIssue {
  input: string;
  /** 1-based NDJSON line */
  line?: number;
  message: string;
}

export interface ImportSummary {
  inputs: InputReport[];
  /** resources written by this run */
  resources: number;
  errorCount: number;
  issues: ImportIssue[];
  seconds: number;
}

const DEFAULT_CHUNK = 1000;
/** A chunk is also cut at this much JSON, so big resources do not make huge transactions. */
const CHUNK_CHARS = 16 * 1024 * 1024;

function message(e: unknown, line?: number): string {
  const text = e instanceof FhirError || e instanceof SyntaxError ? e.message : e instanceof Error ? `server error: ${e.message}` : 'server error';
  // An NDJSON line went through as a one-entry transaction: its line number says where, not the entry.
  return line === undefined ? text : text.replace(/Bundle\.entry\[\d+\](\.resource)?[:.] ?/g, '');
}

/** Entries of a collection Bundle as transaction entries: resources with an id keep it (PUT), others are created (POST). */
function collectionAsTransaction(bundle: Bundle): BundleEntry[] {
  const out: BundleEntry[] = [];
  for (const entry of bundle.entry ?? []) {
    const resource = entry.resource;
    if (!resource) continue;
    const request: BundleEntry['request'] = resource.id ? { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } : { method: 'POST', url: resource.resourceType };
    out.push({ fullUrl: entry.fullUrl, resource, request });
  }
  return out;
}

/**
 * Bulk import of Bundles (transaction, batch, collection) and NDJSON (one resource per line,
 * ids kept: PUT semantics) through the same write path as the REST API — validation, index
 * rows, versions, history — with many resources per database transaction and per write
 * statement. Each commit also records the input's progress in `import_progress`, in the same
 * transaction: an interrupted import re-run with the same scope skips what was committed and
 * writes nothing twice.
 */
export class Importer {
  constructor(private readonly deps: ImportDeps) {}

  async run(sources: readonly ImportSource[], options: ImportOptions): Promise<ImportSummary> {
    const started = performance.now();
    const summary: ImportSummary = { inputs: [], resources: 0, errorCount: 0, issues: [], seconds: 0 };
    const reports = new Array<InputReport>(sources.length);
    // Batch and collection Bundles first (reference data: the organisations and practitioners
    // that transactions point to with conditional references), then everything else; inputs
    // of one phase run `concurrency` at a time.
    const hints = await Promise.all(sources.map((s) => bundleTypeHint(s).catch(() => undefined)));
    const first = sources.map((_, i) => i).filter((i) => hints[i] === 'batch' || hints[i] === 'collection');
    const rest = sources.map((_, i) => i).filter((i) => !first.includes(i));
    // When one worker stops (cancelled, database gone), the others stop at their next commit;
    // run() returns only once all of them have.
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const inner: ImportOptions = { ...options, signal };
    for (const phase of [first, rest]) {
      let next = 0;
      const worker = async () => {
        for (;;) {
          const i = phase[next++];
          if (i === undefined) return;
          signal.throwIfAborted();
          reports[i] = await this.importInput(sources[i], inner, summary);
        }
      };
      const workers = Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 1, phase.length)) }, () =>
        worker().catch((e: unknown) => {
          stop.abort(e);
          throw e;
        }),
      );
      const settled = await Promise.allSettled(workers);
      const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw options.signal?.aborted ? options.signal.reason : failure.reason;
    }
    summary.inputs = reports;
    summary.seconds = (performance.now() - started) / 1000;
    return summary;
  }

  private issue(summary: ImportSummary, options: ImportOptions, issue: ImportIssue): void {
    summary.errorCount++;
    if (summary.issues.length < (options.maxIssues ?? 100)) summary.issues.push(issue);
  }

  private async importInput(source: ImportSource, options: ImportOptions, summary: ImportSummary): Promise<InputReport> {
    const report: InputReport = { name: source.name, status: 'imported', resources: 0, errors: 0 };
    const fail = (e: unknown, line?: number) => {
      report.errors++;
      this.issue(summary, options, { input: source.name, line, message: message(e, line) });
    };
    try {
      const format = formatOf(source);
      const id = await fingerprint(source);
      if (options.force) await this.deps.state.reset(options.scope, id);
      const progress = await this.deps.state.get(options.scope, id);
      if (progress?.done) {
        report.status = 'skipped';
        await options.onProgress?.({ input: source.name, resources: 0, bytes: await sizeOf(source) });
        return report;
      }
      const counted = (n: number) => {
        report.resources += n;
        summary.resources += n;
      };
      if (format === 'bundle') await this.importBundle(source, id, options, counted, fail);
      else await this.importNdjson(source, id, progress, options, counted, fail);
    } catch (e) {
      // A bad input fails alone; anything else (the database went away, the job was
      // cancelled) stops the import, which a re-run resumes from the last commit.
      if (!isInputError(e)) throw e;
      fail(e);
      report.status = 'failed';
    }
    return report;
  }

  /** One Bundle = one database transaction (one flush), recorded as done in the same transaction. */
  private async importBundle(source: ImportSource, id: string, options: ImportOptions, counted: (n: number) => void, fail: (e: unknown) => void): Promise<void> {
    const { interactions: deps, state } = this.deps;
    const size = await sizeOf(source);
    const bundle = JSON.parse(await readText(source)) as Bundle;
    if (typeof bundle !== 'object' || bundle === null || bundle.resourceType !== 'Bundle') throw new FhirError('incorrect', 'the file does not hold a Bundle');
    if (bundle.type !== 'transaction' && bundle.type !== 'batch' && bundle.type !== 'collection') {
      throw new FhirError('incorrect', `Bundle.type ${String(bundle.type)} cannot be imported (transaction, batch or collection)`);
    }
    const entries = bundle.type === 'collection' ? collectionAsTransaction(bundle) : (bundle.entry ?? []);
    const done = (tx: StoreTransaction, resources: number, errors: number) =>
      tx.executor().then((db) => state.record(db, options.scope, id, source.name, { done: true, lines: 0, resources, errors }));
    try {
      const parsed = parseTransaction(deps, entries);
      const written = await deps.store.transaction(async (tx) => {
        await transactionIn(deps, tx, parsed);
        const n = tx.changes.length;
        await done(tx, n, 0);
        return n;
      });
      counted(written);
    } catch (e) {
      if (bundle.type !== 'batch' || !(e instanceof FhirError)) throw e;
      // A batch's entries are independent: one that fails does not stop the others.
      const result = await processBundle(deps, bundle, 'minimal');
      const answers = (result.body as Bundle).entry ?? [];
      let written = 0;
      let errors = 0;
      answers.forEach((answer, index) => {
        const status = answer.response?.status ?? '';
        if (status.startsWith('201') || (status.startsWith('200') && entries[index]?.request?.method !== 'POST')) written++;
        else if (!status.startsWith('2')) {
          errors++;
          fail(new FhirError('incorrect', `Bundle.entry[${index}]: ${(answer.response?.outcome as OperationOutcome | undefined)?.issue?.[0]?.diagnostics ?? status}`));
        }
      });
      await deps.store.transaction((tx) => done(tx, written, errors));
      counted(written);
    }
    await options.onProgress?.({ input: source.name, resources: 0, bytes: size });
  }

  /** NDJSON in chunks: each chunk one database transaction holding its progress row. */
  private async importNdjson(
    source: ImportSource,
    id: string,
    start: ImportProgress | undefined,
    options: ImportOptions,
    counted: (n: number) => void,
    fail: (e: unknown, line?: number) => void,
  ): Promise<void> {
    const { interactions: deps } = this.deps;
    const isType = (t: string) => deps.validator.isResourceType(t);
    const totals: ImportProgress = start ? { ...start } : { done: false, lines: 0, resources: 0, errors: 0 };
    const chunkSize = Math.max(1, options.chunkSize ?? DEFAULT_CHUNK);
    let chunk: Array<{ line: number; entry: ParsedEntry }> = [];
    let chars = 0;
    let bytes = 0;
    let consumed = totals.lines;
    let chunkErrors = 0;
    const flush = async (done: boolean) => {
      options.signal?.throwIfAborted();
      const written = await this.writeChunk(id, source.name, chunk, totals, { ...totals, done, lines: consumed, errors: totals.errors + chunkErrors }, options, fail);
      totals.resources += written.resources;
      totals.errors += chunkErrors + written.errors;
      totals.lines = consumed;
      counted(written.resources);
      chunk = [];
      chars = 0;
      chunkErrors = 0;
      const delta = bytes;
      bytes = 0;
      await options.onProgress?.({ input: source.name, resources: written.resources, bytes: delta });
    };
    for await (const { lineNo, text } of ndjsonLines(source, totals.lines, (n) => (bytes += n))) {
      consumed = lineNo + 1;
      if (text.trim() === '') continue;
      try {
        const resource = JSON.parse(text) as Resource;
        if (typeof resource !== 'object' || resource === null || Array.isArray(resource) || typeof resource.resourceType !== 'string') {
          throw new FhirError('incorrect', 'the line is not a FHIR resource');
        }
        if (typeof resource.id !== 'string') throw new FhirError('incorrect', 'the resource has no id (NDJSON import keeps ids: PUT semantics)');
        const entry = parseEntry(deps, { resource: resource as FhirResource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } }, chunk.length, isType);
        chunk.push({ line: lineNo + 1, entry });
        chars += text.length;
      } catch (e) {
        chunkErrors++;
        fail(e, lineNo + 1);
      }
      if (chunk.length >= chunkSize || chars >= CHUNK_CHARS) await flush(false);
    }
    await flush(true);
  }

  /**
   * Writes one chunk as a transaction of PUTs with its progress row `after`. A resource that
   * fails (validation, a bad reference) is reported with its line and left out, and the rest
   * is written again without it; a failure that names no entry (a value the database refuses)
   * is narrowed down by halving the chunk. `before` is the progress to record when only the
   * first half is committed.
   */
  private async writeChunk(
    id: string,
    name: string,
    chunk: Array<{ line: number; entry: ParsedEntry }>,
    before: ImportProgress,
    after: ImportProgress,
    options: ImportOptions,
    fail: (e: unknown, line?: number) => void,
  ): Promise<{ resources: number; errors: number }> {
    const { interactions: deps, state } = this.deps;
    let items = chunk;
    let errors = 0;
    for (;;) {
      const parsed = items.map((item, index) => ({ ...item.entry, index }));
      try {
        const resources = await deps.store.transaction(async (tx) => {
          if (parsed.length > 0) await transactionIn(deps, tx, parsed);
          const n = tx.changes.length;
          const record = { ...after, resources: after.resources + n, errors: after.errors + errors };
          await state.record(await tx.executor(), options.scope, id, name, record);
          return n;
        });
        return { resources, errors };
      } catch (e) {
        if (e instanceof BundleEntryError && items[e.index]) {
          fail(e, items[e.index].line);
          errors++;
          items = items.filter((_, i) => i !== e.index);
          continue;
        }
        if (!(e instanceof FhirError)) throw e;
        if (items.length === 1) {
          fail(e, items[0].line);
          errors++;
          items = [];
          continue;
        }
        const half = items.length >> 1;
        const first = await this.writeChunk(id, name, items.slice(0, half), before, { ...before, resources: before.resources, errors: after.errors + errors }, options, fail);
        const rest = await this.writeChunk(
          id,
          name,
          items.slice(half),
          before,
          { ...after, resources: after.resources + first.resources, errors: after.errors + errors + first.errors },
          options,
          fail,
        );
        return { resources: first.resources + rest.resources, errors: errors + first.errors + rest.errors };
      }
    }
  }
}

/** Failures of one input (bad content, unreadable file) rather than of the import as a whole. */
function isInputError(e: unknown): boolean {
  if (e instanceof FhirError || e instanceof SyntaxError) return true;
  const code = typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : '';
  // Node file-system errors (ENOENT, EISDIR, EACCES) and zlib errors (a corrupt .gz).
  return /^E[A-Z]+$/.test(code) || code.startsWith('Z_');
}
