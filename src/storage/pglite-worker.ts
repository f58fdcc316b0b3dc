/**
 * Worker thread entry that owns the embedded database (PGlite). PGlite runs PostgreSQL as
 * synchronous WebAssembly: on the server thread one slow statement would freeze every
 * request, health checks included. Here it only blocks this thread; the server thread keeps
 * answering and enforces the statement time limit (see pglite-thread.ts).
 *
 * Statements run strictly in arrival order, one at a time (PGlite is one connection).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { isCancelled, toWorkerError, type PgliteWorkerData, type WorkerReply, type WorkerRequest } from './pglite-protocol.js';

const port = parentPort;
if (!port) throw new Error('pglite-worker.ts runs only as a worker thread');
const { dataDir, template, cancelMarks } = workerData as PgliteWorkerData;
const marks = new Int32Array(cancelMarks);

const ENDS_TRANSACTION = /^\s*(COMMIT|END|ROLLBACK|ABORT)\b(?!\s+TO\b)/i;
const ROLLBACK_TO_SAVEPOINT = /^\s*ROLLBACK\s+TO\b/i;

/**
 * Set when a statement of the open transaction was given up: its effect is unknown to the
 * caller, so the transaction must not commit. Like PostgreSQL after a cancelled statement,
 * everything but ROLLBACK [TO SAVEPOINT] fails until the transaction ends, and COMMIT rolls back.
 */
let transactionFailed = false;

function post(reply: WorkerReply): void {
  port!.postMessage(reply);
}

// pg_trgm: fuzzy patient name search (migration 0020, src/search/fuzzy-name.ts).
const extensions = { pg_trgm };

async function open(): Promise<PGlite> {
  // A template skips initdb (seconds of wasm work per database: tests open hundreds).
  if (dataDir === 'memory') return PGlite.create({ extensions, ...(template ? { loadDataDir: new Blob([readFileSync(template)]) } : {}) });
  mkdirSync(dataDir, { recursive: true });
  return PGlite.create(dataDir, { extensions });
}

async function runQuery(db: PGlite, id: number, text: string, params: unknown[]): Promise<void> {
  if (isCancelled(marks, id)) {
    // Given up while waiting behind an earlier statement: never run it.
    if (db.isInTransaction()) transactionFailed = true;
    post({ type: 'error', id, error: { message: 'canceling statement due to statement timeout', code: '57014' } });
    return;
  }
  if (transactionFailed) {
    if (ENDS_TRANSACTION.test(text)) {
      transactionFailed = false;
      await db.query('ROLLBACK');
      post({ type: 'result', id, rows: [] });
      return;
    }
    if (!ROLLBACK_TO_SAVEPOINT.test(text)) {
      post({
        type: 'error',
        id,
        error: { message: 'current transaction is aborted, commands ignored until end of transaction block', code: '25P02' },
      });
      return;
    }
    transactionFailed = false;
  }
  try {
    const result = await db.query(text, params);
    post({ type: 'result', id, rows: result.rows, affectedRows: result.affectedRows });
  } catch (e) {
    post({ type: 'error', id, error: toWorkerError(e) });
  } finally {
    if (isCancelled(marks, id) && db.isInTransaction()) transactionFailed = true;
  }
}

async function main(): Promise<void> {
  let db: PGlite;
  try {
    db = await open();
  } catch (e) {
    post({ type: 'startup-failed', error: toWorkerError(e) });
    return;
  }
  let chain = Promise.resolve();
  port!.on('message', (request: WorkerRequest) => {
    chain = chain.then(async () => {
      if (request.type === 'query') {
        await runQuery(db, request.id, request.sql, request.params);
      } else {
        if (request.dumpTo) writeFileSync(request.dumpTo, Buffer.from(await (await db.dumpDataDir('none')).arrayBuffer()));
        await db.close();
        post({ type: 'closed', id: request.id });
        port!.close();
      }
    });
  });
  post({ type: 'ready' });
}

void main();
