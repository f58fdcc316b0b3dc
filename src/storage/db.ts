import {
  CompiledQuery,
  Kysely,
  PostgresAdapter,
  PostgresDialect,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type QueryResult,
} from 'kysely';
import pg from 'pg';
import { lostPreparedStatement, pgErrorCode, UNDEFINED_PREPARED_STATEMENT } from './pg-errors.js';
import { lockDataDir } from './data-dir-lock.js';
import { PgliteThread } from './pglite-thread.js';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;

/**
 * Appended to a statement whose text never changes (values only as parameters), it asks for a
 * named prepared statement on PostgreSQL: each pool connection parses and plans it once and
 * then only binds and executes it. For a one-row lookup by key, parsing and planning are most
 * of the database's work: the current-version read on `resource` (four indexes for the planner
 * to weigh) took 130–150 µs of backend CPU sent unnamed and 50–60 µs prepared (EXPLAIN: planning
 * 0.08–0.25 ms, execution 0.01–0.06 ms). A comment, so the embedded database (and any statement
 * log) sees the same SQL. Behind a pooler in transaction mode see PreparingClient.
 */
export const PREPARED = ' /* prepared */';

/**
 * Appended to a statement whose text is fixed for `name` (the write statements of one index
 * layout and shape, src/storage/prepared-write.ts): on PostgreSQL each connection parses and
 * plans it once under that name (protocol-level Parse, then Bind / Execute only), with no bound
 * on the number of names as PREPARED has; the embedded database runs it as SQL-level
 * PREPARE / EXECUTE (PgliteConnection). `name` must be a plain identifier.
 */
export function preparedAs(name: string): string {
  return ` /* prepared as ${name} */`;
}
const PREPARED_AS = / \/\* prepared as ([a-z0-9_]+) \*\/$/;

export interface DatabaseOptions {
  /** postgres://… for a real server; undefined for the embedded PGlite. */
  databaseUrl?: string;
  /** Directory for PGlite, or 'memory'. */
  dataDir: string;
  /** Schema to use on a real server (created if missing); tests use one schema per app. */
  schema?: string;
  poolSize?: number;
  /** PostgreSQL: how long a caller waits for a free pool connection before an error (ms). */
  poolTimeoutMs?: number;
  /**
   * Time limit of one statement in ms (0 = none). PostgreSQL enforces it as statement_timeout;
   * on the embedded database the server thread gives the statement up (see PgliteConnection).
   */
  statementTimeoutMs?: number;
  /**
   * Embedded database in memory only: start as a copy of this template (writeMemoryTemplate)
   * instead of from initdb, which costs seconds of wasm work. The test suite opens hundreds.
   */
  memoryTemplate?: string;
}

export interface DatabaseHandle {
  /** For requests: every statement has the configured time limit. */
  db: Db;
  /**
   * The same database without a statement time limit, for work that is long by nature:
   * migrations and maintenance (VACUUM, ANALYZE). On PostgreSQL a small pool of its own; on
   * the embedded database the same single connection, taken between requests.
   */
  unlimitedDb: Db;
  kind: 'pglite' | 'postgres';
  statementTimeoutMs: number;
  /** Connections of the request pool (PostgreSQL), for /metrics. */
  poolStats?: () => { total: number; idle: number; waiting: number };
  close(): Promise<void>;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * A read-only pool on a streaming replica of the PostgreSQL database (DATABASE_REPLICA_URL), for
 * reports: same schema and statement time limit, sessions named `fhir-server-replica[:schema]`.
 * Writes through it fail (the replica refuses them), so only read paths take it.
 */
export function openReplica(url: string, schema: string | undefined, poolSize: number, statementTimeoutMs: number): { db: Db; close(): Promise<void> } {
  const options = [schema ? `-c search_path=${schema}` : '', statementTimeoutMs > 0 ? `-c statement_timeout=${statementTimeoutMs}` : '', '-c default_transaction_read_only=on'].filter(Boolean).join(' ');
  const pool = new pg.Pool({ connectionString: url, application_name: schema ? `fhir-server-replica:${schema}` : 'fhir-server-replica', max: poolSize, connectionTimeoutMillis: 10_000, options });
  pool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, close: () => db.destroy() };
}

