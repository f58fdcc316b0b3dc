import type { Observation, Subscription } from 'fhir/r4.js';
import { Worker } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import type { ServerApp } from '../src/app.js';
import { cpuSince, cpuSnapshot } from './cpu.js';
import { loadNow } from './environment.js';
import { measure } from './harness.js';

export interface SubscriptionBenchOptions {
  app: ServerApp;
  token: string;
  /** creates per phase */
  writes: number;
  concurrency: number;
  /** measured palindromes (PALINDROME) run one after another; default 3 */
  palindromes?: number;
}

export interface SubscriptionPhase {
  subscriptions: number;
  /** false: the writes match none of the subscriptions (the matching work alone, no deliveries) */
  matching: boolean;
  /** creates per second while the writes ran */
  writesPerSecond: number;
  /** creates per second until the last delivery arrived (the delivery work counted in) */
  drainedPerSecond: number;
  deliveries: number;
  /** CPU time of this process (server, bench client, the receiver thread) per create, in µs: steadier than throughput on a shared host */
  cpuMicrosPerWrite: number;
  /** CPU of a local PostgreSQL's processes per create, in µs (bench/cpu.ts); absent when not seen */
  dbMicrosPerWrite?: number;
}

export interface SubscriptionBenchReport {
  phases: SubscriptionPhase[];
  /** by number of subscriptions: mean over the phases with that number */
  mean: Record<string, { writesPerSecond: number; drainedPerSecond: number; cpuMicrosPerWrite: number; dbMicrosPerWrite?: number }>;
  /** commit (create answered) → receiver, over the phases with subscriptions */
  latency: { p50Ms: number; p95Ms: number; samples: number };
  /**
   * Throughput with 100 subscriptions relative to none (drained): the median over the
   * palindromes of each palindrome's ratio (its two 100-phases' mean over its two 0-phases'
   * mean). Phases minutes apart compared with each other measured the host's other load as much
   * as the subscriptions (one 0-phase at 320/s, the next at 700/s); within a palindrome the
   * drift cancels, and the median drops a palindrome hit by a burst of someone else's work.
   */
  ratio100: number;
  ratio10: number;
  /** the same with 100 subscriptions none of which the writes match: what matching alone costs */
  ratio100Unmatched: number;
  /** the same, on create throughput as clients saw it (deliveries still running in the background) */
  writesRatio100: number;
  /** each palindrome's drained ratio 100 vs 0, in run order */
  ratios100: number[];
  aim: string;
  met: boolean;
  load: string;
}

const CODE_SYSTEM = 'http://example.org/bench-code';
/**
 * One palindrome: [subscriptions, whether the writes match one of them]. The phases with 100
 * subscriptions that no write matches measure the matching alone (no delivery at all).
 */
const PALINDROME: ReadonlyArray<[number, boolean]> = [
  [0, true],
  [10, true],
  [100, false],
  [100, true],
  [100, true],
  [100, false],
  [10, true],
  [0, true],
];

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * The subscribers' endpoint, on a thread of its own: a subscriber is another system, so its work
 * (accepting the request, reading the body) is not charged to the server's event loop, though it
 * still shares the machine's cores. Arrival times (on the shared epoch clock) come back in small
 * batches; the time stamp is taken on arrival, so batching delays no latency figure.
 */
async function startReceiver(onArrival: (id: string, at: number) => void): Promise<{ port: number; close(): Promise<void> }> {
  const code = `
    const { parentPort } = require('node:worker_threads');
    const { createServer } = require('node:http');
    let pending = [];
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        pending.push([(req.url || '').split('/').pop() || '', performance.timeOrigin + performance.now()]);
        res.statusCode = 200;
        res.end();
      });
    });
    const flush = setInterval(() => { if (pending.length) { parentPort.postMessage({ arrivals: pending }); pending = []; } }, 5);
    server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
    parentPort.on('message', () => { clearInterval(flush); if (pending.length) parentPort.postMessage({ arrivals: pending }); server.close(() => parentPort.close()); });
  `;
  const worker = new Worker(code, { eval: true });
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('error', reject);
    worker.on('message', (m: { port?: number; arrivals?: Array<[string, number]> }) => {
      if (m.port !== undefined) resolve(m.port);
      for (const [id, epochMs] of m.arrivals ?? []) onArrival(id, epochMs - performance.timeOrigin);
    });
  });
  return {
    port,
    async close() {
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage('close');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      await worker.terminate();
    },
  };
}

