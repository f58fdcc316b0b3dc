import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4.js';
import { sql } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { startWriteProfile, stopWriteProfile } from '../src/storage/write-profile.js';
import { compare, measure, type Comparison } from './harness.js';

export interface CrudBenchOptions {
  app: ServerApp;
  token: string;
  samples: Resource[];
  creates: number;
  reads: number;
  updates: number;
  concurrency: number;
}

/**
 * create / read / update through the whole FHIR stack (fastify inject: routing, auth,
 * validation, index extraction, versioning) beside the same JSON written and read with
 * plain SQL on the same connection pool, in the same run.
 */
export async function benchCrud(o: CrudBenchOptions): Promise<Comparison[]> {
  const db = o.app.database.db;
  await sql`DROP TABLE IF EXISTS bench_raw`.execute(db);
  await sql`CREATE TABLE bench_raw (id text PRIMARY KEY, content jsonb NOT NULL)`.execute(db);
  const headers = { authorization: `Bearer ${o.token}`, 'content-type': 'application/fhir+json' };
  const bodies = o.samples.map((s) => {
    const { id: _id, meta: _meta, ...rest } = s as Resource & Record<string, unknown>;
    return rest as unknown as Resource;
  });
  const texts = bodies.map((b) => JSON.stringify(b));
  const fhirIds: Array<{ type: string; id: string }> = [];
  const rawIds: string[] = [];

  const fhirCreate = async (i: number) => {
    const body = texts[i % texts.length];
    const res = await o.app.http.inject({ method: 'POST', url: `/fhir/${bodies[i % bodies.length].resourceType}`, headers: { ...headers, prefer: 'return=minimal' }, payload: body });
    if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
    const location = res.headers.location as string;
    const [, type, id] = /\/fhir\/([^/]+)\/([^/]+)\/_history/.exec(location) ?? [];
    fhirIds.push({ type, id });
  };
  const rawCreate = async (i: number) => {
    const id = randomUUID();
    await sql`INSERT INTO bench_raw (id, content) VALUES (${id}, ${texts[i % texts.length]}::jsonb)`.execute(db);
    rawIds.push(id);
  };

  // Warm-up: JIT, prepared plans, definition caches.
  await measure('warm fhir create', 200, o.concurrency, fhirCreate);
  await measure('warm raw insert', 200, o.concurrency, rawCreate);

  const rawInsert = await measure('raw INSERT', o.creates, o.concurrency, rawCreate);
  startWriteProfile();
  const fhirCreateM = await measure('FHIR create', o.creates, o.concurrency, fhirCreate);
  const createProfile = stopWriteProfile();

  const rawSelectOp = async (i: number) => {
    const r = await sql<{ content: unknown }>`SELECT content FROM bench_raw WHERE id = ${rawIds[i % rawIds.length]}`.execute(db);
    if (r.rows.length !== 1) throw new Error('raw read missed');
  };
  const fhirReadOp = async (i: number) => {
    const { type, id } = fhirIds[i % fhirIds.length];
    const res = await o.app.http.inject({ method: 'GET', url: `/fhir/${type}/${id}`, headers });
    if (res.statusCode !== 200) throw new Error(`read failed: ${res.statusCode}`);
  };
  // Latency one request at a time (what a user waits for), throughput under concurrency.
  const rawSelect1 = await measure('raw SELECT by pk, 1 at a time', Math.round(o.reads / 3), 1, rawSelectOp);
  const fhirRead1 = await measure('FHIR read, 1 at a time', Math.round(o.reads / 3), 1, fhirReadOp);
  const rawSelect = await measure('raw SELECT by pk', o.reads, o.concurrency, rawSelectOp);
  const fhirRead = await measure('FHIR read', o.reads, o.concurrency, fhirReadOp);

  // Updates touch distinct resources so they measure the write path, not lock waits.
  const rawUpdate = await measure('raw UPDATE by pk', o.updates, o.concurrency, async (i) => {
    await sql`UPDATE bench_raw SET content = ${texts[i % texts.length]}::jsonb WHERE id = ${rawIds[i % rawIds.length]}`.execute(db);
  });
  startWriteProfile();
  const fhirUpdate = await measure('FHIR update', o.updates, o.concurrency, async (i) => {
    const { type, id } = fhirIds[i % fhirIds.length];
    const body = bodies.find((b) => b.resourceType === type) as Resource;
    const res = await o.app.http.inject({
      method: 'PUT',
      url: `/fhir/${type}/${id}`,
      headers: { ...headers, prefer: 'return=minimal' },
      payload: JSON.stringify({ ...body, id }),
    });
    if (res.statusCode !== 200) throw new Error(`update failed: ${res.statusCode} ${res.body.slice(0, 200)}`);
  });

  const updateProfile = stopWriteProfile();
  // Where a write's time goes, per stage (see src/storage/write-profile.ts).
  console.log(createProfile?.format('profile of FHIR create'));
  console.log(updateProfile?.format('profile of FHIR update'));

  await sql`DROP TABLE bench_raw`.execute(db);
  return [
    compare('create vs INSERT', fhirCreateM, rawInsert, { text: 'throughput ≥ 0.5 × raw', met: (c) => c.throughputRatio >= 0.5 }),
    compare('read vs SELECT by pk (1 in flight)', fhirRead1, rawSelect1, { text: 'p50 ≤ 2 × raw', met: (c) => c.p50Ratio <= 2 }),
    compare(`read vs SELECT by pk (${o.concurrency} in flight)`, fhirRead, rawSelect),
    compare('update vs UPDATE by pk', fhirUpdate, rawUpdate),
  ];
}