/** Opens the configured database: PGlite (embedded) by default, PostgreSQL when a URL is given. */
export async function openDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new Error(`invalid schema name "${options.schema}"`);
  }
  const timeout = options.statementTimeoutMs ?? 0;
  if (!Number.isInteger(timeout) || timeout < 0) throw new Error(`invalid statement time limit ${timeout}`);
  if (options.databaseUrl) return openPostgres(options.databaseUrl, options.schema, options.poolSize ?? 10, timeout, options.poolTimeoutMs ?? 10_000);
  return openPglite(options.dataDir, timeout, options.dataDir === 'memory' ? options.memoryTemplate : undefined);
}

/**
 * Writes an embedded in-memory database, prepared by `prepare` (migrations, say), to `file`:
 * a template for `memoryTemplate`.
 */
export async function writeMemoryTemplate(file: string, prepare: (db: Db) => Promise<void>): Promise<void> {
  const thread = await PgliteThread.start('memory');
  const session = new PgliteSession(thread);
  const db = new Kysely<Database>({ dialect: new PgliteDialect(session, 0) });
  try {
    await prepare(db);
  } finally {
    await db.destroy();
    await session.close(file);
  }
}

async function openPostgres(url: string, schema: string | undefined, poolSize: number, statementTimeoutMs: number, poolTimeoutMs: number): Promise<DatabaseHandle> {
  if (schema) {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    } finally {
      await admin.end();
    }
  }
  // search_path and statement_timeout are set per connection (start-up options), so the same
  // SQL serves every schema and no statement needs a SET of its own.
  const settings = (timeoutMs: number | undefined) =>
    [schema ? `-c search_path=${schema}` : '', timeoutMs !== undefined ? `-c statement_timeout=${timeoutMs}` : ''].filter(Boolean).join(' ') || undefined;
  // A request waits at most poolTimeoutMs for a connection, then fails (503 + Retry-After,
  // see pg-errors.ts) instead of hanging while every connection is busy.
  // Operators see the server's sessions in pg_stat_activity by name (and can end them).
  const application_name = schema ? `fhir-server:${schema}` : 'fhir-server';
  const pool = new pg.Pool({ connectionString: url, application_name, max: poolSize, connectionTimeoutMillis: poolTimeoutMs, options: settings(statementTimeoutMs > 0 ? statementTimeoutMs : undefined), Client: PreparingClient });
  const unlimitedPool = new pg.Pool({ connectionString: url, application_name, max: 2, options: settings(0) });
  // An idle client that loses its server connection must not crash the process.
  pool.on('error', () => undefined);
  unlimitedPool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const unlimitedDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: unlimitedPool }) });
  return {
    db,
    unlimitedDb,
    kind: 'postgres',
    statementTimeoutMs,
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async close() {
      await unlimitedDb.destroy();
      await db.destroy();
    },
  };
}

/** Statement names by text: a few fixed texts (see PREPARED), bounded in case a caller errs. */
const preparedNames = new Map<string, string>();
const MAX_PREPARED_STATEMENTS = 64;

function preparedName(text: string): string | undefined {
  let name = preparedNames.get(text);
  if (name === undefined && preparedNames.size < MAX_PREPARED_STATEMENTS) {
    name = `fhir_q${preparedNames.size}`;
    preparedNames.set(text, name);
  }
  return name;
}

type QueryFn = (text: unknown, values?: unknown) => Promise<pg.QueryResult>;

/**
 * A pg client that sends statements marked PREPARED or `preparedAs(name)` under a name (pg
 * parses a name once per connection). A server session that does not keep them (PgBouncer in
 * transaction mode) answers 26000 (or 42P05, a name another client prepared in it): that client
 * then sends every statement unnamed. The one that failed is sent again when no transaction
 * block is open; inside one the error goes to the caller, whose transaction is run again
 * (isRetryable in pg-errors.ts).
 */
class PreparingClient extends pg.Client {
  private named = true;

  constructor(config?: string | pg.ClientConfig) {
    super(config);
    // A session ended by the server (restart, failover, pg_terminate_backend) while the client is
    // checked out but idle emits 'error'; unheard, that would end the process. The next query on
    // the client fails instead, and the pool drops it.
    this.on('error', () => undefined);
    const plain = this.query.bind(this) as QueryFn;
    const query: QueryFn = (text, values) => {
      if (!this.named || typeof text !== 'string' || !text.endsWith(' */') || !Array.isArray(values)) return plain(text, values);
      const name = text.endsWith(PREPARED) ? preparedName(text) : PREPARED_AS.exec(text)?.[1];
      if (name === undefined) return plain(text, values);
      return plain({ name, text, values }).catch((e: unknown) => {
        if (!lostPreparedStatement(e)) throw e;
        this.named = false;
        // Inside a transaction block the failure aborted the transaction: the caller runs it again
        // (isRetryable), unnamed from now on. Outside one nothing was done: send it again at once.
        if (this.getTransactionStatus() !== 'I') throw e;
        return plain(text, values);
      });
    };
    (this as unknown as { query: QueryFn }).query = query;
  }
}

