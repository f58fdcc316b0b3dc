import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { buildApp, type ServerApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';

export interface BenchApp {
  app: ServerApp;
  /** The bootstrap client's secret (client id `bench`), for `client_credentials` tokens. */
  secret: string;
  /** Closes the app and, on PostgreSQL, drops its schema. */
  close(): Promise<void>;
}

/**
 * A fresh app for one bench section: its own schema on PostgreSQL (dropped at close), an
 * in-memory embedded database otherwise, silent logs, no API rate limits (benchmarks send far
 * more than one client's per-minute limit). `env` overrides the process environment.
 */
export async function openBenchApp(env: Record<string, string> = {}): Promise<BenchApp> {
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
      API_RATE_LIMIT_PER_CLIENT: '0',
      API_RATE_LIMIT_PER_IP: '0',
      ...(schema ? { DATABASE_SCHEMA: schema } : {}),
      ...env,
    }),
  );
  return {
    app,
    secret,
    async close() {
      await app.close();
      if (schema && databaseUrl) {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await client.end();
      }
    },
  };
}
