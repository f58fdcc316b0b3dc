/**
 * Logical backup and restore of the server's schema (docs/backup.md), the same on the embedded
 * database and on PostgreSQL, so it is also the path from one to the other.
 *
 * The file is gzip NDJSON: a header line, then per table a `{"@table": …}` line followed by its
 * rows exactly as PostgreSQL's row_to_json wrote them (never parsed here, so bigints, bytea and
 * timestamps reach the target untouched), then one `{"@sequence": …}` line per sequence, then
 * `{"@end": …}`. Rows are read FROM ONLY a table: audit_event inherits resource and
 * resource_history, and each row must be written back to the table that holds it.
 */
import { sql, type Transaction } from 'kysely';
import type { Db } from './db.js';
import type { Database } from './schema.js';

export const BACKUP_FORMAT = 'fhir-server-backup';
export const BACKUP_VERSION = 1;
/** Kysely's migration bookkeeping: the target has its own (the list goes in the header). */
const SKIPPED_TABLES = new Set(['kysely_migration', 'kysely_migration_lock']);
/** Rows per INSERT statement of a restore. */
const PAGE = 1000;
/** Heap blocks (8 kB) per read page of a backup: a few hundred resources, a few thousand index rows. */
const PAGE_BLOCKS = 64;
/** Tables whose rows make a database "not empty" for restore (migrations seed rows elsewhere). */
const DATA_TABLES = ['resource', 'resource_history', 'audit_event', 'oauth_client', 'app_user', 'job'];

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: number;
  createdAt: string;
  source: { kind: 'pglite' | 'postgres'; serverVersion: string };
  migrations: string[];
  tables: { name: string; rows: number }[];
}

export interface BackupProgress {
  table: string;
  /** Rows done in all tables so far, of `total`. */
  rows: number;
  total: number;
}

export interface BackupSummary {
  tables: number;
  rows: number;
  sequences: number;
}

type Tx = Transaction<Database>;

/**
 * Partitioned tables of the current schema (search_text, migration 0038): they hold no rows of
 * their own, their partitions do. A backup dumps the partitions; a restore of a backup made
 * before the table was partitioned writes its rows through the parent, which routes them.
 */
async function partitionedTables(db: Db | Tx): Promise<Set<string>> {
  const result = await sql<{ name: string }>`
    SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind = 'p'`.execute(db);
  return new Set(result.rows.map((r) => r.name));
}

/** Tables of the current schema (partitioned ones and their partitions too) in an order where every referenced table comes first. */
async function tablesInDependencyOrder(db: Db | Tx): Promise<string[]> {
  const tables = await sql<{ name: string }>`
    SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname`.execute(db);
  const references = await sql<{ child: string; parent: string }>`
    SELECT ch.relname AS child, pa.relname AS parent FROM pg_constraint k
    JOIN pg_class ch ON ch.oid = k.conrelid JOIN pg_class pa ON pa.oid = k.confrelid
    WHERE k.contype = 'f' AND k.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())`.execute(db);
  const names = tables.rows.map((t) => t.name).filter((n) => !SKIPPED_TABLES.has(n));
  const parents = new Map<string, Set<string>>(names.map((n) => [n, new Set<string>()]));
  for (const r of references.rows) if (r.child !== r.parent) parents.get(r.child)?.add(r.parent);
  const ordered: string[] = [];
  const placed = new Set<string>();
  const visit = (name: string, path: Set<string>): void => {
    if (placed.has(name) || path.has(name)) return;
    path.add(name);
    for (const parent of parents.get(name) ?? []) visit(parent, path);
    placed.add(name);
    ordered.push(name);
  };
  for (const name of names) visit(name, new Set());
  return ordered;
}

/** Columns a row can be written to (generated columns are computed by the target). */
async function writableColumns(db: Db | Tx, table: string): Promise<string[]> {
  const result = await sql<{ name: string }>`
    SELECT column_name AS name FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = ${table} AND is_generated <> 'ALWAYS'
    ORDER BY ordinal_position`.execute(db);
  return result.rows.map((r) => r.name);
}

async function appliedMigrations(db: Db | Tx): Promise<string[]> {
  const result = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db);
  return result.rows.map((r) => r.name);
}

/**
 * The backup as lines, read in one REPEATABLE READ transaction: a consistent snapshot even while
 * the server writes (on PostgreSQL; the embedded database has one connection, so the server's
 * writes wait for the dump).
 */
