/**
 * `npm run import` as a user runs it: scripts/import.ts in a process of its own on a Synthea
 * folder, into an empty database (a schema of its own on PostgreSQL, dropped afterwards; PGlite
 * in memory). The figure is the tool's own "N resources written in S s" (start-up excluded) and
 * the wall time of the whole command; bench/run.ts sets it beside the transaction ingest and
 * multi-row INSERT figures of the ingest section measured in the same run.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';

export interface ImportBenchResult {
  resources: number;
  /** the import's own time (reading, parsing, writing), as it prints it */
  seconds: number;
  perSecond: number;
  /** the whole command, process start-up and migrations included */
  wallSeconds: number;
}

export async function benchImport(o: { databaseUrl?: string; dir: string }): Promise<ImportBenchResult> {
  const schema = o.databaseUrl ? `bench_import_${randomBytes(4).toString('hex')}` : '';
  const started = performance.now();
  try {
    const output = await new Promise<string>((resolve, reject) => {
      // The loader this process runs under (tsx, as `npm run import` uses).
      const child = spawn(process.execPath, [...process.execArgv, join('scripts', 'import.ts'), '--quiet', o.dir], {
        env: { ...process.env, DATABASE_URL: o.databaseUrl ?? '', DATABASE_SCHEMA: schema, DATA_DIR: 'memory', LOG_LEVEL: 'silent' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`npm run import exited ${code}:\n${text.slice(-2000)}`))));
    });
    const m = /(\d+) resources written in ([\d.]+) s/.exec(output);
    if (!m) throw new Error(`npm run import: no summary line in its output:\n${output.slice(-2000)}`);
    const resources = Number(m[1]);
    const seconds = Number(m[2]);
    return { resources, seconds, perSecond: resources / seconds, wallSeconds: (performance.now() - started) / 1000 };
  } finally {
    if (o.databaseUrl) {
      const client = new pg.Client({ connectionString: o.databaseUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    }
  }
}
