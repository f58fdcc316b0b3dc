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

/** A process's command name and CPU in µs so far, its own and its reaped children's, from /proc/<pid>/stat (undefined once it is gone). */
function readStat(pid: string | number): { comm: string; own: number; reaped: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold spaces; the fields after it are fixed.
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    // utime, stime, cutime, cstime are fields 14–17 of the line, 12–15 after "state".
    return {
      comm: stat.slice(stat.indexOf('(') + 1, close),
      own: (Number(fields[11]) + Number(fields[12])) * TICK_MICROS,
      reaped: (Number(fields[13]) + Number(fields[14])) * TICK_MICROS,
    };
  } catch {
    return undefined;
  }
}

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
    // Undefined: the process ended while we looked.
    const stat = readStat(pid);
    if (!stat?.comm.startsWith('postgres')) continue;
    live.set(pid, stat.own);
    reaped += stat.reaped;
  }
  return { live, reaped };
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

/** Per operation: a process's CPU spent (as `nodeMicros`) and, when a snapshot of them was taken, the PostgreSQL processes'. */
function perOperation(micros: number, db: PostgresCpu | undefined, operations: number): CpuPerOperation {
  const result: CpuPerOperation = { nodeMicros: micros / Math.max(1, operations) };
  const dbMicros = db ? postgresMicrosSince(db) : undefined;
  if (dbMicros !== undefined) result.dbMicros = dbMicros / Math.max(1, operations);
  return result;
}

export function cpuSnapshot(): CpuSnapshot {
  return { node: process.cpuUsage(), db: local ? postgresProcesses() : undefined };
}

export function cpuSince(start: CpuSnapshot, operations: number): CpuPerOperation {
  const node = process.cpuUsage(start.node);
  return perOperation(node.user + node.system, start.db, operations);
}

/** Like CpuSnapshot, for another process (the http section's server, which runs apart from the load generator). */
export interface ProcessCpuSnapshot {
  pid: number;
  micros: number;
  db?: PostgresCpu;
}

export function processCpuSnapshot(pid: number): ProcessCpuSnapshot | undefined {
  const stat = readStat(pid);
  return stat === undefined ? undefined : { pid, micros: stat.own, db: local ? postgresProcesses() : undefined };
}

/** CPU per operation of that process (as `nodeMicros`) and of a local PostgreSQL since the snapshot. */
export function processCpuSince(start: ProcessCpuSnapshot, operations: number): CpuPerOperation | undefined {
  const stat = readStat(start.pid);
  return stat === undefined ? undefined : perOperation(stat.own - start.micros, start.db, operations);
}

/** "Node + database" µs per operation, the Node figure alone where the database's is not seen, `missing` without a figure. */
export function cpuText(cpu: CpuPerOperation | undefined, missing = '–'): string {
  if (!cpu) return missing;
  return cpu.dbMicros === undefined ? cpu.nodeMicros.toFixed(0) : `${cpu.nodeMicros.toFixed(0)} + ${cpu.dbMicros.toFixed(0)}`;
}

/** Node + database CPU per operation (the database's part only where it is seen). */
export function totalCpuMicros(cpu: CpuPerOperation | undefined): number | undefined {
  return cpu ? cpu.nodeMicros + (cpu.dbMicros ?? 0) : undefined;
}
