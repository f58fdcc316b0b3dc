import { cpus, loadavg } from 'node:os';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';

/**
 * The PostgreSQL settings the figures depend on (memory for caching and sorting, planner cost
 * model, commit durability), read from the database the bench runs on.
 */
export const SETTINGS = [
  'server_version',
  'shared_buffers',
  'effective_cache_size',
  'work_mem',
  'maintenance_work_mem',
  'max_connections',
  'random_page_cost',
  'effective_io_concurrency',
  'max_parallel_workers_per_gather',
  'jit',
  'synchronous_commit',
  'fsync',
  'wal_level',
] as const;

export interface BenchEnvironment {
  database: string;
  node: string;
  cpus: number;
  cpuModel: string;
  /** 1, 5 and 15 minute load averages when the run started: the machine may be shared */
  loadAverage: [number, number, number];
  settings: Record<string, string>;
}

async function readSettings(databaseUrl: string | undefined): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (databaseUrl) {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      for (const name of SETTINGS) out[name] = String(Object.values((await client.query(`SHOW ${name}`)).rows[0] ?? {})[0] ?? '');
    } finally {
      await client.end();
    }
  } else {
    // The bench's PGlite databases are fresh in-memory instances: a fresh one shows their settings.
    const db = new PGlite();
    try {
      for (const name of SETTINGS) {
        const r = await db.query<Record<string, string>>(`SHOW ${name}`).catch(() => undefined);
        out[name] = r ? String(Object.values(r.rows[0] ?? {})[0] ?? '') : '(not available)';
      }
    } finally {
      await db.close();
    }
  }
  return out;
}

export async function benchEnvironment(databaseUrl: string | undefined): Promise<BenchEnvironment> {
  const [l1, l5, l15] = loadavg();
  return {
    database: databaseUrl ? 'postgresql' : 'pglite (embedded, memory)',
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    loadAverage: [l1, l5, l15],
    settings: await readSettings(databaseUrl),
  };
}

export function printEnvironment(e: BenchEnvironment): void {
  const load = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' / ');
  console.log(`database: ${e.database}; node ${e.node}; ${e.cpus} × ${e.cpuModel}`);
  console.log(`load average (1 / 5 / 15 min) at start: ${load(e.loadAverage)}`);
  console.log(`settings: ${Object.entries(e.settings).map(([k, v]) => `${k}=${v}`).join(', ')}`);
}

/** The load average now, for sections to print beside their figures. */
export function loadNow(): string {
  return loadavg().map((x) => x.toFixed(2)).join(' / ');
}
