/**
 * Real-HTTP benchmark: the server runs in a process of its own (bench/http-server.ts) listening
 * on 127.0.0.1, and autocannon drives it over sockets from this process: create (POST a Synthea
 * Patient/Observation, Prefer: return=minimal), read (GET by id, rotating over 400 stored
 * resources) and search (the search mix of bench/search-queries.ts over a small population) at
 * 1, 8 and 32 connections. Beside each figure: the same requests to a minimal fastify server in
 * the same process answering with plain SQL on the same connection pool (raw HTTP + SQL), and
 * the same requests through fastify inject inside the server process (what the other sections
 * measure), for the same wall time.
 *
 * `benchHttp()` is what `npm run bench` calls (section "http").
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import type { Measurement } from './harness.js';
import { HTTP_OPERATIONS, httpOps, SAMPLE_COUNT, SAMPLE_TYPES, type BenchRequest, type FromServer, type HttpOperation, type ToServer } from './http-ops.js';
import { syntheaResources, withoutServerFields } from './samples.js';
import { loadNow } from './environment.js';
import { cpuText, processCpuSince, processCpuSnapshot, type CpuPerOperation } from './cpu.js';

export interface HttpBenchOptions {
  /** PostgreSQL URL; undefined: PGlite in memory in the server process */
  databaseUrl?: string;
  /** seconds per measurement (each op × connections × {FHIR HTTP, raw HTTP, inject}) */
  seconds?: number;
  connections?: number[];
  /** patients of the search population (~10 Observations each) */
  patients?: number;
  /** Synthea Patient/Observation resources stored for reads (and sent as create bodies) */
  samples?: number;
  log?: (line: string) => void;
}

export interface HttpFigures {
  requests: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** responses that were not the expected 2xx, plus socket errors and timeouts */
  non2xx: number;
  /**
   * CPU per request of the server process (as `nodeMicros`: the load generator, in this process,
   * is not counted) and of a local PostgreSQL (bench/cpu.ts); absent off Linux and for inject.
   */
  cpu?: CpuPerOperation;
}

export interface HttpRow {
  op: HttpOperation;
  connections: number;
  fhir: HttpFigures;
  raw: HttpFigures;
  inject: HttpFigures;
  /** FHIR over HTTP / raw HTTP + SQL, throughput */
  vsRaw: number;
  /** FHIR over HTTP p50 / raw HTTP + SQL p50 */
  p50VsRaw: number;
  /** FHIR over HTTP / FHIR through inject, throughput: what the socket costs */
  vsInject: number;
  aim?: string;
  met?: boolean;
}

