/**
 * `npm run bench`: every figure beside a raw baseline measured in the same run, printed as a
 * ratio and written to bench/report-<timestamp>.json. Uses DATABASE_URL when set (in a schema
 * of its own, dropped afterwards), else the embedded database in memory.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join, resolve } from 'node:path';
import type { Bundle, Resource } from 'fhir/r4.js';
import pg from 'pg';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { benchCrud } from './crud.js';
import { printComparisons, type Comparison } from './harness.js';

const SHARED = resolve(process.cwd(), '../shared/data');

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

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  const schema = databaseUrl ? `bench_${randomBytes(4).toString('hex')}` : undefined;
  const clientSecret = randomBytes(18).toString('base64url');
  const config = loadConfig({
    ...process.env,
    DATA_DIR: 'memory',
    LOG_LEVEL: 'silent',
    FHIR_BOOTSTRAP_CLIENT_ID: 'bench',
    FHIR_BOOTSTRAP_CLIENT_SECRET: clientSecret,
    ...(schema ? { DATABASE_SCHEMA: schema } : {}),
  });
  const app = await buildApp(config);
  const report: Record<string, unknown> = {
    startedAt: new Date().toISOString(),
    database: databaseUrl ? 'postgresql' : 'pglite (embedded, memory)',
    node: process.version,
  };
  try {
    const tokenRes = await app.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=client_credentials&client_id=bench&client_secret=${clientSecret}&scope=system/*.*`,
    });
    const token = (tokenRes.json() as { access_token: string }).access_token;
    // Real shapes: Synthea Patients and Observations with their meta.profile, codes and references.
    const samples = synthea(['Patient', 'Observation'], 400);
    const scale = databaseUrl ? 1 : 0.5;
    const crud: Comparison[] = await benchCrud({
      app,
      token,
      samples,
      creates: Math.round(3000 * scale),
      reads: Math.round(6000 * scale),
      updates: Math.round(2000 * scale),
      concurrency: 8,
    });
    printComparisons(`CRUD on ${report.database} (concurrency 8, fastify inject, Synthea Patient/Observation JSON)`, crud);
    report.crud = crud;
  } finally {
    await app.close();
    if (schema && databaseUrl) {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
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