async function openPglite(dataDir: string, statementTimeoutMs: number, template?: string): Promise<DatabaseHandle> {
  // A directory is one process's at a time (data-dir-lock.ts); memory is the process's own.
  const unlock = dataDir === 'memory' ? async () => undefined : await lockDataDir(dataDir);
  let session: PgliteSession;
  try {
    session = new PgliteSession(await PgliteThread.start(dataDir, template));
  } catch (e) {
    await unlock();
    throw e;
  }
  const db = new Kysely<Database>({ dialect: new PgliteDialect(session, statementTimeoutMs) });
  const unlimitedDb = new Kysely<Database>({ dialect: new PgliteDialect(session, 0) });
  return {
    db,
    unlimitedDb,
    kind: 'pglite',
    statementTimeoutMs,
    async close() {
      try {
        await unlimitedDb.destroy();
        await db.destroy();
        await session.close();
      } finally {
        await unlock();
      }
    },
  };
}

/**
 * The one connection of the embedded database, handed out to one user at a time (a
 * transaction holds it from BEGIN to COMMIT). Both Kysely handles (with and without the
 * statement limit) queue here, so maintenance runs between requests, never inside one.
 */
class PgliteSession {
  private queue: Promise<void> = Promise.resolve();

  constructor(readonly thread: PgliteThread) {}

  async acquire(): Promise<() => void> {
    const previous = this.queue;
    let release!: () => void;
    this.queue = new Promise<void>((resolve) => (release = resolve));
    await previous;
    return release;
  }

  async close(dumpTo?: string): Promise<void> {
    await this.queue;
    await this.thread.close(dumpTo);
  }
}

/** Kysely dialect for the embedded database (PGlite on its worker thread). */
class PgliteDialect implements Dialect {
  constructor(
    private readonly session: PgliteSession,
    private readonly statementTimeoutMs: number,
  ) {}
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PgliteDriver(this.session, this.statementTimeoutMs);
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
}

class PgliteDriver implements Driver {
  private readonly connection: PgliteConnection;
  private release: (() => void) | undefined;

  constructor(
    private readonly session: PgliteSession,
    statementTimeoutMs: number,
  ) {
    this.connection = new PgliteConnection(session.thread, statementTimeoutMs);
  }
  async init(): Promise<void> {}
  async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.session.acquire();
    this.release = release;
    return this.connection;
  }
  async beginTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('BEGIN'));
  }
  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('COMMIT'));
  }
  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }
  async releaseConnection(): Promise<void> {
    const release = this.release;
    this.release = undefined;
    release?.();
  }
  async destroy(): Promise<void> {
    // The session (and the thread) is shared by both handles; DatabaseHandle.close ends it.
  }
}

/**
 * An escape string constant (E'…'): backslashes and quotes doubled, so the value is the same
 * whatever standard_conforming_strings says. NUL cannot occur (bodies with one are refused and
 * JSON.stringify writes control characters as escapes).
 */
