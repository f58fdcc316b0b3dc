import { performance } from 'node:perf_hooks';
import { cpuSince, cpuSnapshot, cpuText, totalCpuMicros, type CpuPerOperation } from './cpu.js';

export interface Measurement {
  name: string;
  operations: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms?: number;
  /** CPU per operation while it ran (bench/cpu.ts) */
  cpu?: CpuPerOperation;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

/**
 * Runs `operation(i)` for i in [0, count) with `concurrency` in flight, timing each call.
 * Throughput is operations over wall time; latencies are per call.
 */
export async function measure(name: string, count: number, concurrency: number, operation: (i: number) => Promise<void>): Promise<Measurement> {
  const latencies: number[] = new Array(count);
  let next = 0;
  const cpu = cpuSnapshot();
  const started = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const t0 = performance.now();
      await operation(i);
      latencies[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name,
    operations: count,
    seconds,
    perSecond: count / seconds,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    cpu: cpuSince(cpu, count),
  };
}

export interface WarmUp {
  name: string;
  operations: number;
  /** Node CPU per operation in the first and in the last warm-up round */
  firstNodeMicros: number;
  lastNodeMicros: number;
}

/**
 * Runs `operations` calls of `operation` before a measurement, in rounds of 500, and notes the
 * Node CPU per call of the first and the last round. V8 optimises a path as long as a FHIR write
 * only after thousands of calls: measured on a fresh app, Node CPU per create fell from ~1,070 µs
 * over the first 1,500 creates to ~450 µs from the fourth 1,500 on (reads ~550 → 260 µs, updates
 * ~630 → 450 µs), so a figure taken after a short warm-up measured the compiler. A fixed count,
 * the same for both sides of a comparison: a stop rule on CPU per round ended too early on a
 * noisy host.
 */
export async function warmUp(name: string, concurrency: number, operation: (i: number) => Promise<void>, operations: number): Promise<WarmUp> {
  const round = 500;
  let first = 0;
  let last = 0;
  for (let done = 0; done < operations; done += round) {
    const count = Math.min(round, operations - done);
    const m = await measure(`${name} (warm-up)`, count, concurrency, (i) => operation(done + i));
    last = m.cpu?.nodeMicros ?? 0;
    if (done === 0) first = last;
  }
  return { name, operations, firstNodeMicros: first, lastNodeMicros: last };
}

/**
 * Two variants of an operation measured in alternating rounds (A B B A …, `rounds` of each),
 * each variant's rounds then taken together: a background pass of the server's own maintenance,
 * or another job on the host, then falls on both alike instead of on whichever ran at that time.
 */
export async function alternated(
  a: { name: string; operation: (i: number) => Promise<void> },
  b: { name: string; operation: (i: number) => Promise<void> },
  perRound: number,
  rounds: number,
  concurrency: number,
): Promise<[Measurement, Measurement]> {
  const results: [Measurement[], Measurement[]] = [[], []];
  let offset = 0;
  for (let r = 0; r < rounds * 2; r++) {
    const which = r % 4 === 0 || r % 4 === 3 ? 0 : 1;
    const variant = which === 0 ? a : b;
    const base = offset;
    results[which].push(await measure(variant.name, perRound, concurrency, (i) => variant.operation(base + i)));
    offset += perRound;
  }
  return [combined(a.name, results[0]), combined(b.name, results[1])];
}

/** Rounds of one variant as one measurement: operations and time summed, latencies and CPU per operation averaged over the rounds. */
function combined(name: string, rounds: readonly Measurement[]): Measurement {
  const operations = rounds.reduce((n, m) => n + m.operations, 0);
  const seconds = rounds.reduce((n, m) => n + m.seconds, 0);
  const mean = (f: (m: Measurement) => number) => rounds.reduce((n, m) => n + f(m), 0) / rounds.length;
  const withCpu = rounds.filter((m) => m.cpu !== undefined);
  const withDb = withCpu.filter((m) => m.cpu!.dbMicros !== undefined);
  const cpu: CpuPerOperation | undefined =
    withCpu.length === rounds.length
      ? { nodeMicros: mean((m) => m.cpu!.nodeMicros), ...(withDb.length === rounds.length ? { dbMicros: mean((m) => m.cpu!.dbMicros!) } : {}) }
      : undefined;
  return { name, operations, seconds, perSecond: operations / seconds, p50Ms: mean((m) => m.p50Ms), p95Ms: mean((m) => m.p95Ms), ...(cpu ? { cpu } : {}) };
}

/** One line per warm-up: how many operations it took and what the first ones cost. */
export function warmUpText(warmUps: readonly WarmUp[]): string {
  return `warm-up to steady state (Node CPU per operation, first → last round of 500): ${warmUps
    .map((w) => `${w.name} ${w.operations.toLocaleString('en-US')} ops, ${w.firstNodeMicros.toFixed(0)} → ${w.lastNodeMicros.toFixed(0)} µs`)
    .join('; ')}`;
}

/**
 * Like `measure`, but for a fixed wall time instead of a fixed count (how an HTTP load
 * generator runs): `concurrency` callers each start a new call as soon as theirs returns.
 */
export async function measureFor(name: string, seconds: number, concurrency: number, operation: (i: number) => Promise<void>): Promise<Measurement> {
  const latencies: number[] = [];
  let next = 0;
  const cpu = cpuSnapshot();
  const started = performance.now();
  const until = started + seconds * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      const i = next++;
      const t0 = performance.now();
      await operation(i);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name,
    operations: latencies.length,
    seconds: elapsed,
    perSecond: latencies.length / elapsed,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    cpu: cpuSince(cpu, latencies.length),
  };
}

