import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Observation, Subscription } from 'fhir/r4.js';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { startReceiver, type Receiver } from './subscriptions-helpers.js';
import { dropTestSchema } from '../support/test-app.js';

/**
 * Real server processes (src/main.ts) delivering to a real local receiver:
 *  - a crash (SIGKILL) right after writes were committed loses no event: after the restart
 *    every one is delivered (at least once);
 *  - with two processes on one PostgreSQL and Redis, each event is delivered exactly once.
 */
const client = { id: 'subs-proc-client', secret: 'subs-proc-secret-for-this-test-only' };
const children: ChildProcess[] = [];
const receivers: Receiver[] = [];
const dataDir = mkdtempSync(join(tmpdir(), 'fhir-subs-'));
const schema = process.env.DATABASE_URL ? `t_${randomBytes(6).toString('hex')}` : undefined;

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const r of receivers) await r.close();
  rmSync(dataDir, { recursive: true, force: true });
  await dropTestSchema(schema);
});

type Server = ServerProcess;

async function startServer(entry: 'src/main.ts' | 'src/worker.ts' = 'src/main.ts'): Promise<Server> {
  const env: NodeJS.ProcessEnv = {
    DATA_DIR: dataDir,
    FHIR_BOOTSTRAP_CLIENT_ID: client.id,
    FHIR_BOOTSTRAP_CLIENT_SECRET: client.secret,
    // Notifications as configured (the server's default), not switched off.
    NOTIFICATIONS: process.env.NOTIFICATIONS,
    SUBSCRIPTION_POLL_MS: '100',
    SUBSCRIPTION_BACKOFF_MS: '100',
    SUBSCRIPTION_TIMEOUT_MS: '2000',
    ...(schema ? { DATABASE_SCHEMA: schema } : {}),
  };
  // The worker has no HTTP: ready when it says so.
  const server = await startServerProcess(await freePort(), env, entry === 'src/worker.ts' ? { entry, readyOutput: 'worker started' } : { entry });
  children.push(server.child);
  return server;
}

async function kill(server: Server, signal: NodeJS.Signals): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill(signal);
  await exited;
}

async function token(base: string): Promise<string> {
  const res = await fetch(`${base}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString('base64')}` },
    body: 'grant_type=client_credentials&scope=system/*.*',
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

async function post(base: string, accessToken: string, resource: Subscription | Observation): Promise<string> {
  const res = await fetch(`${base}/fhir/${resource.resourceType}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

const observation = (code: string): Observation => ({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code }] } });

function subscription(code: string, endpoint: string): Subscription {
  return { resourceType: 'Subscription', status: 'requested', reason: 'process test', criteria: `Observation?code=http://loinc.org|${code}`, channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' } };
}

/** Ids of the resources the receiver was sent (PUT …/Observation/{id}). */
const deliveredIds = (r: Receiver) => r.accepted().map((x) => x.path.split('/').pop()!);

describe('subscription delivery across processes', () => {
  it('loses no committed event when the server is killed, and delivers them after the restart', { timeout: 400_000 }, async () => {
    // A slow receiver: most deliveries are still pending when the process dies.
    const r = await startReceiver(() => 200, 300);
    receivers.push(r);
    const first = await startServer();
    const accessToken = await token(first.base);
    await post(first.base, accessToken, subscription('9001-1', r.url));
    const ids: string[] = [];
    await Promise.all(Array.from({ length: 30 }, async () => ids.push(await post(first.base, accessToken, observation('9001-1')))));
    await kill(first, 'SIGKILL');
    const before = new Set(deliveredIds(r));
    const second = await startServer();
    // BullMQ hands a dead process's jobs back after the delivery's stall recovery (about 14 s here)
    const deadline = Date.now() + 90_000;
    while (!ids.every((id) => deliveredIds(r).includes(id)) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    expect(ids.filter((id) => !deliveredIds(r).includes(id)), `delivered before the kill: ${before.size}\n${second.output()}`).toEqual([]);
    await kill(second, 'SIGTERM');
  });

  it.skipIf(!process.env.DATABASE_URL || !process.env.REDIS_URL)(
    'two server processes and `npm run worker` on one PostgreSQL and Redis: 100 matching writes give exactly 100 deliveries',
    { timeout: 400_000 },
    async () => {
      const r = await startReceiver();
      receivers.push(r);
      const a = await startServer();
      const b = await startServer();
      const worker = await startServer('src/worker.ts');
      const tokenA = await token(a.base);
      const tokenB = await token(b.base);
      await post(a.base, tokenA, subscription('9002-2', r.url));
      // let both processes see the Subscription (the dispatcher is the lease holder, either one)
      await new Promise((res) => setTimeout(res, 500));
      const ids: string[] = [];
      for (let round = 0; round < 10; round++) {
        await Promise.all(
          Array.from({ length: 10 }, async (_, i) => {
            const [base, t] = i % 2 === 0 ? [a.base, tokenA] : [b.base, tokenB];
            ids.push(await post(base, t, observation('9002-2')));
          }),
        );
      }
      await r.waitFor(100, 60_000);
      // anything duplicated would arrive within the retry / poll delays
      await new Promise((res) => setTimeout(res, 3000));
      const got = deliveredIds(r);
      expect(got).toHaveLength(100);
      expect(new Set(got).size).toBe(100);
      expect([...new Set(got)].sort()).toEqual([...ids].sort());
      await kill(a, 'SIGTERM');
      await kill(b, 'SIGTERM');
      await kill(worker, 'SIGTERM');
      expect(worker.child.exitCode).toBe(0);
    },
  );
});
