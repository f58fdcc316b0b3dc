import { performance } from 'node:perf_hooks';

/**
 * Stages of a write, in the order a request meets them:
 *   parse     HTTP body: NUL / depth scan and JSON.parse (src/http/fhir-json.ts)
 *   validate  before-write hooks (validation, SearchParameter checks)
 *   extract   search index rows (SearchIndexer.extract)
 *   build     JSON.stringify of the stored resource and the write statement's text
 *   read      reads and locks inside the transaction (BEGIN, SELECT … FOR UPDATE, advisory locks)
 *   sql       the write statement(s), sent and answered
 *   commit    COMMIT (only when the transaction sent BEGIN)
 * Wall-clock time (performance.now(): cheap enough to leave on during a measurement, where
 * process.cpuUsage() per stage cost ~7% of the throughput). The node stages (parse … build) run
 * without an await, so other requests do not interleave with them; on a busy machine they are
 * inflated by the time the process waits for a core. read, sql and commit are waits for the
 * database, which include queueing behind other requests when several are in flight.
 */
export const WRITE_STAGES = ['parse', 'validate', 'extract', 'build', 'read', 'sql', 'commit'] as const;
export type WriteStage = (typeof WRITE_STAGES)[number];

/** The start of a stage, for `WriteProfile.add`. */
export function stageStart(): number {
  return performance.now();
}

/** Time spent per stage, summed over every write while the profile is on. */
export class WriteProfile {
  readonly ms: Record<WriteStage, number> = { parse: 0, validate: 0, extract: 0, build: 0, read: 0, sql: 0, commit: 0 };
  readonly calls: Record<WriteStage, number> = { parse: 0, validate: 0, extract: 0, build: 0, read: 0, sql: 0, commit: 0 };
  /** Resources written (one per create/update/delete version). */
  resources = 0;
  private readonly cpuStart = process.cpuUsage();
  private readonly wallStart = performance.now();
  private ended?: { cpu: NodeJS.CpuUsage; wall: number };

  /** Ends the span over which process CPU and wall time are counted. */
  end(): void {
    this.ended ??= { cpu: process.cpuUsage(this.cpuStart), wall: performance.now() - this.wallStart };
  }

  /** Adds the time since `startedAt` (from `stageStart()`) to `stage`. */
  add(stage: WriteStage, startedAt: number): void {
    this.ms[stage] += performance.now() - startedAt;
    this.calls[stage]++;
  }

  /** µs per written resource for each stage, plus the process CPU time per resource over the same span. */
  summary(): { resources: number; perResourceUs: Record<WriteStage | 'nodeCpuTotal' | 'wall', number> } {
    const cpu = this.ended?.cpu ?? process.cpuUsage(this.cpuStart);
    const wall = this.ended?.wall ?? performance.now() - this.wallStart;
    const n = Math.max(1, this.resources);
    const per = {} as Record<WriteStage | 'nodeCpuTotal' | 'wall', number>;
    for (const s of WRITE_STAGES) per[s] = (this.ms[s] * 1000) / n;
    per.nodeCpuTotal = (cpu.user + cpu.system) / n;
    per.wall = (wall * 1000) / n;
    return { resources: this.resources, perResourceUs: per };
  }

  /** One line a person can read: µs per resource by stage. */
  format(title: string): string {
    const { resources, perResourceUs: p } = this.summary();
    const parts = WRITE_STAGES.map((s) => `${s} ${p[s].toFixed(0)}`);
    return `${title}: ${resources} resources, µs per resource: ${parts.join(', ')} (read, sql, commit: waits for the database); node CPU of the whole process ${p.nodeCpuTotal.toFixed(0)}; wall ${p.wall.toFixed(0)}`;
  }
}

/**
 * The profile being collected, if any. Off (undefined) in a server: each stage then costs one
 * test of this variable. Benchmarks switch it on around a measurement.
 */
export let activeWriteProfile: WriteProfile | undefined;

export function startWriteProfile(): WriteProfile {
  activeWriteProfile = new WriteProfile();
  return activeWriteProfile;
}

export function stopWriteProfile(): WriteProfile | undefined {
  const p = activeWriteProfile;
  activeWriteProfile = undefined;
  p?.end();
  return p;
}