/**
 * Write throughput with 0, 10 and 100 active rest-hook Subscriptions in one run (phases in the
 * order of PALINDROME, so drift in machine load falls on every count alike; that palindrome run
 * `palindromes` times after an unmeasured warm-up), and the delivery latency from the create's
 * answer (the commit) to the receiver (startReceiver).
 *
 * Every Subscription has criteria of its own (`Observation?code=…|bench-i`: no two share a
 * search), and every write matches exactly one of them (bench-0), so the 10 and 100 phases
 * deliver the same number of notifications and differ by the matching work only. In the
 * phases "matching none" the writes carry a code no Subscription names: the matching alone,
 * without a delivery, against the same 100 Subscriptions.
 */
export async function benchSubscriptions(o: SubscriptionBenchOptions): Promise<SubscriptionBenchReport> {
  const arrivals = new Map<string, number>();
  const receiver = await startReceiver((id, at) => {
    if (!arrivals.has(id)) arrivals.set(id, at);
  });
  const endpoint = `http://127.0.0.1:${receiver.port}/hook`;
  const headers = { authorization: `Bearer ${o.token}`, 'content-type': 'application/fhir+json' };
  const subscriptionIds: string[] = [];

  const setSubscriptions = async (n: number) => {
    while (subscriptionIds.length > n) {
      const id = subscriptionIds.pop()!;
      const res = await o.app.http.inject({ method: 'DELETE', url: `/fhir/Subscription/${id}`, headers: { authorization: headers.authorization } });
      if (res.statusCode !== 204 && res.statusCode !== 200) throw new Error(`Subscription delete failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
    }
    while (subscriptionIds.length < n) {
      const i = subscriptionIds.length;
      const sub: Subscription = {
        resourceType: 'Subscription',
        status: 'requested',
        reason: 'bench',
        criteria: `Observation?code=${CODE_SYSTEM}|bench-${i}`,
        channel: { type: 'rest-hook', endpoint, payload: 'application/fhir+json' },
      };
      const res = await o.app.http.inject({ method: 'POST', url: '/fhir/Subscription', headers, payload: JSON.stringify(sub) });
      if (res.statusCode !== 201) throw new Error(`Subscription create failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
      subscriptionIds.push((res.json() as { id: string }).id);
    }
    await o.app.subscriptions.dispatcher?.flush();
  };

  const body = (i: number, matching: boolean): string => {
    const obs: Observation = {
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: CODE_SYSTEM, code: matching ? 'bench-0' : 'bench-none' }] },
      subject: { reference: `Patient/bench-${i % 50}` },
      valueQuantity: { value: i, unit: 'mg', system: 'http://unitsofmeasure.org', code: 'mg' },
    };
    return JSON.stringify(obs);
  };

  const phases: SubscriptionPhase[] = [];
  const latencies: number[] = [];
  const palindromes = Math.max(1, o.palindromes ?? 3);
  let written = 0;
  const runPhase = async (n: number, writes: number, measured: boolean, matching = true) => {
    await setSubscriptions(n);
    const answered = new Map<string, number>();
    const first = written;
    written += writes;
    const cpu0 = cpuSnapshot();
    const t0 = performance.now();
    const m = await measure(`creates with ${n} subscriptions`, writes, o.concurrency, async (i) => {
      const res = await o.app.http.inject({ method: 'POST', url: '/fhir/Observation', headers: { ...headers, prefer: 'return=minimal' }, payload: body(first + i, matching) });
      if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode}`);
      const id = /\/Observation\/([^/]+)\/_history/.exec(String(res.headers.location))?.[1] ?? '';
      answered.set(id, performance.now());
    });
    // Drained: every matching write delivered (phases with subscriptions); writes matching none:
    // every write matched (the dispatcher caught up).
    const deadline = performance.now() + 300_000;
    while (matching && n > 0 && [...answered.keys()].some((id) => !arrivals.has(id)) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (!matching) await o.app.subscriptions.dispatcher?.flush();
    const drainedSeconds = (performance.now() - t0) / 1000;
    const cpu = cpuSince(cpu0, writes);
    let delivered = 0;
    for (const [id, at] of answered) {
      const got = arrivals.get(id);
      if (got === undefined) continue;
      delivered++;
      if (measured) latencies.push(got - at);
    }
    const cpuMicrosPerWrite = cpu.nodeMicros;
    const dbMicrosPerWrite = cpu.dbMicros;
    const drainedPerSecond = n > 0 ? writes / drainedSeconds : m.perSecond;
    if (measured) phases.push({ subscriptions: n, matching, writesPerSecond: m.perSecond, drainedPerSecond, deliveries: delivered, cpuMicrosPerWrite, ...(dbMicrosPerWrite === undefined ? {} : { dbMicrosPerWrite }) });
    console.log(
      `  ${measured ? '' : 'warm-up, '}${n} subscriptions${matching ? '' : ' (writes matching none)'}: ${m.perSecond.toFixed(0)} creates/s, ${drainedPerSecond.toFixed(0)}/s until delivered, ${delivered} deliveries, ` +
        `${cpuMicrosPerWrite.toFixed(0)}${dbMicrosPerWrite === undefined ? '' : ` + ${dbMicrosPerWrite.toFixed(0)} (PostgreSQL)`} µs CPU/create (load ${loadNow()})`,
    );
  };
  try {
    // Unmeasured: the first phase otherwise pays for JIT compilation and cold caches of the
    // write path, and the first phase with subscriptions for those of the delivery path. V8
    // reaches a create's steady state only after a few thousand of them (bench/harness.ts warmUp).
    const warmUp = Math.min(2000, o.writes * 2);
    for (const n of [100, 0]) await runPhase(n, warmUp, false);
    for (let p = 0; p < palindromes; p++) for (const [n, matching] of PALINDROME) await runPhase(n, o.writes, true, matching);
  } finally {
    await setSubscriptions(0).catch(() => undefined);
    await receiver.close();
  }
  const meanOf = (of: readonly SubscriptionPhase[], n: number, key: 'writesPerSecond' | 'drainedPerSecond' | 'cpuMicrosPerWrite' | 'dbMicrosPerWrite', matching = true): number => {
    const with_ = of.filter((p) => p.subscriptions === n && p.matching === matching);
    return with_.reduce((s, p) => s + (p[key] ?? 0), 0) / with_.length;
  };
  const mean: SubscriptionBenchReport['mean'] = {};
  for (const n of [0, 10, 100]) {
    mean[String(n)] = { writesPerSecond: meanOf(phases, n, 'writesPerSecond'), drainedPerSecond: meanOf(phases, n, 'drainedPerSecond'), cpuMicrosPerWrite: meanOf(phases, n, 'cpuMicrosPerWrite') };
    if (phases.every((p) => p.dbMicrosPerWrite !== undefined)) mean[String(n)]!.dbMicrosPerWrite = meanOf(phases, n, 'dbMicrosPerWrite');
  }
  // One ratio per palindrome (its own 0-phases as the reference), then the median.
  const perPalindrome = (n: number, key: 'writesPerSecond' | 'drainedPerSecond', matching = true) =>
    Array.from({ length: palindromes }, (_, p) => {
      const of = phases.slice(p * PALINDROME.length, (p + 1) * PALINDROME.length);
      return meanOf(of, n, key, matching) / meanOf(of, 0, key);
    });
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  };
  latencies.sort((a, b) => a - b);
  const ratios100 = perPalindrome(100, 'drainedPerSecond');
  const ratio100 = median(ratios100);
  const ratio10 = median(perPalindrome(10, 'drainedPerSecond'));
  const ratio100Unmatched = median(perPalindrome(100, 'drainedPerSecond', false));
  const writesRatio100 = median(perPalindrome(100, 'writesPerSecond'));
  return {
    phases,
    mean,
    latency: { p50Ms: percentile(latencies, 50), p95Ms: percentile(latencies, 95), samples: latencies.length },
    ratio100,
    ratio10,
    ratio100Unmatched,
    writesRatio100,
    ratios100,
    aim: '100 active subscriptions cost ≤ 20 % of write throughput (deliveries included)',
    met: ratio100 >= 0.8,
    load: loadNow(),
  };
}
