import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cpuSince, cpuSnapshot, processCpuSince, processCpuSnapshot } from '../../bench/cpu.js';

/** Keeps this thread busy for about `ms` of CPU. */
function burn(ms: number): void {
  const start = process.cpuUsage();
  const spentMs = () => {
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1000;
  };
  let x = 0;
  while (spentMs() < ms) x += Math.sqrt(x + 1);
  expect(x).toBeGreaterThan(0);
}

describe('bench CPU accounting (bench/cpu.ts)', () => {
  it("counts this process's CPU per operation", () => {
    const start = cpuSnapshot();
    burn(60);
    const cpu = cpuSince(start, 10);
    // ~6,000 µs per operation; the bound leaves room for a slow or shared machine.
    expect(cpu.nodeMicros).toBeGreaterThan(5_000);
    expect(cpu.nodeMicros).toBeLessThan(60_000);
  });

  it("counts another process's CPU (the http section's server), not this one's", async () => {
    // A child that burns 300 ms of CPU once told to, then waits to be ended. CPU time, not wall
    // time: on a loaded machine 300 ms of wall time gave the child 150 ms of CPU (CI, 2 cores).
    const child = spawn(process.execPath, ['-e', "process.stdin.once('data', () => { const s = process.cpuUsage(); let x = 0; for (;;) { const u = process.cpuUsage(s); if (u.user + u.system >= 300000) break; x += Math.sqrt(x + 1); } console.log('done', x > 0); })"], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const start = processCpuSnapshot(child.pid!);
      expect(start).toBeDefined();
      const done = new Promise((r) => child.stdout!.once('data', r));
      child.stdin!.write('go\n');
      await done;
      burn(20);
      const cpu = processCpuSince(start!, 1);
      expect(cpu!.nodeMicros).toBeGreaterThan(150_000);
      expect(cpu!.nodeMicros).toBeLessThan(2_000_000);
    } finally {
      child.kill();
    }
  });

  // The database's CPU is seen only for a PostgreSQL on this machine (DATABASE_URL, as in CI).
  it.runIf(process.env.DATABASE_URL)('counts the CPU of a PostgreSQL backend that ended inside the window', async () => {
    const start = cpuSnapshot();
    const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    // A few hundred ms of backend CPU, then the backend exits: only the postmaster's reaped
    // children's counters still hold its CPU.
    await client.query('SELECT count(*) FROM generate_series(1, 4000000)');
    await client.end();
    await new Promise((r) => setTimeout(r, 300));
    const cpu = cpuSince(start, 1);
    expect(cpu.dbMicros).toBeDefined();
    expect(cpu.dbMicros!).toBeGreaterThan(100_000);
  });
});