export interface Comparison {
  what: string;
  fhir: Measurement;
  raw: Measurement;
  /** fhir throughput / raw throughput */
  throughputRatio: number;
  /** fhir p50 / raw p50 */
  p50Ratio: number;
  /**
   * raw CPU per operation / fhir CPU per operation (Node + a local database's processes), read
   * like throughputRatio: 0.25 means a FHIR operation costs four times the CPU of the raw one.
   * Steadier than throughput on a shared host. Absent when either side has no CPU figure.
   */
  cpuRatio?: number;
  aim?: string;
  met?: boolean;
}

/** Sets an aim on the rows whose `what` matches and that carry none yet (sections written before the aim was). */
export function withAim(rows: Comparison[], what: RegExp, aim: { text: string; met: (c: Comparison) => boolean }): Comparison[] {
  for (const c of rows) {
    if (c.aim || !what.test(c.what)) continue;
    c.aim = aim.text;
    c.met = aim.met(c);
  }
  return rows;
}

export function compare(what: string, fhir: Measurement, raw: Measurement, aim?: { text: string; met: (c: Comparison) => boolean }): Comparison {
  const c: Comparison = {
    what,
    fhir,
    raw,
    throughputRatio: fhir.perSecond / raw.perSecond,
    p50Ratio: fhir.p50Ms / raw.p50Ms,
  };
  const fhirCpu = totalCpuMicros(fhir.cpu);
  const rawCpu = totalCpuMicros(raw.cpu);
  if (fhirCpu && rawCpu) c.cpuRatio = rawCpu / fhirCpu;
  if (aim) {
    c.aim = aim.text;
    c.met = aim.met(c);
  }
  return c;
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);

export function printComparisons(title: string, rows: Comparison[]): void {
  console.log(`\n${title}`);
  console.log(
    ['what', 'fhir ops/s', 'raw ops/s', 'ratio', 'fhir p50 ms', 'fhir p95 ms', 'raw p50 ms', 'raw p95 ms', 'p50 ratio', 'fhir CPU µs/op (node + db)', 'raw CPU µs/op', 'CPU ratio', 'aim'].join(' | '),
  );
  for (const r of rows) {
    console.log(
      [
        r.what,
        f1(r.fhir.perSecond),
        f1(r.raw.perSecond),
        f2(r.throughputRatio),
        f2(r.fhir.p50Ms),
        f2(r.fhir.p95Ms),
        f2(r.raw.p50Ms),
        f2(r.raw.p95Ms),
        f2(r.p50Ratio),
        cpuText(r.fhir.cpu, ''),
        cpuText(r.raw.cpu, ''),
        r.cpuRatio === undefined ? '' : f2(r.cpuRatio),
        r.aim ? `${r.aim}: ${r.met ? 'met' : 'NOT met'}` : '',
      ].join(' | '),
    );
  }
}