export function backupLines(db: Db, kind: 'pglite' | 'postgres', onProgress?: (p: BackupProgress) => void): AsyncGenerator<string> {
  return dumpInTransaction(db, kind, onProgress);
}

async function* dumpInTransaction(db: Db, kind: 'pglite' | 'postgres', onProgress?: (p: BackupProgress) => void): AsyncGenerator<string> {
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  let failure: unknown;
  let resume: (() => void) | undefined;
  const push = async (line: string): Promise<void> => {
    queue.push(line);
    wake?.();
    // Back-pressure: the reader takes lines before more pages are read.
    if (queue.length > PAGE * 2) await new Promise<void>((r) => (resume = r));
  };
  const work = db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (tx) => {
      const version = await sql<{ v: string }>`SELECT version() AS v`.execute(tx);
      const partitioned = await partitionedTables(tx);
      const tables = (await tablesInDependencyOrder(tx)).filter((name) => !partitioned.has(name));
      const counts: { name: string; rows: number }[] = [];
      for (const name of tables) {
        const c = await sql<{ n: string }>`SELECT count(*)::text AS n FROM ONLY ${sql.table(name)}`.execute(tx);
        counts.push({ name, rows: Number(c.rows[0]?.n ?? 0) });
      }
      const total = counts.reduce((a, t) => a + t.rows, 0);
      const header: BackupHeader = {
        format: BACKUP_FORMAT,
        version: BACKUP_VERSION,
        createdAt: new Date().toISOString(),
        source: { kind, serverVersion: version.rows[0]?.v ?? '' },
        migrations: await appliedMigrations(tx),
        tables: counts,
      };
      await push(JSON.stringify(header));
      let done = 0;
      for (const { name } of counts) {
        await push(JSON.stringify({ '@table': name, columns: await writableColumns(tx, name) }));
        // Paged by ranges of heap blocks (a TID Range Scan reads just those blocks): no sort, no
        // index, the same cost for every page. Inside the snapshot row addresses do not move;
        // blocks added by later writers hold only rows this snapshot does not see.
        const size = await sql<{ blocks: string }>`
          SELECT (pg_relation_size(${name}::regclass) / current_setting('block_size')::bigint)::text AS blocks`.execute(tx);
        const blocks = Number(size.rows[0]?.blocks ?? 0);
        let rows = 0;
        for (let block = 0; block < blocks || block === 0; block += PAGE_BLOCKS) {
          const page = await sql<{ j: string }>`
            SELECT row_to_json(t)::text AS j FROM ONLY ${sql.table(name)} t
            WHERE t.ctid >= ${`(${block},0)`}::tid AND t.ctid < ${`(${block + PAGE_BLOCKS},0)`}::tid`.execute(tx);
          for (const row of page.rows) await push(row.j);
          rows += page.rows.length;
          done += page.rows.length;
          onProgress?.({ table: name, rows: done, total });
        }
        await push(JSON.stringify({ '@end': name, rows }));
      }
      const sequences = await sql<{ name: string; last: string | null }>`
        SELECT sequencename AS name, last_value::text AS last FROM pg_sequences WHERE schemaname = current_schema() ORDER BY 1`.execute(tx);
      for (const s of sequences.rows) await push(JSON.stringify({ '@sequence': s.name, last: s.last }));
      await push(JSON.stringify({ '@done': true }));
    })
    .then(
      () => {
        finished = true;
        wake?.();
      },
      (e: unknown) => {
        failure = e;
        finished = true;
        wake?.();
      },
    );
  try {
    for (;;) {
      if (queue.length > 0) {
        const lines = queue.splice(0, queue.length);
        resume?.();
        resume = undefined;
        for (const line of lines) yield line;
        continue;
      }
      if (finished) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  } finally {
    resume?.();
    await work;
  }
  if (failure !== undefined) throw failure;
}

export interface RestoreOptions {
  /** Restore even though the target holds data: its tables are emptied first. */
  force?: boolean;
  onProgress?: (p: BackupProgress) => void;
}

/** A backup that cannot be restored into this database (4xx of a CLI: said and exit 1). */
export class RestoreRefused extends Error {}

/**
 * Writes a backup's lines into the current schema of `db` (migrated by the server's code) in one
 * transaction: the target holds the whole backup or, after an error, nothing of it.
 */
