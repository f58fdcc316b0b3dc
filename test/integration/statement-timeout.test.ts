import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OperationOutcome } from 'fhir/r4.js';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FhirError } from '../../src/fhir/errors.js';
import { openDatabase, type DatabaseHandle } from '../../src/storage/db.js';
import { mapDatabaseError, pgErrorCode } from '../../src/storage/pg-errors.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { loadGenerated } from './maintenance-data.js';

/**
 * DATABASE_STATEMENT_TIMEOUT_MS: no statement runs past the limit unanswered, on PostgreSQL
 * (statement_timeout) and on the embedded database (which cannot interrupt its wasm engine:
 * the server thread gives the statement up and the worker fails its transaction).
 */
const databaseUrl = process.env.DATABASE_URL;
const onPglite = !databaseUrl;

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
}

function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe('statement time limit at the storage layer', () => {
  const schema = databaseUrl ? `st_${randomBytes(6).toString('hex')}` : undefined;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    handle = await openDatabase({ databaseUrl, dataDir: 'memory', schema, statementTimeoutMs: 200, poolSize: 4 });
    await sql`CREATE TABLE timeout_probe (a int)`.execute(handle.unlimitedDb);
  });

  afterAll(async () => {
    await handle?.close();
    if (schema) await dropSchema(schema);
  });

  it('stops a statement past the limit with SQLSTATE 57014, answered as too-costly', async () => {
    const started = Date.now();
    const error = await errorOf(sql`SELECT pg_sleep(3)`.execute(handle.db));
    expect(pgErrorCode(error)).toBe('57014');
    expect(Date.now() - started).toBeLessThan(2500);

    const mapped = mapDatabaseError(error);
    expect(mapped).toBeInstanceOf(FhirError);
    const fhirError = mapped as FhirError;
    expect(fhirError.status).toBe(400);
    expect(fhirError.toOutcome().issue[0]?.code).toBe('too-costly');
    // Whatever was still running is finished or skipped; the database answers again.
    await expect(sql`SELECT 1 AS one`.execute(handle.unlimitedDb)).resolves.toMatchObject({ rows: [{ one: 1 }] });
  });

  it('rolls back the transaction whose statement was stopped', async () => {
    const error = await errorOf(
      handle.db.transaction().execute(async (trx) => {
        await sql`INSERT INTO timeout_probe VALUES (1)`.execute(trx);
        await sql`SELECT pg_sleep(1)`.execute(trx);
        await sql`INSERT INTO timeout_probe VALUES (2)`.execute(trx);
      }),
    );
    expect(pgErrorCode(error)).toBe('57014');
    // On PGlite this waits for the worker to finish the sleep it was given up on.
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM timeout_probe`.execute(handle.unlimitedDb);
    expect(rows.rows[0]?.n).toBe(0);
  });

  it('runs long work without the limit: the unlimited handle, SET LOCAL statement_timeout = 0', async () => {
    await expect(sql`SELECT pg_sleep(0.5)`.execute(handle.unlimitedDb)).resolves.toBeDefined();
    await handle.db.transaction().execute(async (trx) => {
      await sql`SET LOCAL statement_timeout = 0`.execute(trx);
      await sql`SELECT pg_sleep(0.5)`.execute(trx);
      await sql`INSERT INTO timeout_probe VALUES (3)`.execute(trx);
    });
    // The local setting ended with its transaction: the limit is back.
    expect(pgErrorCode(await errorOf(sql`SELECT pg_sleep(1)`.execute(handle.db)))).toBe('57014');
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM timeout_probe WHERE a = 3`.execute(handle.unlimitedDb);
    expect(rows.rows[0]?.n).toBe(1);
  });

  it.skipIf(!onPglite)('embedded: the server thread stays free, and a statement stuck behind a stopped one is answered 503', async () => {
    const events: string[] = [];
    const slow = errorOf(sql`SELECT pg_sleep(1.5)`.execute(handle.db)).then((e) => {
      events.push('slow statement answered');
      return e;
    });
    // A timer on the server thread fires while the database is busy (with PGlite on the
    // server thread it could not fire before the sleep ended).
    await new Promise((r) => setTimeout(r, 50));
    events.push('timer fired');
    expect(pgErrorCode(await slow)).toBe('57014');
    expect(events).toEqual(['timer fired', 'slow statement answered']);

    // The worker is still sleeping: the next statement does not start within the limit.
    const waiting = await errorOf(sql`SELECT 1`.execute(handle.db));
    expect(pgErrorCode(waiting)).toBe('55P03');
    const mapped = mapDatabaseError(waiting) as FhirError;
    expect(mapped.status).toBe(503);
    expect(mapped.headers['Retry-After']).toBeDefined();

    // Once the worker is done, statements run normally again.
    await expect(sql`SELECT 2 AS two`.execute(handle.unlimitedDb)).resolves.toMatchObject({ rows: [{ two: 2 }] });
    await expect(sql`SELECT 3 AS three`.execute(handle.db)).resolves.toMatchObject({ rows: [{ three: 3 }] });
  });
});

/**
 * Through HTTP with a genuinely slow FHIR search: the issue's `Observation?code=8302-2&
 * value-quantity=gt180` on tables that were never analyzed (maintenance off) is planned as if
 * they were empty and takes seconds even on 2,200 resources.
 */
describe('a search past the limit over HTTP', () => {
  const SLOW_SEARCH = '/fhir/Observation?code=8302-2&value-quantity=gt180&_count=10';
  const dataDir = onPglite ? mkdtempSync(join(tmpdir(), 'fhir-timeout-')) : undefined;
  let loader: TestApp | undefined;
  let limited: TestApp | undefined;

  beforeAll(async () => {
    const storage: Record<string, string> = dataDir ? { DATA_DIR: dataDir } : {};
    loader = await startTestApp({ ...storage, DATABASE_MAINTENANCE: 'off', DATABASE_STATEMENT_TIMEOUT_MS: '0' });
    await loadGenerated(loader, 4);
  }, 240_000);

  afterAll(async () => {
    await limited?.close();
    await loader?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps /healthz answering while the slow search runs', async () => {
    const app = loader!;
    const order: string[] = [];
    const search = app.request({ method: 'GET', url: SLOW_SEARCH }).then((r) => {
      order.push('search');
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    const health = await app.server.http.inject({ method: 'GET', url: '/healthz' });
    order.push('healthz');
    expect(health.statusCode).toBe(200);
    const result = await search;
    expect(result.statusCode).toBe(200);
    // If the search were fast the test would prove nothing: it must still have been running.
    expect(order).toEqual(['healthz', 'search']);
  });

  it('answers 400 too-costly instead of hanging', async () => {
    // Same data, a server with a 300 ms limit (PGlite: the same directory, reopened).
    if (onPglite) {
      await loader!.close();
      loader = undefined;
      limited = await startTestApp({ DATA_DIR: dataDir!, DATABASE_MAINTENANCE: 'off', DATABASE_STATEMENT_TIMEOUT_MS: '300' });
    } else {
      limited = await startTestApp({ DATABASE_SCHEMA: loader!.config.databaseSchema!, DATABASE_MAINTENANCE: 'off', DATABASE_STATEMENT_TIMEOUT_MS: '300' });
    }
    const started = Date.now();
    const response = await limited.request({ method: 'GET', url: SLOW_SEARCH });
    expect(response.statusCode, response.body).toBe(400);
    const outcome = response.json() as OperationOutcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue[0]?.code).toBe('too-costly');
    expect(Date.now() - started).toBeLessThan(10_000);
    const health = await limited.server.http.inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
  }, 120_000);
});
