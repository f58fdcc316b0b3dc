/**
 * `npm run loadtest`: the server as a separate process on a real socket, driven by autocannon
 * with a hospital-like mix (reads, searches, creates, updates, transactions, history) at a
 * fixed rate (seed NFR: 100 requests/s, p95 < 500 ms, p99 < 2 s; our aim p95 < 50 ms), then at
 * the highest rate the box sustains. Prints p50 / p95 / p99 per operation and errors.
 *
 *   npm run loadtest                                   100 rps for 10 min, then 60 s flat out
 *   npm run loadtest -- --rate 200 --duration 120      other figures
 *   npm run loadtest -- --short                        CI form: 50 rps for 15 s, 10 s flat out
 *   DATABASE_URL=postgres://… npm run loadtest         on PostgreSQL (a schema of its own)
 *
 * The server runs with its defaults (audit trail and notifications on) except the per-client
 * API limit, which 100 rps from one client would reach (API_RATE_LIMIT_PER_CLIENT: 6000/min).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import autocannon from 'autocannon';
import type { Bundle, BundleEntry, Observation } from 'fhir/r4.js';
import pg from 'pg';

export interface LoadtestOptions {
  rate: number;
  durationSeconds: number;
  maxDurationSeconds: number;
  connections: number;
  /** Synthea patient bundles loaded before the run. */
  patients: number;
  log?: (line: string) => void;
}

export interface PhaseResult {
  phase: string;
  targetRate?: number;
  seconds: number;
  requests: number;
  achievedRps: number;
  errors: number;
  non2xx: number;
  timeouts: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  byOperation: Record<string, { count: number; p50: number; p95: number; p99: number; non2xx: number }>;
}

type Operation = 'read-patient' | 'read-observation' | 'search-observations' | 'search-patients' | 'search-encounters' | 'create-observation' | 'update-patient' | 'transaction' | 'history';

/** The mix, in per-mille (sums to 1000): mostly reads and searches, as an EHR integration does. */
const MIX: Array<[Operation, number]> = [
  ['read-patient', 200],
  ['read-observation', 150],
  ['search-observations', 170],
  ['search-patients', 100],
  ['search-encounters', 80],
  ['create-observation', 150],
  ['update-patient', 50],
  ['transaction', 50],
  ['history', 50],
];

const SHARED = resolve(process.cwd(), '../shared/data/synthea');

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

interface Server {
  child: ChildProcess;
  base: string;
  token: string;
  schema?: string;
  stop: () => Promise<void>;
}