export async function restoreLines(db: Db, lines: AsyncIterable<string>, options: RestoreOptions = {}): Promise<BackupSummary> {
  return db.transaction().execute(async (tx) => {
    const iterator = lines[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done) throw new RestoreRefused('the backup is empty');
    const header = JSON.parse(first.value) as BackupHeader;
    if (header.format !== BACKUP_FORMAT || header.version !== BACKUP_VERSION) throw new RestoreRefused('not a backup of this server (unknown header)');
    const applied = new Set(await appliedMigrations(tx));
    const missing = header.migrations.filter((m) => !applied.has(m));
    if (missing.length > 0) throw new RestoreRefused(`the backup comes from a newer release: this database lacks migrations ${missing.join(', ')}`);
    const targetTables = new Set(await tablesInDependencyOrder(tx));
    const unknown = header.tables.filter((t) => !targetTables.has(t.name) && t.rows > 0);
    if (unknown.length > 0) throw new RestoreRefused(`this database has no table ${unknown.map((t) => t.name).join(', ')}`);
    if (!options.force) {
      for (const table of DATA_TABLES.filter((t) => targetTables.has(t))) {
        const any = await sql<{ one: number }>`SELECT 1 AS one FROM ONLY ${sql.table(table)} LIMIT 1`.execute(tx);
        if (any.rows.length > 0) throw new RestoreRefused(`the target database is not empty (table ${table} has rows); restore into a new database, or pass --force to replace its contents`);
      }
    }
    // Replace whatever the target holds (rows its migrations seeded, or everything with --force).
    const restored = header.tables.map((t) => t.name).filter((n) => targetTables.has(n));
    // ONLY: a row of audit_event is not one of resource's. A partitioned table (named by a backup
    // made before it was partitioned) is emptied with its partitions.
    const partitioned = await partitionedTables(tx);
    const plain = restored.filter((n) => !partitioned.has(n));
    const parents = restored.filter((n) => partitioned.has(n));
    if (plain.length > 0) await sql`TRUNCATE ONLY ${sql.join(plain.map((n) => sql.table(n)))}`.execute(tx);
    if (parents.length > 0) await sql`TRUNCATE ${sql.join(parents.map((n) => sql.table(n)))}`.execute(tx);

    const total = header.tables.reduce((a, t) => a + t.rows, 0);
    let done = 0;
    let tables = 0;
    let sequences = 0;
    let table: { name: string; insert: string[] } | undefined;
    let batch: string[] = [];
    const flush = async (): Promise<void> => {
      if (!table || batch.length === 0) return;
      const columns = sql.join(table.insert.map((c) => sql.id(c)));
      const json = `[${batch.join(',')}]`;
      await sql`INSERT INTO ${sql.table(table.name)} (${columns}) OVERRIDING SYSTEM VALUE
        SELECT ${columns} FROM json_populate_recordset(NULL::${sql.table(table.name)}, ${json}::json)`.execute(tx);
      done += batch.length;
      batch = [];
      options.onProgress?.({ table: table.name, rows: done, total });
    };
    let complete = false;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      const line = next.value;
      if (line.length === 0) continue;
      if (line.startsWith('{"@')) {
        const control = JSON.parse(line) as { '@table'?: string; columns?: string[]; '@end'?: string; '@sequence'?: string; last?: string | null; '@done'?: boolean };
        if (control['@table'] !== undefined) {
          const name = control['@table'];
          const targetColumns = new Set(await writableColumns(tx, name));
          // Columns both sides know: a newer target fills added columns with their defaults.
          table = { name, insert: (control.columns ?? []).filter((c) => targetColumns.has(c)) };
          tables++;
        } else if (control['@end'] !== undefined) {
          await flush();
          table = undefined;
        } else if (control['@sequence'] !== undefined) {
          if (control.last !== null && control.last !== undefined) {
            // A sequence the target lacks (renamed by a later migration) is left alone.
            await sql`SELECT setval(s.oid, ${control.last}::bigint, true) FROM pg_class s
              WHERE s.relname = ${control['@sequence']} AND s.relkind = 'S' AND s.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())`.execute(tx);
          }
          sequences++;
        } else if (control['@done']) {
          complete = true;
        }
        continue;
      }
      if (!table) throw new RestoreRefused('the backup is damaged: a row outside a table');
      batch.push(line);
      if (batch.length >= PAGE) await flush();
    }
    if (!complete) throw new RestoreRefused('the backup is incomplete (no end marker): it was cut short');
    return { tables, rows: done, sequences };
  });
}

/** Planner statistics for restored rows (the embedded database has no autovacuum to gather them). */
export async function analyzeRestored(db: Db): Promise<void> {
  await sql`ANALYZE`.execute(db);
}
