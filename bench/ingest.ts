/**
 * Ingest speed: the Synthea transaction Bundles POSTed to /fhir (fastify inject: parsing,
 * auth, urn:uuid and conditional reference resolution, validation, index rows, versions) in
 * resources per second, beside a plain multi-row INSERT of the same resource JSON into a bare
 * table (one statement per Bundle) at the same concurrency, in the same run. Then the
 * database is filled with `copies` more copies of the set (fresh ids: every POST creates) and
 * one more copy is timed: the ingest rate once the database holds ten times as much.
 *
 * Exported for bench/run.ts: `benchIngest({ app, token })`; also runnable alone:
 * `DATABASE_URL=… npx tsx bench/ingest.ts` (schema of its own, dropped afterwards).
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle } from 'fhir/r4.js';
import { sql } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { startWriteProfile, stopWriteProfile } from '../src/storage/write-profile.js';
import { compare, measure, type Comparison, type Measurement } from './harness.js';

export interface IngestBenchOptions {
  app: ServerApp;
  /** a bearer token, or a function giving a current one (the 10× fill outlasts a token's lifetime) */
  token: string | (() => Promise<string>);
  /** Bundles in flight at once (FHIR and raw alike) */
  concurrency?: number;
  /** copies of the set loaded before the "10×" measurement (9: the database then holds 10) */
  copies?: number;
  /** Synthea folder (default ../shared/data/synthea) */
  dir?: string;
  log?: (line: string) => void;
}

interface SyntheaSet {
  batches: string[];
  transactions: Array<{ text: string; resources: string[] }>;
  resources: number;
}

/** Bundles posted (and inserted raw) before measuring, to warm caches and the JIT. */
const WARM_UP_BUNDLES = 5;

function loadSet(dir: string): SyntheaSet {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json.gz')).sort();
  const read = (f: string) => gunzipSync(readFileSync(join(dir, f))).toString('utf8');
  const transactions = files
    .filter((f) => !f.startsWith('0-'))
    .map((f) => {
      const text = read(f);
      const bundle = JSON.parse(text) as Bundle;
      return { text, resources: (bundle.entry ?? []).map((e) => JSON.stringify(e.resource)) };
    });
  return {
    batches: files.filter((f) => f.startsWith('0-')).map(read),
    transactions,
    resources: transactions.reduce((n, t) => n + t.resources.length, 0),
  };
}

/** A per-Bundle measurement restated per resource: throughput in resources/s, latency per Bundle. */
function perResource(m: Measurement, resources: number, name: string): Measurement {
  return { ...m, name, operations: resources, perSecond: resources / m.seconds };
}

export async function benchIngest(o: IngestBenchOptions): Promise<Comparison[]> {
  const log = o.log ?? ((line: string) => console.log(line));
  const concurrency = o.concurrency ?? 2;
  const copies = o.copies ?? 9;
  const set = loadSet(o.dir ?? resolve(process.cwd(), '../shared/data/synthea'));
  const db = o.app.database.db;
  const token = typeof o.token === 'string' ? async () => o.token as string : o.token;
  const post = async (text: string) => {
    const headers = { authorization: `Bearer ${await token()}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' };
    const res = await o.app.http.inject({ method: 'POST', url: '/fhir', headers, payload: text });
    if (res.statusCode !== 200) throw new Error(`ingest failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
  };
  const postSet = (name: string) => measure(name, set.transactions.length, concurrency, (i) => post(set.transactions[i].text));

  // Reference data (organisations, practitioners) the transactions point to; not timed.
  for (const text of set.batches) await post(text);
  // Warm-up of the FHIR path (JIT, validator and index definition caches, plan caches): a few
  // Bundles, so the "empty database" figure is not the cost of a cold process.
  for (let i = 0; i < WARM_UP_BUNDLES; i++) await post(set.transactions[i].text);

  const rawRun = async (name: string) => {
    await sql`DROP TABLE IF EXISTS bench_ingest_raw`.execute(db);
    await sql`CREATE TABLE bench_ingest_raw (id text PRIMARY KEY, content jsonb NOT NULL)`.execute(db);
    const rawInsert = async (i: number) => {
      const rows = set.transactions[i].resources;
      const values = sql.join(rows.map((json) => sql`(${randomUUID()}, ${json}::jsonb)`));
      await sql`INSERT INTO bench_ingest_raw (id, content) VALUES ${values}`.execute(db);
    };
    for (let i = 0; i < WARM_UP_BUNDLES; i++) await rawInsert(i);
    await sql`TRUNCATE bench_ingest_raw`.execute(db);
    const m = perResource(await measure('raw', set.transactions.length, concurrency, rawInsert), set.resources, name);
    await sql`DROP TABLE bench_ingest_raw`.execute(db);
    return m;
  };
  log(`ingest: ${set.transactions.length} transaction Bundles, ${set.resources} resources per copy, concurrency ${concurrency}`);
  const raw = await rawRun('multi-row INSERT');
  startWriteProfile();
  const empty = perResource(await postSet('fhir'), set.resources, 'transaction ingest (empty database)');
  // Where a write's time goes, per stage (see src/storage/write-profile.ts).
  log(`  ${stopWriteProfile()?.format('profile of transaction ingest') ?? ''}`);
  log(`  empty database: ${empty.perSecond.toFixed(0)} resources/s (raw ${raw.perSecond.toFixed(0)})`);
  const rows: Comparison[] = [
    compare('transaction Bundles vs multi-row INSERT, empty database (resources/s)', empty, raw, { text: 'throughput ≥ 0.3 × raw', met: (c) => c.throughputRatio >= 0.3 }),
  ];
  if (copies > 0) {
    for (let k = 1; k < copies; k++) {
      const fill = await postSet('fill');
      log(`  filling: copy ${k + 1} of ${copies + 1} at ${(set.resources / fill.seconds).toFixed(0)} resources/s`);
    }
    // The raw baseline again: shows whether the machine itself is slower now than at the start.
    const rawLater = await rawRun('multi-row INSERT (measured again)');
    const full = perResource(await postSet('fhir 10x'), set.resources, `transaction ingest (database holds ${copies + 1}× the set)`);
    log(`  at ${copies + 1}×: ${full.perSecond.toFixed(0)} resources/s (raw ${rawLater.perSecond.toFixed(0)})`);
    rows.push(compare(`transaction Bundles vs multi-row INSERT, database holds ${copies + 1}× (resources/s)`, full, rawLater));
    rows.push(compare(`ingest at ${copies + 1}× vs empty database`, full, empty, { text: 'throughput ≥ 0.5 × empty', met: (c) => c.throughputRatio >= 0.5 }));
  }
  return rows;
}