async function startServer(): Promise<Server> {
  const port = await freePort();
  const client = { id: 'loadtest', secret: randomBytes(18).toString('base64url') };
  const schema = process.env.DATABASE_URL ? `loadtest_${randomBytes(4).toString('hex')}` : undefined;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    BASE_URL: `http://127.0.0.1:${port}`,
    DATA_DIR: 'memory',
    LOG_LEVEL: 'warn',
    HL7_MLLP_PORT: '0',
    FHIR_BOOTSTRAP_CLIENT_ID: client.id,
    FHIR_BOOTSTRAP_CLIENT_SECRET: client.secret,
    ACCESS_TOKEN_TTL_SECONDS: '3600',
    API_RATE_LIMIT_PER_CLIENT: '0',
    ...(schema ? { DATABASE_SCHEMA: schema } : {}),
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited: ${stderr}`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the server did not become ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const res = await fetch(`${base}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=client_credentials&client_id=${client.id}&client_secret=${client.secret}&scope=system/*.*`,
  });
  if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
  const token = ((await res.json()) as { access_token: string }).access_token;
  return {
    child,
    base,
    token,
    schema,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      if (schema && process.env.DATABASE_URL) {
        const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await c.end();
      }
    },
  };
}

interface Population {
  patients: string[];
  observations: string[];
  codes: string[];
  families: string[];
  observationTemplate: Observation;
}

/** Loads the two infrastructure batches and `count` patient transactions over HTTP. */
async function loadPopulation(server: Server, count: number): Promise<Population> {
  const files = readdirSync(SHARED).filter((f) => f.endsWith('.json.gz')).sort();
  const chosen = [...files.filter((f) => f.startsWith('0-')), ...files.filter((f) => !f.startsWith('0-')).slice(0, count)];
  const patients: string[] = [];
  const observations: string[] = [];
  const codes = new Set<string>();
  const families = new Set<string>();
  let template: Observation | undefined;
  for (const file of chosen) {
    const bundle = JSON.parse(gunzipSync(readFileSync(join(SHARED, file))).toString('utf8')) as Bundle;
    const res = await fetch(`${server.base}/fhir`, { method: 'POST', headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/fhir+json' }, body: JSON.stringify(bundle) });
    if (!res.ok) throw new Error(`loading ${file}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    const answer = (await res.json()) as Bundle;
    (bundle.entry ?? []).forEach((entry: BundleEntry, k) => {
      const location = answer.entry?.[k]?.response?.location ?? '';
      const id = /^(?:[A-Za-z]+)\/([^/]+)/.exec(location)?.[1];
      const r = entry.resource;
      if (!r || !id) return;
      if (r.resourceType === 'Patient') {
        patients.push(id);
        for (const n of r.name ?? []) if (n.family) families.add(n.family);
      }
      if (r.resourceType === 'Observation' && observations.length < 5_000) {
        observations.push(id);
        const code = r.code?.coding?.[0]?.code;
        if (code) codes.add(code);
        template ??= r;
      }
    });
  }
  if (!template || patients.length === 0) throw new Error('no Patient / Observation loaded');
  const { id: _id, meta: _meta, ...rest } = template;
  return { patients, observations, codes: [...codes], families: [...families], observationTemplate: rest as Observation };
}

function pick<T>(list: readonly T[]): T {
  return list[Math.floor(Math.random() * list.length)];
}

function chooseOperation(): Operation {
  let roll = Math.floor(Math.random() * 1000);
  for (const [op, weight] of MIX) {
    if (roll < weight) return op;
    roll -= weight;
  }
  return 'read-patient';
}

/** One request of the mix as autocannon wants it. */
function requestFor(op: Operation, p: Population): { method: string; path: string; body?: string } {
  const patient = pick(p.patients);
  switch (op) {
    case 'read-patient':
      return { method: 'GET', path: `/fhir/Patient/${patient}` };
    case 'read-observation':
      return { method: 'GET', path: `/fhir/Observation/${pick(p.observations)}` };
    case 'search-observations':
      return { method: 'GET', path: `/fhir/Observation?patient=${patient}&code=${encodeURIComponent(pick(p.codes))}&_sort=-date&_count=20` };
    case 'search-patients':
      return { method: 'GET', path: `/fhir/Patient?family=${encodeURIComponent(pick(p.families).slice(0, 4))}&_count=20` };
    case 'search-encounters':
      return { method: 'GET', path: `/fhir/Encounter?patient=${patient}&_sort=-date&_count=10` };
    case 'create-observation':
      return { method: 'POST', path: '/fhir/Observation', body: JSON.stringify({ ...p.observationTemplate, subject: { reference: `Patient/${patient}` }, effectiveDateTime: new Date().toISOString() }) };
    case 'update-patient':
      // A small JSON Patch ('add' sets the element whether or not the patient had it).
      return { method: 'PATCH', path: `/fhir/Patient/${patient}`, body: JSON.stringify([{ op: 'add', path: '/active', value: Math.random() < 0.5 }]) };
    case 'transaction':
      return {
        method: 'POST',
        path: '/fhir',
        body: JSON.stringify({
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [0, 1, 2].map((k) => ({
            fullUrl: `urn:uuid:${randomBytes(16).toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')}`,
            resource: { ...p.observationTemplate, subject: { reference: `Patient/${patient}` }, effectiveDateTime: new Date(Date.now() - k * 60_000).toISOString() },
            request: { method: 'POST', url: 'Observation' },
          })),
        }),
      };
    case 'history':
      return { method: 'GET', path: `/fhir/Patient/${patient}/_history?_count=10` };
  }
}

