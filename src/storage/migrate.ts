import { sql, type Migration } from 'kysely';
import { migrations as allMigrations } from '../../migrations/index.js';
import type { Db } from './db.js';

/**
 * Brings the current schema (search_path) up to date.
 *
 * Safe when several processes start at once, on one schema or on several schemas of the same
 * database (tenants side by side, test workers): each schema is migrated in one transaction
 * that first takes a transaction-scoped advisory lock on a hash of the schema's name, so the
 * start-ups of one schema wait for each other while other schemas go on at the same time.
 *
 * Why not kysely's Migrator: it takes one advisory lock id for every schema of the database
 * (one tenant's long migration holds up every other tenant's start-up), and it looks for its
 * bookkeeping tables with an introspection query over all schemas that calls
 * `has_schema_privilege(name)` / `pg_get_serial_sequence(name)` per table: a schema dropped by
 * another session during that query fails it with "schema … does not exist". Here every
 * catalog lookup names this schema only. The bookkeeping tables are kysely's
 * (`kysely_migration`, `kysely_migration_lock`), so databases migrated before, and a previous
 * release started against this one (docs/migrations.md), read them as before.
 */
export async function migrateToLatest(db: Db, migrations: Record<string, Migration> = allMigrations): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const schema = await currentSchema(trx);
    await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`fhir-server:migrate:${schema}`}, 0))`.execute(trx);
    await ensureBookkeeping(trx, schema);
    const applied = await appliedMigrations(trx, schema);
    const known = Object.keys(migrations).sort();
    // A newer release may have migrated already (rolling restart: it starts first, this one keeps
    // running or restarts). Its migrations only add (docs/migrations.md), so this release runs on
    // the newer schema as it is — unless one of its own migrations is missing as well, which
    // could not be applied out of order.
    const ahead = applied.filter((name) => !(name in migrations)).sort();
    const pending = known.filter((name) => !applied.includes(name));
    if (ahead.length > 0) {
      if (pending.length > 0) throw new Error(`the database has migrations of a newer release (${ahead.join(', ')}) but lacks this release's ${pending.join(', ')}`);
      return;
    }
    // Applied ones must be the first of the list (as kysely checks): a migration added with a
    // name sorting before an applied one would never run.
    applied.forEach((name, i) => {
      if (known[i] !== name) throw new Error(`corrupted migrations: expected previously executed migration ${name} at index ${i} but found ${known[i]} there; new migrations must sort after the last applied one`);
    });
    const table = sql.table(`${schema}.kysely_migration`);
    for (const name of pending) {
      try {
        await migrations[name]!.up(trx);
      } catch (e) {
        throw new Error(`migration ${name} failed: ${String(e)}`, { cause: e });
      }
      await sql`INSERT INTO ${table} (name, timestamp) VALUES (${name}, ${new Date().toISOString()})`.execute(trx);
    }
  });
}

async function currentSchema(db: Db): Promise<string> {
  const current = await sql<{ schema: string | null }>`SELECT current_schema() AS schema`.execute(db);
  const schema = current.rows[0]?.schema;
  if (!schema) throw new Error('no schema to migrate: the search_path names no existing schema');
  return schema;
}

/** kysely's bookkeeping tables, same columns, created under the schema's lock (so only once). */
async function ensureBookkeeping(trx: Db, schema: string): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS ${sql.table(`${schema}.kysely_migration`)} (name varchar(255) NOT NULL PRIMARY KEY, timestamp varchar(255) NOT NULL)`.execute(trx);
  // kysely's lock table is not used for locking on PostgreSQL (advisory locks are); a previous
  // release's Migrator expects its row.
  await sql`CREATE TABLE IF NOT EXISTS ${sql.table(`${schema}.kysely_migration_lock`)} (id varchar(255) NOT NULL PRIMARY KEY, is_locked integer NOT NULL DEFAULT 0)`.execute(trx);
  await sql`INSERT INTO ${sql.table(`${schema}.kysely_migration_lock`)} (id, is_locked) VALUES ('migration_lock', 0) ON CONFLICT DO NOTHING`.execute(trx);
}

/** Applied migration names, in the order kysely records them (time, then name). */
async function appliedMigrations(trx: Db, schema: string): Promise<string[]> {
  const rows = await sql<{ name: string; timestamp: string }>`SELECT name, timestamp FROM ${sql.table(`${schema}.kysely_migration`)}`.execute(trx);
  return rows.rows
    .sort((a, b) => (a.timestamp === b.timestamp ? a.name.localeCompare(b.name) : new Date(a.timestamp).getTime() - new Date(b.timestamp).getTime()))
    .map((r) => r.name);
}