export interface HttpBenchReport {
  database: string;
  seconds: number;
  observations: number;
  searchQueries: string[];
  setupSeconds: number;
  loadAverage: { start: string; end: string };
  rows: HttpRow[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** One autocannon run; latencies taken from each response (autocannon's histogram keeps whole ms). */
async function cannon(base: string, next: (n: number) => BenchRequest, connections: number, seconds: number, headers: Record<string, string>): Promise<HttpFigures> {
  let n = 0;
  const latencies: number[] = [];
  const options: autocannon.Options = {
    url: base,
    connections,
    duration: seconds,
    headers,
    requests: [
      {
        setupRequest: (req) => {
          const r = next(n++);
          return { ...req, method: r.method, path: r.path, body: r.body };
        },
      },
    ],
  };
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(options, (error, r) => (error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(r)));
    instance.on('response', (_client, _status, _bytes, ms) => latencies.push(ms));
  });
  latencies.sort((a, b) => a - b);
  return {
    requests: result.requests.total,
    perSecond: result.requests.total / result.duration,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    non2xx: result.non2xx + result.errors + result.timeouts,
  };
}

function fromMeasurement(m: Measurement, non2xx: number): HttpFigures {
  return { requests: m.operations, perSecond: m.perSecond, p50Ms: m.p50Ms, p99Ms: m.p99Ms ?? m.p95Ms, non2xx };
}

/** Request/response with the server process, one at a time. */
class ServerProcess {
  private waiting?: { resolve: (m: FromServer) => void; reject: (e: Error) => void };
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: FromServer) => {
      const w = this.waiting;
      this.waiting = undefined;
      if (!w) return;
      if (m.kind === 'error') w.reject(new Error(`bench server: ${m.message}`));
      else w.resolve(m);
    });
    child.on('exit', (code) => this.waiting?.reject(new Error(`bench server exited (${code})`)));
  }

  static async start(env: NodeJS.ProcessEnv): Promise<{ server: ServerProcess; ready: Extract<FromServer, { kind: 'ready' }> }> {
    // The server process runs the TypeScript sources with the loader this process runs under
    // (`npm run bench` starts it through tsx).
    const child = fork(join(import.meta.dirname, 'http-server.ts'), [], { execArgv: process.execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const server = new ServerProcess(child);
    const ready = await server.next();
    if (ready.kind !== 'ready') throw new Error(`bench server: unexpected ${ready.kind}`);
    return { server, ready };
  }

  /** Runs a load against the server and adds the server process's CPU per request to its figures. */
  async withCpu(run: () => Promise<HttpFigures>): Promise<HttpFigures> {
    const start = this.child.pid === undefined ? undefined : processCpuSnapshot(this.child.pid);
    const figures = await run();
    const cpu = start ? processCpuSince(start, figures.requests) : undefined;
    return cpu ? { ...figures, cpu } : figures;
  }

  next(): Promise<FromServer> {
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  async request(m: ToServer): Promise<FromServer> {
    const reply = this.next();
    this.child.send(m);
    return reply;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ kind: 'close' } satisfies ToServer);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

const f = (n: number, d = 1) => n.toFixed(d);

export async function benchHttp(o: HttpBenchOptions): Promise<HttpBenchReport> {
  const log = o.log ?? ((s: string) => console.log(s));
  const seconds = o.seconds ?? 4;
  const connections = o.connections ?? [1, 8, 32];
  const patients = o.patients ?? 500;
  const samples = o.samples ?? SAMPLE_COUNT;
  const schema = o.databaseUrl ? `bench_http_${randomBytes(4).toString('hex')}` : '';
  const secret = randomBytes(18).toString('base64url');
  const loadStart = loadNow();
  log(`\nhttp: starting the server process (${o.databaseUrl ? 'PostgreSQL' : 'PGlite in memory'}; seeding ${samples} resources and ${patients} patients for search)`);
  const { server, ready } = await ServerProcess.start({
    ...process.env,
    DATABASE_URL: o.databaseUrl ?? '',
    DATABASE_SCHEMA: schema,
    FHIR_BOOTSTRAP_CLIENT_ID: 'bench',
    FHIR_BOOTSTRAP_CLIENT_SECRET: secret,
    BENCH_HTTP_PATIENTS: String(patients),
    BENCH_HTTP_SAMPLES: String(samples),
  });
  try {
    const tokenRes = await fetch(`${ready.fhirUrl}/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=bench&client_secret=${secret}&scope=system/*.*`,
    });
    if (!tokenRes.ok) throw new Error(`token request failed: ${tokenRes.status}`);
    const token = ((await tokenRes.json()) as { access_token: string }).access_token;
    const bodies = syntheaResources(SAMPLE_TYPES, samples).map(withoutServerFields);
    const ops = httpOps({ bodies, stored: ready.stored, patients });
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' };
    log(`  ready in ${f(ready.setupSeconds)} s: ${ready.observations} Observations; search mix over HTTP: ${ops.searchNames.join(', ')}`);

    const rows: HttpRow[] = [];
    for (const op of HTTP_OPERATIONS) {
      // Warm-up of both servers (JIT, plans, pools), not reported: 3 s, a few thousand requests,
      // what V8 needs to reach a FHIR path's steady state (bench/harness.ts warmUp).
      await cannon(ready.fhirUrl, ops.fhir[op], 8, 3, headers);
      await cannon(ready.rawUrl, ops.raw[op], 8, 3, headers);
      for (const c of connections) {
        const fhir = await server.withCpu(() => cannon(ready.fhirUrl, ops.fhir[op], c, seconds, headers));
        const raw = await server.withCpu(() => cannon(ready.rawUrl, ops.raw[op], c, seconds, headers));
        const reply = await server.request({ kind: 'inject', op, concurrency: c, seconds, token });
        if (reply.kind !== 'measurement') throw new Error(`bench server: unexpected ${reply.kind}`);
        const row: HttpRow = {
          op,
          connections: c,
          fhir,
          raw,
          inject: fromMeasurement(reply.measurement, reply.non2xx),
          vsRaw: fhir.perSecond / raw.perSecond,
          p50VsRaw: fhir.p50Ms / raw.p50Ms,
          vsInject: fhir.perSecond / reply.measurement.perSecond,
        };
        // The aims of the inject figures, held to over a socket as well.
        if (op === 'create' && c === 8) {
          row.aim = 'create throughput ≥ 0.5 × raw HTTP + INSERT';
          row.met = row.vsRaw >= 0.5;
        } else if (op === 'read' && c === 1) {
          row.aim = 'read p50 (1 connection) ≤ 2 × raw HTTP + SELECT';
          row.met = row.p50VsRaw <= 2;
        }
        rows.push(row);
        log(`  ${op} × ${c}: FHIR ${f(fhir.perSecond)}/s, raw ${f(raw.perSecond)}/s, inject ${f(reply.measurement.perSecond)}/s`);
      }
    }
    const report: HttpBenchReport = {
      database: o.databaseUrl ? 'postgresql' : 'pglite (embedded, memory)',
      seconds,
      observations: ready.observations,
      searchQueries: ops.searchNames,
      setupSeconds: ready.setupSeconds,
      loadAverage: { start: loadStart, end: loadNow() },
      rows,
    };
    printHttpBench(report);
    return report;
  } finally {
    await server.stop();
    if (o.databaseUrl) {
      const client = new pg.Client({ connectionString: o.databaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    }
  }
}

export function printHttpBench(r: HttpBenchReport): void {
  console.log(
    `\nReal HTTP on ${r.database} (server in its own process on 127.0.0.1, autocannon over sockets, ${r.seconds} s per figure; ` +
      `search: ${r.searchQueries.length} mix queries in turn over ${r.observations} Observations; load average ${r.loadAverage.start} → ${r.loadAverage.end})`,
  );
  console.log(
    ['op', 'conns', 'FHIR HTTP req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'raw HTTP+SQL req/s', 'raw p50', 'raw p99', 'FHIR/raw', 'p50 FHIR/raw', 'FHIR server CPU µs/req (+ db)', 'raw server CPU µs/req (+ db)', 'inject req/s', 'inject p50', 'inject p99', 'HTTP/inject', 'aim'].join(' | '),
  );
  for (const x of r.rows) {
    console.log(
      [
        x.op,
        String(x.connections),
        f(x.fhir.perSecond),
        f(x.fhir.p50Ms, 2),
        f(x.fhir.p99Ms, 2),
        String(x.fhir.non2xx),
        f(x.raw.perSecond),
        f(x.raw.p50Ms, 2),
        f(x.raw.p99Ms, 2),
        f(x.vsRaw, 2),
        f(x.p50VsRaw, 2),
        cpuText(x.fhir.cpu),
        cpuText(x.raw.cpu),
        f(x.inject.perSecond),
        f(x.inject.p50Ms, 2),
        f(x.inject.p99Ms, 2),
        f(x.vsInject, 2),
        x.aim ? `${x.aim}: ${x.met ? 'met' : 'NOT met'}` : '',
      ].join(' | '),
    );
  }
}
