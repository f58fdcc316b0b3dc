/**
 * The server process of the HTTP benchmark (bench/http.ts forks it, so the load generator does
 * not share the server's event loop). It builds the real app on the database it is given,
 * listens on 127.0.0.1 (ephemeral port) beside a minimal "raw" fastify server answering the same
 * requests with plain SQL on the same connection pool, seeds both, and on request measures the
 * same operations through fastify inject in this process, for the inject-vs-socket comparison.
 *
 * Environment (set by bench/http.ts): DATABASE_URL / DATABASE_SCHEMA (or neither: PGlite in
 * memory), FHIR_BOOTSTRAP_CLIENT_ID / _SECRET, BENCH_HTTP_PATIENTS, BENCH_HTTP_SAMPLES.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { sql } from 'kysely';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { measureFor } from './harness.js';
import { httpOps, httpSearchQueries, SAMPLE_COUNT, SAMPLE_TYPES, type FromServer, type HttpOperation, type ToServer } from './http-ops.js';
import { syntheaResources, withoutServerFields } from './samples.js';
import { loadPopulation } from './search-load.js';

const EXPECTED: Record<HttpOperation, number> = { create: 201, read: 200, search: 200 };

function send(message: FromServer): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const started = performance.now();
  const patients = Number(process.env.BENCH_HTTP_PATIENTS ?? 500);
  const samples = Number(process.env.BENCH_HTTP_SAMPLES ?? SAMPLE_COUNT);
  const app = await buildApp(loadConfig({ ...process.env, DATA_DIR: 'memory', LOG_LEVEL: 'silent', ACCESS_TOKEN_TTL_SECONDS: '3600', HOST: '127.0.0.1', API_RATE_LIMIT_PER_CLIENT: '0', API_RATE_LIMIT_PER_IP: '0' }));
  const db = app.database.db;
  const tokenRes = await app.http.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=client_credentials&client_id=${process.env.FHIR_BOOTSTRAP_CLIENT_ID}&client_secret=${process.env.FHIR_BOOTSTRAP_CLIENT_SECRET}&scope=system/*.*`,
  });
  const seedToken = (tokenRes.json() as { access_token: string }).access_token;

  // Resources to read: the same JSON stored by the FHIR server and in the raw table.
  await sql`DROP TABLE IF EXISTS bench_http_raw`.execute(db);
  await sql`CREATE TABLE bench_http_raw (id text PRIMARY KEY, content jsonb NOT NULL)`.execute(db);
  const bodies = syntheaResources(SAMPLE_TYPES, samples).map(withoutServerFields);
  const stored: Array<[string, string, string]> = new Array(bodies.length);
  const seed = async (k: number) => {
    const body = bodies[k]!;
    const res = await app.http.inject({
      method: 'POST',
      url: `/fhir/${body.resourceType}`,
      headers: { authorization: `Bearer ${seedToken}`, 'content-type': 'application/fhir+json' },
      payload: JSON.stringify(body),
    });
    if (res.statusCode !== 201) throw new Error(`seeding failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
    const id = (res.json() as { id: string }).id;
    const rawId = randomUUID();
    await sql`INSERT INTO bench_http_raw (id, content) VALUES (${rawId}, ${res.body}::jsonb)`.execute(db);
    stored[k] = [body.resourceType, id, rawId];
  };
  // Eight at a time: seeding is set-up, not measured.
  for (let k = 0; k < bodies.length; k += 8) await Promise.all(bodies.slice(k, k + 8).map((_, j) => seed(k + j)));
  // The search population (Patients, Practitioners, Encounters, ~10 Observations per Patient).
  const practitioners = Math.max(20, Math.round(patients / 200));
  await loadPopulation(app.store, { practitioners: [0, practitioners], patients: [0, patients], practitionerTotal: practitioners }, { batch: 2000, inFlight: 2 });
  const tables = await sql<{ t: string }>`SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema()`.execute(db);
  await sql`VACUUM (ANALYZE) ${sql.join(tables.rows.map((t) => sql.id(t.t)))}`.execute(db);
  const observations = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM resource WHERE resource_type = 'Observation'`.execute(db)).rows[0]?.n ?? 0);

  // The baseline: what a minimal hand-written JSON-over-HTTP service on the same tables does.
  const raw = Fastify({ logger: false });
  raw.addContentTypeParser(['application/fhir+json', 'application/json'], { parseAs: 'string' }, (_req, body, done) => done(null, body));
  raw.post<{ Params: { type: string }; Body: string }>('/raw/:type', async (req, reply) => {
    const id = randomUUID();
    await sql`INSERT INTO bench_http_raw (id, content) VALUES (${id}, ${req.body}::jsonb)`.execute(db);
    return reply.code(201).header('location', `/raw/${req.params.type}/${id}`).send();
  });
  raw.get<{ Params: { type: string; id: string } }>('/raw/:type/:id', async (req, reply) => {
    const r = await sql<{ json: string }>`SELECT content::text AS json FROM bench_http_raw WHERE id = ${req.params.id}`.execute(db);
    if (r.rows.length === 0) return reply.code(404).send();
    return reply.type('application/json').send(r.rows[0]!.json);
  });
  const queries = httpSearchQueries(patients);
  raw.get<{ Params: { k: string; i: string } }>('/raw/search/:k/:i', async (req) => {
    const q = queries[Number(req.params.k)]!;
    const results: unknown[][] = [];
    for (const s of q.sql(Number(req.params.i))) results.push((await s.execute(db)).rows);
    return { results };
  });

  await app.http.listen({ host: '127.0.0.1', port: 0 });
  await raw.listen({ host: '127.0.0.1', port: 0 });
  const url = (addr: AddressInfo | string | null) => `http://127.0.0.1:${(addr as AddressInfo).port}`;

  const ops = httpOps({ bodies, stored, patients });
  const close = async () => {
    await raw.close();
    await app.close();
    process.exit(0);
  };
  process.on('disconnect', () => void close());
  process.on('message', (m: ToServer) => {
    if (m.kind === 'close') {
      void close();
      return;
    }
    void (async () => {
      const headers = { authorization: `Bearer ${m.token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' };
      let non2xx = 0;
      const measurement = await measureFor(`inject ${m.op}`, m.seconds, m.concurrency, async (n) => {
        const r = ops.fhir[m.op](n);
        const res = await app.http.inject({ method: r.method, url: r.path, headers, payload: r.body });
        if (res.statusCode !== EXPECTED[m.op]) non2xx++;
      });
      send({ kind: 'measurement', measurement, non2xx });
    })().catch((e: unknown) => send({ kind: 'error', message: e instanceof Error ? e.message : String(e) }));
  });
  send({ kind: 'ready', fhirUrl: url(app.http.server.address()), rawUrl: url(raw.server.address()), stored, observations, setupSeconds: (performance.now() - started) / 1000 });
}

main().catch((e: unknown) => {
  send({ kind: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  process.exit(1);
});
