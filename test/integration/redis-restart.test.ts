import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle, Subscription } from 'fhir/r4.js';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.js';
import { redisServerAvailable, startRedis, stopRedis } from '../support/redis-server.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { startReceiver, type Receiver } from './subscriptions-helpers.js';

/**
 * Issue 17 §3: a Redis restart is survived. The test runs a redis-server of its own on a free
 * port (the machine's shared Redis is never touched), without persistence, so the restart loses
 * every queue: the worst case. Meanwhile a server process takes a stream of writes and reads.
 * Decided behaviour: the API rate limits fail open (requests answered while their counters are
 * unreachable, counted again after the reconnect); job deliveries missed while Redis was away are
 * queued again from the database after the reconnect; nothing crashes; every acknowledged write
 * is there. The server listens on a real socket; it runs in the test's process (a process
 * start costs more CI time than the whole scenario), so a crash would fail the test run.
 */
const dirs: string[] = [];
const children: ChildProcess[] = [];
let receiver: Receiver | undefined;
let app: TestApp | undefined;

afterAll(async () => {
  await app?.close();
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await receiver?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.skipIf(!redisServerAvailable)('Redis restart under requests (issue 17 §3)', () => {
  it('rate limits fail open and count again, deliveries missed while Redis was away are queued after the reconnect, no acknowledged write lost', { timeout: 240_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fhir-redis-restart-'));
    dirs.push(dataDir);
    const redisPort = await freePort();
    let redis = await startRedis(redisPort, dataDir);
    children.push(redis);
    receiver = await startReceiver();
    app = await startTestApp({
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      // Limits on (kept in this Redis), high enough never to refuse this test's stream.
      API_RATE_LIMIT_PER_CLIENT: '100000',
      API_RATE_LIMIT_PER_IP: '100000',
      SUBSCRIPTION_POLL_MS: '100',
      SUBSCRIPTION_BACKOFF_MS: '200',
    });
    await app.server.http.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.http.server.address();
    const server = { base: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}` };
    const token = app.token;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' };
    const code = `redis-${randomBytes(3).toString('hex')}`;
    const subscription: Subscription = { resourceType: 'Subscription', status: 'requested', reason: 'redis restart test', criteria: `Observation?code=urn:redis-test|${code}`, channel: { type: 'rest-hook', endpoint: receiver.url, payload: 'application/fhir+json' } };
    const sub = await fetch(`${server.base}/fhir/Subscription`, { method: 'POST', headers, body: JSON.stringify(subscription) });
    expect(sub.status, await sub.clone().text()).toBe(201);

    const acknowledged: string[] = [];
    const failures: string[] = [];
    const limitHeaders: Array<{ phase: string; remaining: number | undefined }> = [];
    let phase = 'before';
    let sent = 0;
    let running = true;
    const stream = (async () => {
      for (let k = 0; running; k++) {
        sent++;
        try {
          const res =
            k % 2 === 0
              ? await fetch(`${server.base}/fhir/Observation`, { method: 'POST', headers, body: JSON.stringify({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'urn:redis-test', code }] } }) })
              : await fetch(`${server.base}/fhir/Observation?code=urn:redis-test|${code}&_count=1`, { headers });
          const remaining = res.headers.get('x-ratelimit-remaining');
          limitHeaders.push({ phase, remaining: remaining === null ? undefined : Number(remaining) });
          if (res.status === 201) acknowledged.push(((await res.json()) as { id: string }).id);
          else if (res.status !== 200) failures.push(`${phase}: ${res.status} ${(await res.text()).slice(0, 200)}`);
          else await res.arrayBuffer();
        } catch (e) {
          failures.push(`${phase}: ${(e as Error).message}`);
        }
      }
    })();

    await new Promise((r) => setTimeout(r, 1_000));
    phase = 'redis down';
    const beforeDown = acknowledged.length;
    await stopRedis(redis);
    await new Promise((r) => setTimeout(r, 2_000));
    const writtenWhileDown = acknowledged.length - beforeDown;
    redis = await startRedis(redisPort, dataDir);
    children.push(redis);
    phase = 'after restart';
    // BullMQ and the rate-limit client reconnect with backoff (at most a couple of seconds).
    await new Promise((r) => setTimeout(r, 3_000));
    running = false;
    await stream;

    expect((await fetch(`${server.base}/healthz`)).status).toBe(200);
    expect(failures, `sent ${sent}`).toEqual([]);
    expect(acknowledged.length).toBeGreaterThan(5);
    expect(writtenWhileDown).toBeGreaterThan(0);
    // Counting again after the reconnect: the remaining allowance falls from request to request.
    const after = limitHeaders.filter((h) => h.phase === 'after restart' && h.remaining !== undefined).map((h) => h.remaining!);
    expect(after.length, JSON.stringify(limitHeaders.slice(-5))).toBeGreaterThan(3);
    expect(after[after.length - 1]).toBeLessThan(after[0]);

    // Every acknowledged write is there.
    const found = await fetch(`${server.base}/fhir/Observation?code=urn:redis-test|${code}&_summary=count`, { headers });
    expect(((await found.json()) as Bundle).total).toBe(acknowledged.length);
    // Every one is delivered, those written while Redis was away included (re-queued from the
    // database by the dispatcher's recovery sweep, every 10 s).
    const deadline = Date.now() + 60_000;
    const delivered = () => new Set(receiver!.accepted().map((r) => r.path.split('/').pop()!));
    while (acknowledged.some((id) => !delivered().has(id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(acknowledged.filter((id) => !delivered().has(id))).toEqual([]);
  });
});
