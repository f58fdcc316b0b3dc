import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4.js';
import { CompiledQuery, sql } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { PREPARED } from '../src/storage/db.js';
import { resourceToXml } from '../src/fhir/xml/to-xml.js';
import { startWriteProfile, stopWriteProfile } from '../src/storage/write-profile.js';
import { alternated, compare, measure, warmUp, warmUpText, type Comparison, type Measurement } from './harness.js';

export interface CrudBenchOptions {
  app: ServerApp;
  token: string;
  samples: Resource[];
  creates: number;
  reads: number;
  updates: number;
  concurrency: number;
  /** calls of each operation before it is measured (see `warmUp`) */
  warmUp: number;
}

/** The create and update operations of both sides, on one app and one raw table. */
interface WriteOps {
  fhirCreate: (i: number) => Promise<void>;
  /** the same create with the body in FHIR XML */
  fhirCreateXml: (i: number) => Promise<void>;
  rawCreate: (i: number) => Promise<void>;
  fhirUpdate: (i: number) => Promise<void>;
  rawUpdate: (i: number) => Promise<void>;
  fhirIds: Array<{ type: string; id: string }>;
  rawIds: string[];
  dropRaw: () => Promise<void>;
}

async function writeOps(o: Pick<CrudBenchOptions, 'app' | 'token' | 'samples'>): Promise<WriteOps> {
  const db = o.app.database.db;
  await sql`DROP TABLE IF EXISTS bench_raw`.execute(db);
  await sql`CREATE TABLE bench_raw (id text PRIMARY KEY, content jsonb NOT NULL)`.execute(db);
  const headers = { authorization: `Bearer ${o.token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' };
  const bodies = o.samples.map((s) => {
    const { id: _id, meta: _meta, ...rest } = s as Resource & Record<string, unknown>;
    return rest as unknown as Resource;
  });
  const texts = bodies.map((b) => JSON.stringify(b));
  const xmlTexts = bodies.map((b) => resourceToXml(b as unknown as Record<string, unknown>));
  const xmlHeaders = { ...headers, 'content-type': 'application/fhir+xml' };
  const fhirIds: Array<{ type: string; id: string }> = [];
  const rawIds: string[] = [];
  return {
    fhirIds,
    rawIds,
    fhirCreate: async (i) => {
      const res = await o.app.http.inject({ method: 'POST', url: `/fhir/${bodies[i % bodies.length].resourceType}`, headers, payload: texts[i % texts.length] });
      if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
      const [, type, id] = /\/fhir\/([^/]+)\/([^/]+)\/_history/.exec(res.headers.location as string) ?? [];
      fhirIds.push({ type, id });
    },
    fhirCreateXml: async (i) => {
      const res = await o.app.http.inject({ method: 'POST', url: `/fhir/${bodies[i % bodies.length].resourceType}`, headers: xmlHeaders, payload: xmlTexts[i % xmlTexts.length] });
      if (res.statusCode !== 201) throw new Error(`XML create failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
    },
    rawCreate: async (i) => {
      const id = randomUUID();
      await sql`INSERT INTO bench_raw (id, content) VALUES (${id}, ${texts[i % texts.length]}::jsonb)`.execute(db);
      rawIds.push(id);
    },
    // Updates touch distinct resources so they measure the write path, not lock waits. The
    // new content is another sample's (the first of the type): most index rows change.
    fhirUpdate: async (i) => {
      const { type, id } = fhirIds[i % fhirIds.length];
      const body = bodies.find((b) => b.resourceType === type) as Resource;
      const res = await o.app.http.inject({ method: 'PUT', url: `/fhir/${type}/${id}`, headers, payload: JSON.stringify({ ...body, id }) });
      if (res.statusCode !== 200) throw new Error(`update failed: ${res.statusCode} ${res.body.slice(0, 200)}`);
    },
    rawUpdate: async (i) => {
      await sql`UPDATE bench_raw SET content = ${texts[i % texts.length]}::jsonb WHERE id = ${rawIds[i % rawIds.length]}`.execute(db);
    },
    dropRaw: async () => {
      await sql`DROP TABLE bench_raw`.execute(db);
    },
  };
}

