import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time spent while a figure was measured, per operation: this Node process (every thread:
 * the server, the bench's own client, the embedded database's worker) and, when the database is
 * a PostgreSQL server on this machine, every PostgreSQL process. Throughput on a shared 2-core
 * host moves by ±20 % between runs minutes apart; the CPU an operation costs moves less (a busy
 * host inflates it too: compare within a run), and
 * it says on which side (Node or the database) a gap between FHIR and raw SQL lies.
 */
export interface CpuPerOperation {
  /** user + system CPU of this process, µs per operation */
  nodeMicros: number;
  /**
   * user + system CPU of the PostgreSQL processes on this host, µs per operation: backends
   * (other databases' too, if any are busy), WAL writer, checkpointer, and autovacuum workers,
   * also those that started and ended inside the window (counted when the postmaster reaps
   * them). Undefined when the database is not a local server (embedded, remote) or /proc
   * cannot be read.
   */
  dbMicros?: number;
}

/** The PostgreSQL processes' CPU at one moment. */
interface PostgresCpu {
  /** per live process id, its own CPU in µs so far */
  live: Map<string, number>;
  /** CPU in µs of the processes they have reaped (the postmaster's exited children: backends, autovacuum workers) */
  reaped: number;
}

export interface CpuSnapshot {
  node: NodeJS.CpuUsage;
  db?: PostgresCpu;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ): 100 on Linux. */
const TICK_MICROS = 10_000;

/** Whether DATABASE_URL names a server on this machine (loopback or a Unix socket). */
function databaseIsLocal(url: string | undefined): boolean {
  if (!url) return false;
  try {
    const parsed = new URL(url);
    const host = decodeURIComponent(parsed.hostname);
    const socketDir = parsed.searchParams.get('host');
    return host === '' || host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host.startsWith('/') || (socketDir?.startsWith('/') ?? false);
  } catch {
    return false;
  }
}

const local = databaseIsLocal(process.env.DATABASE_URL);

/** CPU of the PostgreSQL processes, from /proc (undefined off Linux or without access). */
function postgresProcesses(): PostgresCpu | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return undefined;
  }
  const live = new Map<string, number>();
  let reaped = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces; the fields after it are fixed.
      const close = stat.lastIndexOf(')');
      if (!stat.slice(stat.indexOf('(') + 1, close).startsWith('postgres')) continue;
      const fields = stat.slice(close + 2).split(' ');
      // utime, stime, cutime, cstime are fields 14–17 of the line, 12–15 after "state".
      live.set(pid, (Number(fields[11]) + Number(fields[12])) * TICK_MICROS);
      reaped += (Number(fields[13]) + Number(fields[14])) * TICK_MICROS;
    } catch {
      // The process ended while we looked.
    }
  }
  return { live, reaped };
}

export function cpuSnapshot(): CpuSnapshot {
  return { node: process.cpuUsage(), db: local ? postgresProcesses() : undefined };
}

export function cpuSince(start: CpuSnapshot, operations: number): CpuPerOperation {
  const node = process.cpuUsage(start.node);
  const result: CpuPerOperation = { nodeMicros: (node.user + node.system) / Math.max(1, operations) };
  const db = start.db ? postgresMicrosSince(start.db) : undefined;
  if (db !== undefined) result.dbMicros = db / Math.max(1, operations);
  return result;
}

/** What the PostgreSQL processes spent since `start`, in µs (undefined when /proc cannot be read now). */
function postgresMicrosSince(start: PostgresCpu): number | undefined {
  const now = postgresProcesses();
  if (!now) return undefined;
  // Live processes: what they spent since the start (from zero for those started since).
  // Processes gone since: their whole life is now in `reaped`, of which the part before the
  // start was already counted in their own figure then.
  let micros = now.reaped - start.reaped;
  for (const [pid, total] of now.live) micros += total - (start.live.get(pid) ?? 0);
  for (const [pid, total] of start.live) if (!now.live.has(pid)) micros -= total;
  return micros;
}

/** user + system CPU of process `pid` so far, in µs (undefined off Linux or once it is gone). */
function processMicros(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MICROS;
  } catch {
    return undefined;
  }
}

/** Like CpuSnapshot, for another process (the http section's server, which runs apart from the load generator). */
export interface ProcessCpuSnapshot {
  pid: number;
  micros: number;
  db?: PostgresCpu;
}

export function processCpuSnapshot(pid: number): ProcessCpuSnapshot | undefined {
  const micros = processMicros(pid);
  return micros === undefined ? undefined : { pid, micros, db: local ? postgresProcesses() : undefined };
}

/** CPU per operation of that process (as `nodeMicros`) and of a local PostgreSQL since the snapshot. */
export function processCpuSince(start: ProcessCpuSnapshot, operations: number): CpuPerOperation | undefined {
  const micros = processMicros(start.pid);
  if (micros === undefined) return undefined;
  const result: CpuPerOperation = { nodeMicros: (micros - start.micros) / Math.max(1, operations) };
  const db = start.db ? postgresMicrosSince(start.db) : undefined;
  if (db !== undefined) result.dbMicros = db / Math.max(1, operations);
  return result;
}

/** Node + database CPU per operation (the database's part only where it is seen). */
export function totalCpuMicros(cpu: CpuPerOperation | undefined): number | undefined {
  return cpu ? cpu.nodeMicros + (cpu.dbMicros ?? 0) : undefined;
}