function escapeLiteral(value: string): string {
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

function isMissingStatement(e: unknown): boolean {
  // (the message too: an error passed on from the worker thread may arrive without its code)
  return pgErrorCode(e) === UNDEFINED_PREPARED_STATEMENT || (e instanceof Error && /prepared statement .* does not exist/.test(e.message));
}

const BEGINS_TRANSACTION = /^\s*(BEGIN|START\s+TRANSACTION)\b/i;
const ENDS_TRANSACTION = /^\s*(COMMIT|END|ROLLBACK|ABORT)\b(?!\s+TO\b)/i;
/** Statements that are bookkeeping, never slow: no limit (a COMMIT given up would leave the caller unsure). */
const CONTROL = /^\s*(COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|SET|RESET|SHOW)\b/i;
const READ_ONLY = /^\s*(SELECT|WITH|VALUES|TABLE|EXPLAIN)\b/i;
const WRITES = /\b(INSERT|UPDATE|DELETE|MERGE|CREATE|DROP|ALTER|TRUNCATE|COPY|VACUUM|ANALYZE)\b/i;
const SET_TIMEOUT = /^\s*SET\s+(SESSION\s+|LOCAL\s+)?statement_timeout\s*(?:=|TO)\s*(?:'?\s*(\d+)\s*(ms|s|min)?\s*'?|(DEFAULT))\s*;?\s*$/i;
const RESET_TIMEOUT = /^\s*RESET\s+statement_timeout\s*;?\s*$/i;

/**
 * The statement time limit on the embedded database, where PostgreSQL's own statement_timeout
 * does nothing (the wasm build has no timer signal). It follows the same settings —
 * `SET [LOCAL] statement_timeout`, `RESET statement_timeout` — so callers treat both databases alike.
 *
 * Which statements are limited: everything inside a transaction (a statement given up there
 * makes the worker fail the transaction, so its effects are rolled back as on PostgreSQL) and
 * read-only statements outside one. A lone write statement is not limited: it cannot be
 * stopped, and answering "timed out" for a write that then commits would mislead the client.
 */
class PgliteConnection implements DatabaseConnection {
  private inTransaction = false;
  private sessionLimitMs: number;
  private localLimitMs: number | undefined;

  constructor(
    private readonly thread: PgliteThread,
    private readonly defaultLimitMs: number,
  ) {
    this.sessionLimitMs = defaultLimitMs;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const name = PREPARED_AS.exec(compiled.sql)?.[1];
    if (name !== undefined && !this.inTransaction) return this.executePrepared<R>(name, compiled);
    return this.run<R>(compiled.sql, compiled.parameters);
  }

  /**
   * A `preparedAs` statement outside a transaction block, as SQL-level PREPARE / EXECUTE: the
   * embedded database then parses and plans the ~20-CTE write statement once, not per write
   * (about a quarter less database work per single-resource create). EXECUTE takes no bind
   * parameters, so the values go as escaped constants, which PostgreSQL reads as it reads bound
   * text. The session has not prepared the name yet: 26000, and nothing was done (a failed
   * autocommit statement), so it is prepared and executed again. Inside a transaction block a
   * failed EXECUTE would abort the transaction: there the statement is sent as it is.
   */
  private async executePrepared<R>(name: string, compiled: CompiledQuery): Promise<QueryResult<R>> {
    const execute = `EXECUTE ${name}(${compiled.parameters.map((v) => escapeLiteral(String(v))).join(', ')})`;
    try {
      return await this.run<R>(execute, []);
    } catch (e) {
      if (!isMissingStatement(e)) throw e;
    }
    await this.run(`PREPARE ${name} AS ${compiled.sql}`, []);
    return this.run<R>(execute, []);
  }

  private async run<R>(text: string, parameters: readonly unknown[]): Promise<QueryResult<R>> {
    const limitMs = this.limitFor(text);
    this.track(text);
    try {
      const result = await this.thread.query(text, parameters, limitMs);
      return {
        rows: result.rows as R[],
        numAffectedRows: result.affectedRows !== undefined ? BigInt(result.affectedRows) : undefined,
      };
    } catch (e) {
      if (BEGINS_TRANSACTION.test(text)) this.inTransaction = false;
      throw e;
    }
  }

  private limitFor(text: string): number {
    if (CONTROL.test(text)) return 0;
    const limit = this.inTransaction && this.localLimitMs !== undefined ? this.localLimitMs : this.sessionLimitMs;
    if (this.inTransaction || BEGINS_TRANSACTION.test(text)) return limit;
    return READ_ONLY.test(text) && !WRITES.test(text) ? limit : 0;
  }

  private track(text: string): void {
    if (BEGINS_TRANSACTION.test(text)) {
      this.inTransaction = true;
    } else if (ENDS_TRANSACTION.test(text)) {
      this.inTransaction = false;
      this.localLimitMs = undefined;
    } else if (RESET_TIMEOUT.test(text)) {
      this.sessionLimitMs = this.defaultLimitMs;
    } else {
      const set = SET_TIMEOUT.exec(text);
      if (!set) return;
      const value = set[4] ? this.defaultLimitMs : Number(set[2]) * (set[3]?.toLowerCase() === 's' ? 1000 : set[3]?.toLowerCase() === 'min' ? 60_000 : 1);
      if (set[1]?.trim().toUpperCase() === 'LOCAL') {
        if (this.inTransaction) this.localLimitMs = value;
      } else {
        this.sessionLimitMs = value;
      }
    }
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming is not supported on the embedded database; page with keyset queries');
  }
}