/**
 * create / read / update through the whole FHIR stack (fastify inject: routing, auth,
 * validation, index extraction, versioning) beside the same JSON written and read with
 * plain SQL on the same connection pool, in the same run. The app is expected to run with
 * AUDIT_EVENTS=off (bench/run.ts builds it so): these are the figures of the FHIR write path
 * itself; `benchAuditedWrites` gives the same writes with the audit trail on.
 */
export async function benchCrud(o: CrudBenchOptions): Promise<Comparison[]> {
  const db = o.app.database.db;
  const ops = await writeOps(o);
  const { fhirIds, rawIds } = ops;
  const headers = { authorization: `Bearer ${o.token}` };

  // Warm-up to steady state (JIT, prepared plans, definition caches): see `warmUp`.
  const warmUps = [await warmUp('FHIR create', o.concurrency, ops.fhirCreate, o.warmUp), await warmUp('raw INSERT', o.concurrency, ops.rawCreate, o.warmUp)];

  const rawInsert = await measure('raw INSERT', o.creates, o.concurrency, ops.rawCreate);
  startWriteProfile();
  const fhirCreateM = await measure('FHIR create', o.creates, o.concurrency, ops.fhirCreate);
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
  // The FHIR read runs as a named prepared statement on PostgreSQL (src/storage/db.ts): the same
  // SELECT prepared is shown beside it, so the figure says what the server adds besides planning.
  const rawPreparedOp = async (i: number) => {
    const r = await db.executeQuery(CompiledQuery.raw(`SELECT content FROM bench_raw WHERE id = $1${PREPARED}`, [rawIds[i % rawIds.length]]));
    if (r.rows.length !== 1) throw new Error('raw read missed');
  };
  warmUps.push(await warmUp('FHIR read', 1, fhirReadOp, o.warmUp), await warmUp('raw SELECT', 1, rawSelectOp, o.warmUp));
  const rawSelect1 = await measure('raw SELECT by pk, 1 at a time', Math.round(o.reads / 3), 1, rawSelectOp);
  const rawPrepared1 = await measure('raw SELECT by pk prepared, 1 at a time', Math.round(o.reads / 3), 1, rawPreparedOp);
  const fhirRead1 = await measure('FHIR read, 1 at a time', Math.round(o.reads / 3), 1, fhirReadOp);
  const rawSelect = await measure('raw SELECT by pk', o.reads, o.concurrency, rawSelectOp);
  const fhirRead = await measure('FHIR read', o.reads, o.concurrency, fhirReadOp);

  warmUps.push(await warmUp('FHIR update', o.concurrency, ops.fhirUpdate, o.warmUp), await warmUp('raw UPDATE', o.concurrency, ops.rawUpdate, o.warmUp));
  const rawUpdate = await measure('raw UPDATE by pk', o.updates, o.concurrency, ops.rawUpdate);
  startWriteProfile();
  const fhirUpdate = await measure('FHIR update', o.updates, o.concurrency, ops.fhirUpdate);
  const updateProfile = stopWriteProfile();
  // Where a write's time goes, per stage (see src/storage/write-profile.ts).
  console.log(createProfile?.format('profile of FHIR create'));
  console.log(updateProfile?.format('profile of FHIR update'));
  console.log(warmUpText(warmUps));

  // FHIR XML (src/http/fhir-formats.ts) beside the same operations in JSON: what the conversion at
  // the HTTP edge costs (no aim).
  const xmlHeaders = { ...headers, accept: 'application/fhir+xml' };
  const fhirReadXmlOp = async (i: number) => {
    const { type, id } = fhirIds[i % fhirIds.length];
    const res = await o.app.http.inject({ method: 'GET', url: `/fhir/${type}/${id}`, headers: xmlHeaders });
    if (res.statusCode !== 200 || !res.body.startsWith('<')) throw new Error(`XML read failed: ${res.statusCode}`);
  };
  await warmUp('FHIR read as XML', 1, fhirReadXmlOp, o.warmUp);
  await warmUp('FHIR create from XML', o.concurrency, ops.fhirCreateXml, o.warmUp);
  const [xmlRead1, jsonRead1] = await alternated({ name: 'FHIR read as XML, 1 at a time', operation: fhirReadXmlOp }, { name: 'FHIR read, 1 at a time (again)', operation: fhirReadOp }, Math.round(o.reads / 12), 2, 1);
  const [xmlCreate, jsonCreate] = await alternated({ name: 'FHIR create from XML', operation: ops.fhirCreateXml }, { name: 'FHIR create (again)', operation: ops.fhirCreate }, Math.round(o.creates / 8), 2, o.concurrency);

  await ops.dropRaw();
  return [
    compare('create vs INSERT', fhirCreateM, rawInsert, { text: 'throughput ≥ 0.5 × raw', met: (c) => c.throughputRatio >= 0.5 }),
    compare('read vs SELECT by pk (1 in flight)', fhirRead1, rawSelect1, { text: 'p50 ≤ 2 × raw', met: (c) => c.p50Ratio <= 2 }),
    compare('read vs prepared SELECT by pk (1 in flight)', fhirRead1, rawPrepared1),
    compare(`read vs SELECT by pk (${o.concurrency} in flight)`, fhirRead, rawSelect),
    compare('update vs UPDATE by pk', fhirUpdate, rawUpdate),
    compare('read as FHIR XML vs read as JSON (1 in flight)', xmlRead1, jsonRead1),
    compare('create from FHIR XML vs create from JSON', xmlCreate, jsonCreate),
  ];
}

