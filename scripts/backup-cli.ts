/**
 * Shared by `npm run backup`, `npm run restore` and `npm run db:copy`: opening a database the
 * way the server does (its migrations run), and the progress bar. See docs/backup.md.
 */
import { SingleBar, Presets } from 'cli-progress';
import { loadConfig, type Config } from '../src/config/config.js';
import { openDatabase, type DatabaseHandle } from '../src/storage/db.js';
import { migrateToLatest } from '../src/storage/migrate.js';
import type { BackupProgress } from '../src/storage/backup.js';

export type DatabaseTarget = Pick<Config, 'databaseUrl' | 'dataDir' | 'databaseSchema'>;

/** The server's database settings (DATABASE_URL / DATABASE_SCHEMA, or DATA_DIR). */
export function serverDatabase(): DatabaseTarget {
  const config = loadConfig(process.env);
  return { databaseUrl: config.databaseUrl, dataDir: config.dataDir, databaseSchema: config.databaseSchema };
}

/** Opens and migrates it like the server does; no statement time limit (a dump is long by nature). */
export async function openMigrated(target: DatabaseTarget): Promise<DatabaseHandle> {
  const database = await openDatabase({ databaseUrl: target.databaseUrl, dataDir: target.dataDir, schema: target.databaseSchema, statementTimeoutMs: 0, poolSize: 2 });
  try {
    await migrateToLatest(database.unlimitedDb);
  } catch (e) {
    await database.close();
    throw e;
  }
  return database;
}

export function describe(target: DatabaseTarget): string {
  if (!target.databaseUrl) return `embedded database ${target.dataDir}`;
  const url = new URL(target.databaseUrl);
  url.password = url.password ? '***' : '';
  return `PostgreSQL ${url.toString()}${target.databaseSchema ? ` schema ${target.databaseSchema}` : ''}`;
}

export function progressBar(label: string, quiet: boolean): { update(p: BackupProgress): void; stop(): void } {
  if (quiet || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} rows | {table}`, hideCursor: true, stream: process.stderr }, Presets.shades_classic);
  let started = false;
  return {
    update(p) {
      if (!started) {
        bar.start(Math.max(p.total, 1), 0, { table: '' });
        started = true;
      }
      bar.update(p.rows, { table: p.table });
    },
    stop: () => started && bar.stop(),
  };
}

export function fail(e: unknown): void {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
}
