import { randomBytes } from 'node:crypto';
import type { Bundle } from 'fhir/r4.js';
import { afterAll, describe, expect, it } from 'vitest';
import { TestBalancer, type Answer } from '../support/balancer.js';
import { freePort } from '../support/ports.js';
import { startServerProcess, processToken, type ServerProcess } from '../support/server-process.js';
import { dropTestSchema } from '../support/test-app.js';

/**
 * Issue 17 §7 (seed: zero-downtime deployments): a rolling restart of several server processes
 * on one PostgreSQL (and Redis when set) drops no request. The test's client is the load
 * balancer (test/support/balancer.ts): health checks on /readyz, keep-alive connections, a resend
 * only when a connection was refused. Each process in turn gets SIGTERM, drains (not ready,
 * `Connection: close` on every response), closes its listener, finishes what is in flight and
 * exits; a new process starts on its port. Every request sent must be answered 2xx, and every
 * acknowledged create be readable afterwards.
 */
const schema = `t_${randomBytes(6).toString('hex')}`;
const servers: ServerProcess[] = [];

afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  await dropTestSchema(schema);
});

// The drain outlasts the balancer's health check (every 100 ms, 1 s timeout) with room for a
// loaded machine: the balancer stops sending before the listener closes.
// One public URL for all processes, as behind a balancer: tokens name it as their issuer.
const env = (publicPort: number): NodeJS.ProcessEnv => ({ DATABASE_SCHEMA: schema, DATABASE_POOL_SIZE: '4', SHUTDOWN_DRAIN_MS: '2000', BASE_URL: `http://127.0.0.1:${publicPort}` });

describe.skipIf(!process.env.DATABASE_URL)('rolling restart (issue 17 §7; several processes need PostgreSQL, skipped on the embedded database)', () => {
  // Two processes keep CI time low (each start transpiles the server); the second restart runs
  // while the first process is itself freshly restarted.
  it('zero-downtime deployments: two processes restarted one by one under a steady stream drop no request', { timeout: 600_000 }, async () => {
    const ports = [await freePort(), await freePort()];
    // The first start migrates the schema, then the other starts.
    for (const p of ports) servers.push(await startServerProcess(p, env(ports[0])));
    const token = await processToken(servers[0].base);
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' };
    const lb = new TestBalancer(ports);
    lb.start();

    const family = `Roll${randomBytes(3).toString('hex')}`;
    const acknowledged: string[] = [];
    const failures: string[] = [];
    let sent = 0;
    let answered2xx = 0;
    let running = true;
    const record = (what: string, answer: Answer | Error) => {
      if (answer instanceof Error) failures.push(`${what}: ${(answer as NodeJS.ErrnoException).code ?? answer.message}`);
      else if (answer.status >= 200 && answer.status < 300) answered2xx++;
      else failures.push(`${what}: ${answer.status} on :${answer.port} ${answer.body.slice(0, 200)}`);
    };
    const worker = async (w: number) => {
      for (let k = 0; running; k++) {
        sent++;
        const kind = k % 3;
        try {
          if (kind === 0 || acknowledged.length === 0) {
            const res = await lb.send('POST', '/fhir/Patient', headers, JSON.stringify({ resourceType: 'Patient', name: [{ family, given: [`W${w}K${k}`] }] }));
            record('create', res);
            if (res.status === 201) acknowledged.push((JSON.parse(res.body) as { id: string }).id);
          } else if (kind === 1) {
            record('read', await lb.send('GET', `/fhir/Patient/${acknowledged[k % acknowledged.length]}`, headers));
          } else {
            record('search', await lb.send('GET', `/fhir/Patient?family=${family}&_count=5`, headers));
          }
        } catch (e) {
          record(kind === 0 ? 'create' : 'read/search', e as Error);
        }
        // A steady stream, not a flood: the restarting processes share the machine's cores.
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const workers = [0, 1].map(worker);

    let closeHeaderSeen = false;
    for (let i = 0; i < servers.length; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const old = servers[i];
      // Keep-alive connections to the old process exist now (the stream uses every instance).
      old.child.kill('SIGTERM');
      // While draining it still answers, out of rotation, and closes keep-alive connections.
      await new Promise((r) => setTimeout(r, 200));
      const during = await lb.direct(old.port, 'GET', '/healthz');
      if (during.status === 200 && during.headers.connection === 'close') closeHeaderSeen = true;
      const ready = await lb.direct(old.port, 'GET', '/readyz').catch(() => undefined);
      expect(ready?.status ?? 503).toBe(503);
      expect(await old.exited).toBe(0);
      const t0 = Date.now();
      servers[i] = await startServerProcess(old.port, env(ports[0]));
      console.info(`rolling restart: process ${i} replaced, ready after ${Date.now() - t0} ms`);
    }
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await Promise.all(workers);
    lb.stop();

    expect(closeHeaderSeen, 'a draining process answers keep-alive clients with Connection: close').toBe(true);
    expect(failures, `sent ${sent}, answered 2xx ${answered2xx}, resent after refusal ${lb.refusedRetries}`).toEqual([]);
    expect(answered2xx).toBe(sent);
    expect(sent).toBeGreaterThan(100);
    console.info(`rolling restart: sent ${sent}, answered 2xx ${answered2xx}, resent after refusal ${lb.refusedRetries}, creates ${acknowledged.length}`);

    // Every acknowledged create is there, on every (new) process.
    const check = await processToken(servers[1].base, 'system/Patient.rs');
    for (let i = 0; i < acknowledged.length; i += 100) {
      const ids = acknowledged.slice(i, i + 100);
      const res = await fetch(`${servers[(i / 100) % servers.length].base}/fhir/Patient?_id=${ids.join(',')}&_count=100&_elements=id`, { headers: { authorization: `Bearer ${check}` } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as Bundle).entry?.length ?? 0).toBe(ids.length);
    }
    for (const s of servers) s.child.kill('SIGTERM');
    await Promise.all(servers.map((s) => s.exited));
  });
});
