import { randomBytes } from 'node:crypto';
import type { Resource } from 'fhir/r4.js';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import pg from 'pg';
import { openDatabase } from '../../src/storage/db.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { indexTables, rowsToColumns, unnestInsertSql } from '../../src/search/index-tables.js';
import type { SearchIndexer } from '../../src/search/indexer.js';

/**
 * Test database for search tests: PGlite in memory, or — when DATABASE_URL is set — a fresh
 * schema on that PostgreSQL server (dropped again by `close`). Migrations are the real ones.
 */
export interface TestDb {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  db: Kysely<any>;
  kind: 'pglite' | 'postgres';
  close(): Promise<void>;
}

export async function openTestDb(): Promise<TestDb> {
  const url = process.env.DATABASE_URL;
  const schema = url ? `search_test_${randomBytes(6).toString('hex')}` : undefined;
  const handle = await openDatabase({ databaseUrl: url, dataDir: 'memory', schema, poolSize: 4 });
  // The server's own migration (per-schema lock, no look at other schemas), without the time limit.
  await migrateToLatest(handle.unlimitedDb);
  return {
    db: handle.db,
    kind: handle.kind,
    close: async () => {
      await handle.close();
      if (url && schema) {
        const admin = new pg.Client({ connectionString: url });
        await admin.connect();
        try {
          await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        } finally {
          await admin.end();
        }
      }
    },
  };
}

/**
 * Stores resources directly (current version only) with their index rows, set-based:
 * one INSERT … SELECT FROM unnest(…) per table per call, as storage does.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function insertResources(db: Kysely<any>, indexer: SearchIndexer, resources: Resource[], lastUpdated?: string): Promise<void> {
  const perTable = new Map<string, Array<readonly [string, string, readonly unknown[]]>>();
  for (const spec of indexTables) perTable.set(spec.table, []);
  const types: string[] = [];
  const ids: string[] = [];
  const updated: string[] = [];
  const contents: string[] = [];
  let n = 0;
  for (const r of resources) {
    const lu = r.meta?.lastUpdated ?? lastUpdated ?? new Date(Date.UTC(2024, 0, 1) + n++ * 1000).toISOString();
    const stored = { ...r, meta: { ...r.meta, versionId: '1', lastUpdated: lu } } as Resource;
    types.push(r.resourceType);
    ids.push(r.id!);
    updated.push(lu);
    contents.push(JSON.stringify(stored));
    for (const [table, rows] of indexer.extract(stored)) {
      const list = perTable.get(table)!;
      for (const row of rows) list.push([r.resourceType, r.id!, row]);
    }
  }
  await db.transaction().execute(async (trx) => {
    await sql`INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content)
      SELECT t, i, 1, u, false, c::jsonb FROM unnest(${types}::text[], ${ids}::text[], ${updated}::timestamptz[], ${contents}::text[]) AS x(t, i, u, c)`.execute(trx);
    for (const spec of indexTables) {
      const rows = perTable.get(spec.table)!;
      if (rows.length === 0) continue;
      await trx.executeQuery(CompiledQuery.raw(unnestInsertSql(spec), rowsToColumns(spec, rows)));
    }
  });
}
