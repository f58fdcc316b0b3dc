import { Migrator, sql, type MigrationResultSet } from 'kysely';
import { migrations } from '../../migrations/index.js';
import type { Db } from './db.js';

/** Brings the schema up to date; safe when several processes start at once (kysely takes a lock). */
export async function migrateToLatest(db: Db): Promise<void> {
  // Kysely looks for its bookkeeping tables in every schema unless told which one; name ours
  // so a database holding several schemas (tests, benchmarks, tenants) migrates each one.
  const current = await sql<{ schema: string }>`SELECT current_schema() AS schema`.execute(db);
  const schema = current.rows[0]?.schema ?? 'public';
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
    migrationTableSchema: schema,
  });
  // A newer release may have migrated already (rolling restart: it starts first, this one keeps
  // running or restarts). Its migrations only add (docs/migrations.md), so this release runs on
  // the newer schema as it is — unless one of its own migrations is missing as well, which
  // kysely could not apply out of order.
  const ahead = await newerMigrations(db, schema);
  if (ahead.length > 0) {
    const missing = (await migrator.getMigrations()).filter((m) => !m.executedAt).map((m) => m.name);
    if (missing.length > 0) throw new Error(`the database has migrations of a newer release (${ahead.join(', ')}) but lacks this release's ${missing.join(', ')}`);
    return;
  }
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`migration ${failed} failed: ${String(result.error)}`, { cause: result.error });
  }
}

/** Applied migrations this release does not know (a newer release ran them); none at first start. */
async function newerMigrations(db: Db, schema: string): Promise<string[]> {
  const table = await sql<{ t: string | null }>`SELECT to_regclass(${`"${schema}".kysely_migration`})::text AS t`.execute(db);
  if (!table.rows[0]?.t) return [];
  const applied = await sql<{ name: string }>`SELECT name FROM ${sql.table(`${schema}.kysely_migration`)}`.execute(db);
  return applied.rows.map((r) => r.name).filter((name) => !(name in migrations)).sort();
}
