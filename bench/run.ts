/**
 * `npm run bench`: every figure beside a raw baseline measured in the same run, printed as a
 * ratio and written to bench/report-<timestamp>.json. Uses DATABASE_URL when set (each section
 * in a schema of its own, dropped afterwards), else the embedded database in memory.
 *
 * Sections: crud, export, ingest, search (default: all; search needs DATABASE_URL and takes
 * ~15 minutes). Choose with `npm run bench -- crud,export` or BENCH_SECTIONS=crud,export.
 * BENCH_INGEST_COPIES (default 9 on PostgreSQL) and BENCH_SEARCH_PATIENTS (default 100000)
 * size the long sections.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join, resolve } from 'node:path';
import type { Bundle, Resource } from 'fhir/r4.js';
import pg from 'pg';
import { buildApp, type ServerApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { benchCrud } from './crud.js';
import { benchExport, printExportBench } from './export.js';
import { printComparisons } from './harness.js';
import { benchIngest } from './ingest.js';
import { benchSearch } from './search.js';

const SHARED = resolve(process.cwd(), '../shared/data');
const SECTIONS = ['crud', 'export', 'ingest', 'search'] as const;
type Section = (typeof SECTIONS)[number];

function synthea(types: string[], limit: number): Resource[] {
  const dir = join(SHARED, 'synthea');
  const out: Resource[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json.gz') && !f.startsWith('0-'))) {
    const bundle = JSON.parse(gunzipSync(readFileSync(join(dir, file))).toString('utf8')) as Bundle;
    // References as a loaded server holds them: urn:uuid:X → Type/X.
    const typeOf = new Map((bundle.entry ?? []).map((e) => [e.fullUrl ?? '', e.resource?.resourceType ?? '']));
    for (const e of bundle.entry ?? []) {
      if (!e.resource || !types.includes(e.resource.resourceType)) continue;
      const text = JSON.stringify(e.resource).replace(/"urn:uuid:([0-9a-f-]{36})"/g, (m, id: string) => {
        const type = typeOf.get(`urn:uuid:${id}`);
        return type ? `"${type}/${id}"` : m;
      });
      out.push(JSON.parse(text) as Resource);
      if (out.length >= limit) return out;
    }
  }
  return out;
}

/** A fresh app (own schema on PostgreSQL) with a token source, closed and dropped afterwards. */
async function withApp<T>(work: (app: ServerApp, token: () => Promise<string>) => Promise<T>): Promise<T> {
  const databaseUrl = process.env.DATABASE_URL;
  const schema = databaseUrl ? `bench_${randomBytes(4).toString('hex')}` : undefined;
  const secret = randomBytes(18).toString('base64url');
  const app = await buildApp(
    loadConfig({
      ...process.env,
      DATA_DIR: 'memory',
      LOG_LEVEL: 'silent',
      FHIR_BOOTSTRAP_CLIENT_ID: 'bench',
      FHIR_BOOTSTRAP_CLIENT_SECRET: secret,
      ...(schema ? { DATABASE_SCHEMA: schema } : {}),
    }),
  );
  let current = { token: '', at: 0 };
  // Long sections outlive one access token: fetch a fresh one every minute.
  const token = async () => {
    if (Date.now() - current.at > 60_000) {
      const res = await app.http.inject({
        method: 'POST',
        url: '/auth/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: `grant_type=client_credentials&client_id=bench&client_secret=${secret}&scope=system/*.*`,
      });
      current = { token: (res.json() as { access_token: string }).access_token, at: Date.now() };
    }
    return current.token;
  };
  try {
    return await work(app, token);
  } finally {
    await app.close();
    if (schema && databaseUrl) {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    }
  }
}

function chosenSections(): Section[] {
  const raw = process.argv[2] ?? process.env.BENCH_SECTIONS ?? SECTIONS.join(',');
  const chosen = raw.split(',').map((s) => s.trim()) as Section[];
  for (const s of chosen) if (!SECTIONS.includes(s)) throw new Error(`unknown bench section "${s}"; choose from ${SECTIONS.join(', ')}`);
  return chosen;
}

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  const database = databaseUrl ? 'postgresql' : 'pglite (embedded, memory)';
  const report: Record<string, unknown> = { startedAt: new Date().toISOString(), database, node: process.version };
  const sections = chosenSections();

  if (sections.includes('crud')) {
    report.crud = await withApp(async (app, token) => {
      const scale = databaseUrl ? 1 : 0.5;
      const rows = await benchCrud({
        app,
        token: await token(),
        samples: synthea(['Patient', 'Observation'], 400),
        creates: Math.round(3000 * scale),
        reads: Math.round(6000 * scale),
        updates: Math.round(2000 * scale),
        concurrency: 8,
      });
      printComparisons(`CRUD on ${database} (concurrency 8, fastify inject, Synthea Patient/Observation JSON)`, rows);
      return rows;
    });
  }
  if (sections.includes('export')) {
    report.export = await withApp(async (app, token) => {
      const result = await benchExport({ app, token: await token(), patients: databaseUrl ? 100 : 20 });
      printExportBench(`Bulk Data export on ${database}`, result);
      return result;
    });
  }
  if (sections.includes('ingest')) {
    report.ingest = await withApp(async (app, token) => {
      const copies = Number(process.env.BENCH_INGEST_COPIES ?? (databaseUrl ? 9 : 0));
      const rows = await benchIngest({ app, token, concurrency: 2, copies });
      printComparisons(`Transaction ingest on ${database} (Synthea Bundles, concurrency 2)`, rows);
      return rows;
    });
  }
  if (sections.includes('search')) {
    if (!databaseUrl) {
      console.log('\nsearch: skipped (needs DATABASE_URL: it loads 1,000,000 Observations into PostgreSQL)');
    } else {
      report.search = await benchSearch({ databaseUrl, patients: Number(process.env.BENCH_SEARCH_PATIENTS ?? 100_000) });
    }
  }

  const file = join('bench', `report-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(report, null, 2));
  console.log(`\nreport written to ${file}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
