import type { Patient } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * The current-version read and vread run as named prepared statements on PostgreSQL
 * (src/storage/db.ts, PREPARED): planning the lookup cost more than executing it. These
 * tests check the answers stay the same, and that a server session which lost its prepared
 * statements (a pooler switching sessions) still answers.
 */
let t: TestApp;
let created: Patient;

beforeAll(async () => {
  t = await startTestApp();
  const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Prepared' }] } });
  expect(res.statusCode).toBe(201);
  created = res.json() as Patient;
});
afterAll(async () => {
  await t?.close();
});

describe('reads by id (R4 http.html#read, #vread) on prepared statements', () => {
  it('answers the same resource on every pool connection, read and vread', async () => {
    const reads = await Promise.all(Array.from({ length: 24 }, () => t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` })));
    for (const res of reads) {
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual(created);
    }
    const vread = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/1` });
    expect(vread.statusCode).toBe(200);
    expect(vread.json()).toEqual(created);
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/no-such-id' })).statusCode).toBe(404);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/9` })).statusCode).toBe(404);
  });

  it.skipIf(!process.env.DATABASE_URL)('is prepared once per connection, and answers after the session lost it (DEALLOCATE, as behind a pooler)', async () => {
    const db = t.server.database.db;
    await db.connection().execute(async (connection) => {
      expect((await t.server.store.read('Patient', created.id!, connection))?.versionId).toBe('1');
      const prepared = await sql<{ statement: string }>`SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%FROM resource WHERE%'`.execute(connection);
      expect(prepared.rows.length).toBe(1);
      await sql`DEALLOCATE ALL`.execute(connection);
      const again = await t.server.store.read('Patient', created.id!, connection);
      expect(again?.versionId).toBe('1');
      expect(JSON.parse(again!.json!)).toEqual(created);
    });
    const res = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` });
    expect(res.statusCode).toBe(200);
  });
});

describe.skipIf(!process.env.DATABASE_URL)('writes inside a transaction block on prepared statements', () => {
  let one: TestApp;
  beforeAll(async () => {
    // One pool connection: the DEALLOCATE below reaches the session the write runs on.
    one = await startTestApp({ DATABASE_POOL_SIZE: '1' });
  });
  afterAll(async () => {
    await one?.close();
  });

  it('are prepared once per session, and a transaction whose session lost them is run again (as behind a pooler)', async () => {
    const created = await one.request({ method: 'POST', url: '/fhir/Basic', payload: { resourceType: 'Basic', code: { text: 'in-tx' } } });
    expect(created.statusCode).toBe(201);
    const id = (created.json() as { id: string }).id;
    // If-Match takes the locking path: BEGIN, SELECT … FOR UPDATE, the write statement, COMMIT.
    const first = await one.request({ method: 'PUT', url: `/fhir/Basic/${id}`, headers: { 'if-match': 'W/"1"' }, payload: { resourceType: 'Basic', id, code: { text: 'in-tx 2' } } });
    expect(first.statusCode).toBe(200);
    const prepared = await sql<{ from_sql: boolean }>`SELECT from_sql FROM pg_prepared_statements WHERE name LIKE 'fhir_write_%'`.execute(one.server.database.db);
    expect(prepared.rows.length).toBeGreaterThan(1);
    expect(prepared.rows.every((r) => !r.from_sql)).toBe(true);
    await sql`DEALLOCATE ALL`.execute(one.server.database.db);
    const second = await one.request({ method: 'PUT', url: `/fhir/Basic/${id}`, headers: { 'if-match': 'W/"2"' }, payload: { resourceType: 'Basic', id, code: { text: 'in-tx 3' } } });
    expect(second.statusCode).toBe(200);
    expect((second.json() as { meta: { versionId: string } }).meta.versionId).toBe('3');
    const history = (await one.request({ method: 'GET', url: `/fhir/Basic/${id}/_history` })).json() as { entry?: Array<{ resource?: { code?: { text?: string } } }> };
    expect(history.entry?.map((e) => e.resource?.code?.text)).toEqual(['in-tx 3', 'in-tx 2', 'in-tx']);
  });
});