/**
 * The create and update figures with the audit trail ON (an app built with
 * AUDIT_EVENTS=on): every request also records an AuditEvent, written by the audit log's own
 * path. Each measurement ends when the audit backlog is written (`audit.flush()`), so the
 * figure includes the audit writes. Reported beside the audit-off figures, without an aim of
 * its own (the audit bench owns the audit overhead).
 */
export async function benchAuditedWrites(o: Omit<CrudBenchOptions, 'reads'>): Promise<Comparison[]> {
  const ops = await writeOps(o);
  const flushed = (run: (i: number) => Promise<void>, count: number) => {
    let done = 0;
    return async (i: number) => {
      await run(i);
      // The last operation to finish waits for the AuditEvents of all of them.
      if (++done === count) await o.app.audit.flush();
    };
  };
  // Warm-up to steady state (see `warmUp`), the AuditEvents of the warm-up written before the clock starts.
  await warmUp('FHIR create, audit on', o.concurrency, ops.fhirCreate, o.warmUp);
  await o.app.audit.flush();
  await warmUp('raw INSERT', o.concurrency, ops.rawCreate, o.warmUp);
  const rawInsert = await measure('raw INSERT', o.creates, o.concurrency, ops.rawCreate);
  const fhirCreate: Measurement = await measure('FHIR create, audit on', o.creates, o.concurrency, flushed(ops.fhirCreate, o.creates));
  await warmUp('FHIR update, audit on', o.concurrency, ops.fhirUpdate, o.warmUp);
  await o.app.audit.flush();
  await warmUp('raw UPDATE', o.concurrency, ops.rawUpdate, o.warmUp);
  const rawUpdate = await measure('raw UPDATE by pk', o.updates, o.concurrency, ops.rawUpdate);
  const fhirUpdate = await measure('FHIR update, audit on', o.updates, o.concurrency, flushed(ops.fhirUpdate, o.updates));
  await ops.dropRaw();
  return [compare('create vs INSERT, AUDIT_EVENTS=on', fhirCreate, rawInsert), compare('update vs UPDATE by pk, AUDIT_EVENTS=on', fhirUpdate, rawUpdate)];
}
