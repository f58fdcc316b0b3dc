/**
 * The messages between the server thread and the worker thread that runs the embedded
 * database (src/storage/pglite-worker.ts), and the shared cancel marks.
 *
 * A statement the server thread gave up on (its time limit passed) is marked in a
 * SharedArrayBuffer, which the worker reads without waiting for messages: the wasm database
 * cannot be interrupted, but the worker skips a marked statement that has not started yet, and
 * a marked statement inside a transaction leaves that transaction failed, as PostgreSQL does
 * after a cancelled statement.
 */

export interface PgliteWorkerData {
  /** Directory of the database, or 'memory'. */
  dataDir: string;
  /** 'memory' only: a dump file (PGlite dumpDataDir) the database starts as a copy of, instead of an initdb. */
  template?: string;
  /** CANCEL_SLOTS Int32 slots: slot `id % CANCEL_SLOTS` holds `id` once statement `id` is given up. */
  cancelMarks: SharedArrayBuffer;
}

export const CANCEL_SLOTS = 4096;

export type WorkerRequest =
  | { type: 'query'; id: number; sql: string; params: unknown[] }
  /** `dumpTo`: first write the whole database to this file (a template for memory databases). */
  | { type: 'close'; id: number; dumpTo?: string };

/** The fields of a PostgreSQL error the server acts on (SQLSTATE above all). */
export interface WorkerError {
  message: string;
  code?: string;
  detail?: string;
  hint?: string;
  severity?: string;
  constraint?: string;
  table?: string;
  column?: string;
  position?: string;
}

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'startup-failed'; error: WorkerError }
  | { type: 'result'; id: number; rows: unknown[]; affectedRows?: number }
  | { type: 'error'; id: number; error: WorkerError }
  | { type: 'closed'; id: number };

const ERROR_FIELDS = ['code', 'detail', 'hint', 'severity', 'constraint', 'table', 'column', 'position'] as const;

/** A thrown value as plain data that survives postMessage. */
export function toWorkerError(e: unknown): WorkerError {
  const error: WorkerError = { message: e instanceof Error ? e.message : String(e) };
  if (typeof e === 'object' && e !== null) {
    const fields = e as Record<string, unknown>;
    for (const name of ERROR_FIELDS) {
      const value = fields[name];
      if (typeof value === 'string') error[name] = value;
    }
  }
  return error;
}

/** An Error carrying the PostgreSQL fields, as `pg` and PGlite throw them (pg-errors.ts reads `code`). */
export class EmbeddedDatabaseError extends Error {
  readonly code?: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly severity?: string;
  readonly constraint?: string;
  readonly table?: string;
  readonly column?: string;
  readonly position?: string;

  constructor(error: WorkerError) {
    super(error.message);
    this.name = 'DatabaseError';
    Object.assign(this, error);
  }
}

export function markCancelled(marks: Int32Array, id: number): void {
  Atomics.store(marks, id % CANCEL_SLOTS, id);
}

export function isCancelled(marks: Int32Array, id: number): boolean {
  return Atomics.load(marks, id % CANCEL_SLOTS) === id;
}