async function runPhase(server: Server, population: Population, phase: string, seconds: number, connections: number, rate?: number): Promise<PhaseResult> {
  const samples = new Map<Operation, number[]>();
  const failures = new Map<Operation, number>();
  const all: number[] = [];
  const headers = { authorization: `Bearer ${server.token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' };
  let finish!: (r: autocannon.Result) => void;
  let fail!: (e: unknown) => void;
  const finished = new Promise<autocannon.Result>((res, rej) => ((finish = res), (fail = rej)));
  const instance = autocannon({
    url: server.base,
    connections,
    duration: seconds,
    ...(rate ? { overallRate: rate } : {}),
    timeout: 30,
    headers,
    requests: [
      {
        setupRequest: (request, context) => {
          const op = chooseOperation();
          const r = requestFor(op, population);
          (context as { op?: Operation }).op = op;
          // Headers in full: a request's own headers replace the instance's.
          return { ...request, method: r.method as 'GET', path: r.path, body: r.body, headers: { ...headers, ...(r.method === 'PATCH' ? { 'content-type': 'application/json-patch+json' } : {}) } };
        },
      },
    ],
  }, (error, result) => (error ? fail(error) : finish(result)));
  instance.on('response', (client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    // One request in flight per connection: its context still holds the operation answered.
    const op = (client as { requestIterator?: { context?: { op?: Operation } } }).requestIterator?.context?.op ?? 'read-patient';
    if (!samples.has(op)) samples.set(op, []);
    samples.get(op)!.push(responseTime);
    all.push(responseTime);
    if (statusCode < 200 || statusCode >= 300) failures.set(op, (failures.get(op) ?? 0) + 1);
  });
  const result = await finished;
  all.sort((a, b) => a - b);
  const byOperation: PhaseResult['byOperation'] = {};
  for (const [op, list] of [...samples.entries()].sort()) {
    list.sort((a, b) => a - b);
    byOperation[op] = { count: list.length, p50: percentile(list, 50), p95: percentile(list, 95), p99: percentile(list, 99), non2xx: failures.get(op) ?? 0 };
  }
  return {
    phase,
    targetRate: rate,
    seconds,
    requests: result.requests.total,
    achievedRps: result.requests.total / seconds,
    errors: result.errors,
    non2xx: result.non2xx,
    timeouts: result.timeouts,
    latencyMs: { p50: percentile(all, 50), p95: percentile(all, 95), p99: percentile(all, 99), max: all[all.length - 1] ?? 0 },
    byOperation,
  };
}

function printPhase(r: PhaseResult, log: (line: string) => void): void {
  log(`\n${r.phase}: ${r.requests} requests in ${r.seconds} s = ${r.achievedRps.toFixed(1)} rps${r.targetRate ? ` (target ${r.targetRate})` : ''}; errors ${r.errors}, non-2xx ${r.non2xx}, timeouts ${r.timeouts}`);
  log(`  all: p50 ${r.latencyMs.p50.toFixed(1)} ms, p95 ${r.latencyMs.p95.toFixed(1)} ms, p99 ${r.latencyMs.p99.toFixed(1)} ms, max ${r.latencyMs.max.toFixed(0)} ms`);
  for (const [op, s] of Object.entries(r.byOperation)) {
    log(`  ${op.padEnd(20)} n=${String(s.count).padStart(6)}  p50 ${s.p50.toFixed(1).padStart(7)}  p95 ${s.p95.toFixed(1).padStart(7)}  p99 ${s.p99.toFixed(1).padStart(7)} ms${s.non2xx ? `  non-2xx ${s.non2xx}` : ''}`);
  }
}

/** Starts a server, loads data, runs the fixed-rate phase and the flat-out phase. */
export async function runLoadtest(o: LoadtestOptions): Promise<{ fixed: PhaseResult; max: PhaseResult; loadedPatients: number }> {
  const log = o.log ?? ((line: string) => console.log(line));
  const server = await startServer();
  try {
    const t0 = Date.now();
    const population = await loadPopulation(server, o.patients);
    log(`loaded ${population.patients.length} patients (${population.observations.length} observations sampled) in ${((Date.now() - t0) / 1000).toFixed(1)} s on ${process.env.DATABASE_URL ? 'PostgreSQL' : 'the embedded database'}`);
    const fixed = await runPhase(server, population, `fixed rate ${o.rate} rps`, o.durationSeconds, o.connections, o.rate);
    printPhase(fixed, log);
    const max = await runPhase(server, population, 'highest rate (no target)', o.maxDurationSeconds, o.connections);
    printPhase(max, log);
    const nfr = fixed.latencyMs.p95 < 500 && fixed.latencyMs.p99 < 2000;
    log(`\nseed NFR at ${o.rate} rps (p95 < 500 ms, p99 < 2 s): ${nfr ? 'met' : 'NOT met'}; aim p95 < 50 ms: ${fixed.latencyMs.p95 < 50 ? 'met' : 'NOT met'} (p95 ${fixed.latencyMs.p95.toFixed(1)} ms)`);
    return { fixed, max, loadedPatients: population.patients.length };
  } finally {
    await server.stop();
  }
}

function argValue(name: string): string | undefined {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 ? process.argv[k + 1] : undefined;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.dirname ?? '', 'loadtest.ts')) {
  const short = process.argv.includes('--short');
  const options: LoadtestOptions = {
    rate: Number(argValue('rate') ?? (short ? 50 : 100)),
    durationSeconds: Number(argValue('duration') ?? (short ? 15 : 600)),
    maxDurationSeconds: Number(argValue('max-duration') ?? (short ? 10 : 60)),
    connections: Number(argValue('connections') ?? 16),
    patients: Number(argValue('patients') ?? (short ? 3 : 20)),
  };
  runLoadtest(options).then(
    (r) => process.exit(r.fixed.errors + r.fixed.non2xx + r.max.errors > 0 ? 1 : 0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
