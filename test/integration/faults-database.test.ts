import type { Bundle } from 'fhir/r4.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 17 §3: the database goes away under load (a restart or failover ends every session).
 * Simulated by ending this server's own sessions (application_name `fhir-server:<schema>`), so
 * the machine's PostgreSQL and other test files are untouched. Every request is answered 2xx or
 * 503 (never 500, never a hang), every acknowledged write is there afterwards, a transaction is
 * all or nothing, and the server serves normally once the database is back.
 */
describe.skipIf(!process.env.DATABASE_URL)('PostgreSQL sessions ended under load', () => {
  let t: TestApp;
  let admin: pg.Client;
  beforeAll(async () => {
    t = await startTestApp({ DATABASE_POOL_SIZE: '4' });
    admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  const endSessions = async (): Promise<number> => {
    const res = await admin.query('SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) x', [`fhir-server:${t.config.databaseSchema}`]);
    return res.rows[0].n as number;
  };

  it('writes and transactions during repeated session kills: 2xx or 503 only, acknowledged data all there', async () => {
    const acknowledged: string[] = [];
    const transactions: Array<{ ok: boolean; family: string }> = [];
    const statuses = new Map<number, number>();
    let running = true;
    let n = 0;
    const writer = async (w: number) => {
      while (running) {
        const k = n++;
        if (k % 5 === 0) {
          const family = `Tx${w}-${k}`;
          const bundle: Bundle = {
            resourceType: 'Bundle',
            type: 'transaction',
            entry: [
              { fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(k).padStart(12, '0')}`, resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient' } },
              { resource: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'urn:fault-test', code: family }] }, subject: { reference: `urn:uuid:00000000-0000-4000-8000-${String(k).padStart(12, '0')}` } }, request: { method: 'POST', url: 'Observation' } },
            ],
          };
          const res = await t.request({ method: 'POST', url: '/fhir', payload: bundle });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          transactions.push({ ok: res.statusCode === 200, family });
        } else {
          const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: `W${w}-${k}` }] } });
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          if (res.statusCode === 201) acknowledged.push((res.json() as { id: string }).id);
        }
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    let killed = 0;
    for (let round = 0; round < 4; round++) {
      await new Promise((r) => setTimeout(r, 400));
      killed += await endSessions();
    }
    await new Promise((r) => setTimeout(r, 400));
    running = false;
    await Promise.all(writers);

    expect(killed).toBeGreaterThan(0);
    const seen = [...statuses.keys()].sort();
    expect(seen.every((s) => s === 200 || s === 201 || s === 503), `statuses ${JSON.stringify([...statuses])}`).toBe(true);
    expect(acknowledged.length).toBeGreaterThan(10);

    // Every acknowledged create is there.
    for (let i = 0; i < acknowledged.length; i += 50) {
      const ids = acknowledged.slice(i, i + 50);
      const res = await t.request({ method: 'GET', url: `/fhir/Patient?_id=${ids.join(',')}&_count=50&_elements=id` });
      expect(res.statusCode).toBe(200);
      expect((res.json() as Bundle).entry?.length ?? 0).toBe(ids.length);
    }
    // Transactions: all or nothing — a refused one left no Observation, an accepted one both.
    for (const tx of transactions) {
      const res = await t.request({ method: 'GET', url: `/fhir/Observation?code=urn:fault-test|${tx.family}&_summary=count` });
      expect(res.statusCode).toBe(200);
      const count = (res.json() as Bundle).total;
      if (tx.ok) expect(count, tx.family).toBe(1);
      else expect(count, tx.family).toBeLessThanOrEqual(1);
      const patients = await t.request({ method: 'GET', url: `/fhir/Patient?family:exact=${tx.family}&_summary=count` });
      expect((patients.json() as Bundle).total, `patient and observation of ${tx.family} together`).toBe(count);
    }
    // And afterwards the server is healthy again.
    const after = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'After' }] } });
    expect(after.statusCode).toBe(201);
  }, 120_000);
});
