import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle, Patient } from 'fhir/r4.js';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

/**
 * The real server process (`src/main.ts`) on a real socket with the embedded database on
 * disk: data survives a restart, SIGTERM lets in-flight requests finish (contract: npm start).
 */
const dataDir = mkdtempSync(join(tmpdir(), 'fhir-data-'));
const client = { id: 'proc-client', secret: 'proc-secret-for-this-test-only' };
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

function startServer(port: number): Promise<ServerProcess> {
  return startServerProcess(
    port,
    {
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      FHIR_BOOTSTRAP_CLIENT_ID: client.id,
      FHIR_BOOTSTRAP_CLIENT_SECRET: client.secret,
      // The server's defaults: the embedded database, no Redis, audit and notifications as configured.
      BASE_URL: undefined,
      DATABASE_URL: undefined,
      REDIS_URL: undefined,
      AUDIT_EVENTS: process.env.AUDIT_EVENTS,
      NOTIFICATIONS: process.env.NOTIFICATIONS,
    },
  ).then((server) => {
    children.push(server.child);
    return server;
  });
}

async function token(base: string): Promise<string> {
  const res = await fetch(`${base}/auth/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials&scope=system/*.*',
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

describe('server process (contract: npm start, DATA_DIR)', () => {
  it('keeps data across restarts, finishes in-flight requests on SIGTERM, logs no PHI', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const first = await startServer(port);
    const accessToken = await token(base);
    const auth = { authorization: `Bearer ${accessToken}`, 'content-type': 'application/fhir+json' };
    const secretName = 'Zyxwvutsrq';
    const created = await fetch(`${base}/fhir/Patient`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ resourceType: 'Patient', name: [{ family: secretName }], birthDate: '1971-07-07' }),
    });
    expect(created.status).toBe(201);
    const patient = (await created.json()) as Patient;
    const search = await fetch(`${base}/fhir/Patient?family=${secretName}`, { headers: auth });
    expect(search.status).toBe(200);

    // A transaction large enough to still be running when SIGTERM arrives.
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: Array.from({ length: 300 }, (_, i) => ({
        resource: { resourceType: 'Observation', status: 'final', code: { text: `obs ${i}` }, subject: { reference: `Patient/${patient.id}` } },
        request: { method: 'POST', url: 'Observation' },
      })) as Bundle['entry'],
    };
    const inFlight = fetch(`${base}/fhir`, { method: 'POST', headers: { ...auth, prefer: 'return=minimal' }, body: JSON.stringify(bundle) });
    await new Promise((r) => setTimeout(r, 50));
    first.child.kill('SIGTERM');
    const response = await inFlight;
    expect(response.status).toBe(200);
    const entries = ((await response.json()) as Bundle).entry ?? [];
    expect(entries).toHaveLength(300);
    expect(await first.exited).toBe(0);
    expect(first.output()).not.toContain(secretName);
    expect(first.output()).not.toContain('1971-07-07');

    const second = await startServer(port);
    // The signing key lives in the database: a token from before the restart still works.
    const read = await fetch(`${base}/fhir/Patient/${patient.id}`, { headers: { authorization: `Bearer ${accessToken}` } });
    expect(read.status).toBe(200);
    expect(((await read.json()) as Patient).name?.[0].family).toBe(secretName);
    const observations = await fetch(`${base}/fhir/Observation?subject=Patient/${patient.id}&_summary=count`, { headers: { authorization: `Bearer ${accessToken}` } });
    expect(((await observations.json()) as Bundle).total).toBe(300);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 180_000);
});
