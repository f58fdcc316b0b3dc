import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { indexTables } from '../../src/search/index-tables.js';
import type { Db } from '../../src/storage/db.js';
import { executePrepared } from '../../src/storage/prepared-write.js';
import { WriteCombiner } from '../../src/storage/write-combiner.js';
import { writeStatements, type PendingWrite } from '../../src/storage/write-sql.js';
import { openTestDb, type TestDb } from '../support/search-db.js';

/** A create of Basic/<id> with one date index row (`when` must be a timestamp PostgreSQL accepts). */
function pendingCreate(id: string, when: string): PendingWrite {
  const lastUpdated = new Date().toISOString();
  const resource = { resourceType: 'Basic', id, code: { text: id }, meta: { versionId: '1', lastUpdated } };
  return {
    change: { method: 'POST', resourceType: 'Basic', id, versionId: '1', lastUpdated, resource },
    json: JSON.stringify(resource),
    indexRows: new Map([['search_date', [['created', when, when, true, true]]]]),
  };
}

describe('group commit of lone writes (WriteCombiner)', () => {
  let testDb: TestDb;
  let db: Db;

  beforeAll(async () => {
    testDb = await openTestDb();
    db = testDb.db as Db;
  });
  afterAll(async () => {
    await testDb?.close();
  });

  async function storedIds(prefix: string): Promise<string[]> {
    const r = await sql<{ id: string }>`SELECT id FROM resource WHERE resource_type = 'Basic' AND id LIKE ${`${prefix}%`} ORDER BY id`.execute(db);
    return r.rows.map((row) => row.id);
  }

  /**
   * Opens every pool connection (4) before the writes: group commit needs writes that overlap,
   * and opening a connection takes longer than a write, so writes on connections still being
   * opened would each run alone.
   */
  async function openPool(): Promise<void> {
    await Promise.all(
      Array.from({ length: 4 }, () =>
        db.connection().execute(async (connection) => {
          await sql`SELECT 1`.execute(connection);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }),
      ),
    );
  }

  async function runAll(combiner: WriteCombiner, writes: PendingWrite[]): Promise<PromiseSettledResult<unknown>[]> {
    return Promise.allSettled(
      writes.map((w) => db.connection().execute((connection) => combiner.run(connection as Db, indexTables, [w], writeStatements(indexTables, [w])[0]!))),
    );
  }

  it('sends concurrent creates together and stores each with its index rows', async () => {
    const combiner = new WriteCombiner();
    const writes = Array.from({ length: 20 }, (_, i) => pendingCreate(`gc-ok-${String(i).padStart(2, '0')}`, '2024-01-02T00:00:00Z'));
    await openPool();
    const results = await runAll(combiner, writes);
    expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
    expect(await storedIds('gc-ok-')).toEqual(writes.map((w) => w.change.id));
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM search_date WHERE resource_type = 'Basic' AND resource_id LIKE 'gc-ok-%'`.execute(db);
    expect(rows.rows[0]!.n).toBe(20);
    const history = await sql<{ n: number }>`SELECT count(*)::int AS n FROM resource_history WHERE resource_type = 'Basic' AND id LIKE 'gc-ok-%'`.execute(db);
    expect(history.rows[0]!.n).toBe(20);
    if (testDb.kind === 'postgres') {
      // Two ran at once; the other 18 waited and shared statements.
      expect(combiner.sent.statements).toBeLessThan(20);
      expect(combiner.sent.combinedTransactions).toBeGreaterThan(1);
    } else {
      // The embedded database lends its one connection to one transaction at a time: nothing waits in the combiner.
      expect(combiner.sent.statements).toBe(20);
    }
  });

  it('fails only the transaction whose rows break the statement; the others of its group are stored', async () => {
    const combiner = new WriteCombiner();
    // (On PostgreSQL the bad write is one of a group: 0 and 1 run at once, 2–11 wait together.)
    const writes = Array.from({ length: 12 }, (_, i) => pendingCreate(`gc-mix-${String(i).padStart(2, '0')}`, i === 7 ? 'not a date' : '2024-01-02T00:00:00Z'));
    const results = await runAll(combiner, writes);
    expect(results.map((r) => r.status)).toEqual(writes.map((_, i) => (i === 7 ? 'rejected' : 'fulfilled')));
    expect(await storedIds('gc-mix-')).toEqual(writes.filter((_, i) => i !== 7).map((w) => w.change.id));
  });

  it('runs a write under its shape\'s prepared name, bound on PostgreSQL, and writes on after the session lost it', async () => {
    await db.connection().execute(async (connection) => {
      const c = connection as Db;
      const first = pendingCreate('prep-1', '2024-01-02T00:00:00Z');
      await executePrepared(c, indexTables, writeStatements(indexTables, [first])[0]!);
      const prepared = await sql<{ from_sql: boolean }>`SELECT from_sql FROM pg_prepared_statements WHERE name LIKE 'fhir_write_%'`.execute(c);
      expect(prepared.rows.length).toBeGreaterThan(0);
      // PostgreSQL: a protocol-level statement (the JSON values bound, not lexed as SQL constants);
      // the embedded database: SQL-level PREPARE / EXECUTE.
      for (const row of prepared.rows) expect(row.from_sql).toBe(testDb.kind !== 'postgres');
      // As behind a pooler that switched sessions: the next write still goes through.
      await sql`DEALLOCATE ALL`.execute(c);
      await executePrepared(c, indexTables, writeStatements(indexTables, [pendingCreate('prep-2', '2024-01-02T00:00:00Z')])[0]!);
    });
    expect(await storedIds('prep-')).toEqual(['prep-1', 'prep-2']);
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM search_date WHERE resource_type = 'Basic' AND resource_id LIKE 'prep-%'`.execute(db);
    expect(rows.rows[0]!.n).toBe(2);
  });

  it('a lone write does not wait', async () => {
    const combiner = new WriteCombiner();
    const [result] = await runAll(combiner, [pendingCreate('gc-lone', '2024-01-02T00:00:00Z')]);
    expect(result!.status).toBe('fulfilled');
    expect(combiner.sent).toEqual({ statements: 1, combinedTransactions: 0 });
  });
});
