import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  CANCEL_SLOTS,
  EmbeddedDatabaseError,
  markCancelled,
  type PgliteWorkerData,
  type WorkerReply,
  type WorkerRequest,
} from './pglite-protocol.js';

export interface StatementResult {
  rows: unknown[];
  affectedRows?: number;
}

interface Pending {
  resolve: (result: StatementResult) => void;
  reject: (error: Error) => void;
  timer?: NodeJS.Timeout;
  /** The server thread stopped waiting for it (time limit); the worker may still be running it. */
  abandoned: boolean;
}

const MAX_ID = 0x7fffffff;

/**
 * The worker next to this file: compiled JavaScript in dist/, or — under tsx / vitest — the
 * TypeScript source, loaded by a two-line bootstrap that registers tsx's loader in the worker first.
 */
function workerEntry(): { entry: URL | string; eval: boolean } {
  const js = new URL('./pglite-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return { entry: js, eval: false };
  // tsx's ESM entry (the "import" condition of tsx/esm/api), found from its package.json.
  const tsxPackage = createRequire(import.meta.url).resolve('tsx/package.json');
  const tsxApi = pathToFileURL(join(dirname(tsxPackage), 'dist', 'esm', 'api', 'index.mjs')).href;
  const source = new URL('./pglite-worker.ts', import.meta.url).href;
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); })`;
  return { entry: bootstrap, eval: true };
}

/**
 * The embedded database running on its own worker thread (pglite-worker.ts). Statements are
 * posted in order and answered in order. A statement with a time limit that passes is given
 * up: its promise rejects with SQLSTATE 57014 (query_canceled, as PostgreSQL's
 * statement_timeout) while the worker finishes or skips it, and the server thread stays free.
 */
export class PgliteThread {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly marks: Int32Array,
    private readonly memory: boolean,
  ) {
    worker.on('message', (reply: WorkerReply) => this.receive(reply));
    worker.on('error', (e: Error) => this.fail(new Error(`embedded database thread failed: ${e.message}`, { cause: e })));
    worker.on('exit', (code) => this.fail(new Error(`embedded database thread exited (code ${code})`)));
  }

  static async start(dataDir: string, template?: string): Promise<PgliteThread> {
    const cancelMarks = new SharedArrayBuffer(CANCEL_SLOTS * Int32Array.BYTES_PER_ELEMENT);
    const { entry, eval: isCode } = workerEntry();
    const data: PgliteWorkerData = { dataDir, template, cancelMarks };
    const worker = new Worker(entry, { workerData: data, eval: isCode });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (reply: WorkerReply) => {
        if (reply.type === 'ready') done(() => resolve());
        else if (reply.type === 'startup-failed') done(() => reject(new EmbeddedDatabaseError(reply.error)));
      };
      const onError = (e: Error) => done(() => reject(e));
      const onExit = (code: number) => done(() => reject(new Error(`embedded database thread exited during start-up (code ${code})`)));
      const done = (settle: () => void) => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        settle();
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    }).catch(async (e: unknown) => {
      await worker.terminate();
      throw e;
    });
    return new PgliteThread(worker, new Int32Array(cancelMarks), dataDir === 'memory');
  }

  /**
   * Runs one statement. `limitMs` > 0: after that long the promise rejects with 57014 (or
   * 55P03 when the statement never started because an earlier one given up still runs).
   */
  query(sql: string, params: readonly unknown[], limitMs: number): Promise<StatementResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new Error('the embedded database is closed'));
    const id = this.nextId;
    this.nextId = id >= MAX_ID ? 1 : id + 1;
    return new Promise<StatementResult>((resolve, reject) => {
      const entry: Pending = { resolve, reject, abandoned: false };
      if (limitMs > 0) entry.timer = setTimeout(() => this.giveUp(id, entry, limitMs), limitMs);
      this.pending.set(id, entry);
      const request: WorkerRequest = { type: 'query', id, sql, params: [...params] };
      this.worker.postMessage(request);
    });
  }

  /** Statements given up on that the worker has not finished yet. */
  get busyWithAbandoned(): boolean {
    for (const entry of this.pending.values()) if (entry.abandoned) return true;
    return false;
  }

  private giveUp(id: number, entry: Pending, limitMs: number): void {
    markCancelled(this.marks, id);
    entry.abandoned = true;
    // The worker answers in order: an earlier entry still pending is what this one waits for.
    const waiting = [...this.pending.keys()].some((other) => other !== id && this.pending.get(other)?.abandoned && precedes(other, id));
    entry.reject(
      waiting
        ? new EmbeddedDatabaseError({ code: '55P03', message: `statement did not start within ${limitMs} ms: the database is busy with an earlier statement` })
        : new EmbeddedDatabaseError({ code: '57014', message: `canceling statement due to statement timeout (${limitMs} ms)` }),
    );
  }

  private receive(reply: WorkerReply): void {
    if (reply.type !== 'result' && reply.type !== 'error' && reply.type !== 'closed') return;
    const entry = this.pending.get(reply.id);
    if (!entry) return;
    this.pending.delete(reply.id);
    if (entry.timer) clearTimeout(entry.timer);
    if (entry.abandoned) return;
    if (reply.type === 'error') entry.reject(new EmbeddedDatabaseError(reply.error));
    else if (reply.type === 'result') entry.resolve({ rows: reply.rows, affectedRows: reply.affectedRows });
    else entry.resolve({ rows: [] });
  }

  private fail(error: Error): void {
    if (this.closing && this.pending.size === 0) return;
    this.failure ??= error;
    for (const [id, entry] of this.pending) {
      this.pending.delete(id);
      if (entry.timer) clearTimeout(entry.timer);
      if (!entry.abandoned) entry.reject(error);
    }
  }

  /**
   * Closes the database after the statements already posted. A memory database still busy
   * with a statement given up is simply stopped: nothing on disk can be left half-written.
   * `dumpTo`: the database is first written to that file (see writeMemoryTemplate).
   */
  close(dumpTo?: string): Promise<void> {
    this.closing ??= (async () => {
      if (this.failure) return;
      if (this.memory && this.busyWithAbandoned) {
        await this.worker.terminate();
        return;
      }
      const id = this.nextId;
      this.nextId = id >= MAX_ID ? 1 : id + 1;
      const closed = new Promise<void>((resolve, reject) => {
        this.pending.set(id, { resolve: () => resolve(), reject, abandoned: false });
      });
      const request: WorkerRequest = { type: 'close', id, dumpTo };
      this.worker.postMessage(request);
      await closed;
      // The database is closed and flushed; stopping the thread now cannot lose anything.
      await this.worker.terminate();
    })();
    return this.closing;
  }
}

/** Statement ids grow and wrap at MAX_ID; of two pending ids the smaller one (modulo wrap) came first. */
function precedes(a: number, b: number): boolean {
  const distance = (b - a + MAX_ID) % MAX_ID;
  return distance > 0 && distance < MAX_ID / 2;
}
