/**
 * Cost of the audit trail on the request path: reads and searches per second with
 * AUDIT_EVENTS=on beside the same with AUDIT_EVENTS=off, in one process, rounds interleaved
 * so drift (JIT, caches, other load) hits both alike. Embedded database by default, a real
 * PostgreSQL with DATABASE_URL.
 *
 *   npx tsx bench/audit-overhead.ts [seconds-per-round=3] [concurrency=8]
 */
import type { Bundle } from 'fhir/r4.js';
import { startTestApp, type TestApp } from '../test/support/test-app.js';

const seconds = Number(process.argv[2] ?? 3);
const concurrency = Number(process.argv[3] ?? 8);
const ROUNDS = 3;

async function seed(t: TestApp): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < 50; i++) {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: `Bench${i % 10}`, given: ['Audit'] }], birthDate: '1970-01-01' } });
    ids.push((res.json() as { id: string }).id);
  }
  return ids;
}

/** Requests per second over `seconds`, `concurrency` at a time. */
async function throughput(t: TestApp, url: (i: number) => string): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let done = 0;
  const worker = async (w: number) => {
    for (let i = w; Date.now() < end; i += concurrency) {
      const res = await t.request({ method: 'GET', url: url(i) });
      if (res.statusCode !== 200) throw new Error(`${url(i)}: ${res.statusCode} ${res.body.slice(0, 200)}`);
      done++;
    }
  };
  const start = Date.now();
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  return (done * 1000) / (Date.now() - start);
}

async function main(): Promise<void> {
  const on = await startTestApp({ AUDIT_EVENTS: 'on' });
  const off = await startTestApp({ AUDIT_EVENTS: 'off' });
  try {
    const apps = { on: { t: on, ids: await seed(on) }, off: { t: off, ids: await seed(off) } };
    const results: Record<string, Record<'on' | 'off', number[]>> = { read: { on: [], off: [] }, search: { on: [], off: [] } };
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of round % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        const { t, ids } = apps[mode];
        results.read[mode].push(await throughput(t, (i) => `/fhir/Patient/${ids[i % ids.length]}`));
        results.search[mode].push(await throughput(t, (i) => `/fhir/Patient?family=Bench${i % 10}&_count=5`));
        // The writer's backlog is part of the cost: it is drained inside the measured rounds' time budget.
        const flushStart = Date.now();
        await t.server.audit.flush();
        if (mode === 'on') console.log(`round ${round + 1}: audit backlog flushed in ${Date.now() - flushStart} ms`);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const db = process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite';
    console.log(`audit overhead (${db}, ${seconds}s × ${ROUNDS} rounds, concurrency ${concurrency}, fastify inject):`);
    for (const [kind, r] of Object.entries(results)) {
      const a = median(r.on);
      const b = median(r.off);
      console.log(`  ${kind.padEnd(6)} audit on ${a.toFixed(0)}/s   off ${b.toFixed(0)}/s   ratio ${(a / b).toFixed(2)}`);
    }
    const count = await on.request({ method: 'GET', url: '/fhir/AuditEvent?_summary=count' });
    console.log(`  AuditEvents written: ${(count.json() as Bundle).total}; write failures: ${on.server.audit.writeFailures}`);
  } finally {
    await on.close();
    await off.close();
  }
}

await main();
