import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { inject } from 'vitest';
import { buildApp, type ServerApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config/config.js';

export { sharedDataDir as SHARED_DATA } from './shared-data.js';

export const TEST_CLIENT = { id: 'test-client', secret: randomBytes(18).toString('base64url') };

/** Drops a test's own schema on the real PostgreSQL (DATABASE_URL); nothing on the embedded database. */
export async function dropTestSchema(schema: string | undefined): Promise<void> {
  if (!schema || !process.env.DATABASE_URL) return;
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

export interface TestApp {
  server: ServerApp;
  config: Config;
  token: string;
  /** A client_credentials token of the test client for `scope` (e.g. `system/Patient.rs`). */
  tokenFor(scope: string): Promise<string>;
  /** app.inject with the bearer token and FHIR JSON content type filled in. */
  request(options: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/**
 * A server on the embedded database (memory), or on the real PostgreSQL in a schema of its
 * own when DATABASE_URL is set, so test files never see each other's data.
 */
export async function startTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const schema = process.env.DATABASE_URL ? `t_${randomBytes(6).toString('hex')}` : undefined;
  const template = inject('pgliteTemplate');
  const config = loadConfig({
    ...process.env,
    DATA_DIR: 'memory',
    PORT: '8080',
    BASE_URL: 'http://localhost:8080',
    LOG_LEVEL: 'silent',
    FHIR_BOOTSTRAP_CLIENT_ID: TEST_CLIENT.id,
    FHIR_BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT.secret,
    // AuditEvents arrive asynchronously and would change whole-system searches, history and
    // exports under other tests' feet; test/integration/audit.test.ts switches them on.
    AUDIT_EVENTS: 'off',
    // Notifications write Communications and CommunicationRequests after other tests' Appointments
    // and results; test/integration/notifications*.test.ts switch them on.
    NOTIFICATIONS: 'off',
    // Suites send thousands of requests a minute from one client; test/integration/rate-limits.test.ts
    // switches the limits on.
    API_RATE_LIMIT_PER_CLIENT: '0',
    API_RATE_LIMIT_PER_IP: '0',
    ...(schema ? { DATABASE_SCHEMA: schema } : {}),
    // A migrated empty database to start from (test/support/global-setup.ts): no initdb per app.
    ...(template ? { PGLITE_MEMORY_TEMPLATE: template } : {}),
    ...env,
  });
  const server = await buildApp(config);
  const tokenFor = async (scope: string): Promise<string> => {
    const res = await server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}`,
      },
      payload: `grant_type=client_credentials&scope=${encodeURIComponent(scope)}`,
    });
    if (res.statusCode !== 200) throw new Error(`token for ${scope}: ${res.statusCode} ${res.body}`);
    return (res.json() as { access_token: string }).access_token;
  };
  const token = await tokenFor('system/*.*');
  return {
    server,
    config,
    token,
    tokenFor,
    request(options) {
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...(options.headers as Record<string, string>) };
      if (options.payload !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
        headers['content-type'] = 'application/fhir+json';
      }
      const payload = typeof options.payload === 'object' && options.payload !== null && !Buffer.isBuffer(options.payload) ? JSON.stringify(options.payload) : options.payload;
      return server.http.inject({ ...options, headers, payload });
    },
    async close() {
      await server.close();
      await dropTestSchema(schema);
    },
  };
}
