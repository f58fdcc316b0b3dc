import { sql } from 'kysely';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Db } from './db.js';

/**
 * Statistics and dead-row cleanup where nobody else does them.
 *
 * PostgreSQL plans searches from table statistics (pg_class.reltuples, pg_stats). Without
 * them every table looks empty and a search over 100,000 rows runs as a nested loop over all
 * of them (seconds to minutes instead of milliseconds). PostgreSQL's autovacuum keeps them
 * fresh; the embedded database (PGlite) has no autovacuum, and a PostgreSQL may run with it
 * switched off. So the server does the same job itself:
 *
 * - a check that compares each table's modification counters (pg_stat_user_tables) with
 *   autovacuum's thresholds — its defaults, or the table's own storage parameters where set
 *   (the append-only audit_event, migration 0039) — and runs ANALYZE / VACUUM on the tables
 *   past them, one table at a time (on PGlite each statement takes the single connection
 *   between requests);
 * - the check runs every `intervalMs`, after a transaction that wrote many resources, once
 *   enough resources were written since the last one, at start-up (which also analyzes tables
 *   that hold rows but were never analyzed), and — awaited — after bulk work (imports, reindex).
 *
 * Periodic checks and VACUUM run on PGlite always and on PostgreSQL when autovacuum is off
 * (or DATABASE_MAINTENANCE=on). ANALYZE after bulk writes runs on both: autovacuum may take
 * a minute to notice, and searches in that minute would be planned on stale statistics.
 */
export type MaintenanceMode = 'auto' | 'on' | 'off';

export interface MaintenanceOptions {
  /** The database without a statement time limit (VACUUM and ANALYZE of big tables take a while). */
  db: Db;
  kind: 'pglite' | 'postgres';
  mode: MaintenanceMode;
  /** How often the periodic check runs (when it runs at all). */
  intervalMs?: number;
  /** A transaction that wrote at least this many resources triggers a check. */
  largeTransaction?: number;
  /** Resources written since the last check that trigger the next one. */
  writesPerCheck?: number;
  log?: (message: string) => void;
}

export interface MaintenanceRun {
  table: string;
  action: 'analyze' | 'vacuum' | 'vacuum analyze';
  /** Why the check ran: start-up, periodic, writes, bulk. */
  trigger: string;
  ms: number;
  at: string;
}

interface TableStats {
  table: string;
  reltuples: number;
  modsSinceAnalyze: number;
  deadTuples: number;
  insertsSinceVacuum: number;
  /** The table's own thresholds (storage parameters), else autovacuum's defaults. */
  limits: Thresholds;
}

/** When a table is analyzed / vacuumed: past `base + scale × rows` (a negative insert base: never for inserts). */
interface Thresholds {
  analyzeBase: number;
  analyzeScale: number;
  vacuumBase: number;
  vacuumScale: number;
  vacuumInsertBase: number;
  vacuumInsertScale: number;
}

/** Autovacuum's defaults (autovacuum_*_threshold / *_scale_factor). */
const DEFAULTS: Thresholds = { analyzeBase: 50, analyzeScale: 0.1, vacuumBase: 50, vacuumScale: 0.2, vacuumInsertBase: 1000, vacuumInsertScale: 0.2 };

/** The storage parameters autovacuum reads for these thresholds (e.g. audit_event's, migration 0039). */
const RELOPTIONS: Record<string, keyof Thresholds> = {
  autovacuum_analyze_threshold: 'analyzeBase',
  autovacuum_analyze_scale_factor: 'analyzeScale',
  autovacuum_vacuum_threshold: 'vacuumBase',
  autovacuum_vacuum_scale_factor: 'vacuumScale',
  autovacuum_vacuum_insert_threshold: 'vacuumInsertBase',
  autovacuum_vacuum_insert_scale_factor: 'vacuumInsertScale',
};

/** A table's thresholds: its storage parameters (`name=value` as pg_class.reloptions lists them) over the defaults. */
export function thresholdsOf(reloptions: readonly string[] | null): Thresholds {
  const limits = { ...DEFAULTS };
  for (const option of reloptions ?? []) {
    const eq = option.indexOf('=');
    const key = RELOPTIONS[option.slice(0, eq)];
    const value = Number(option.slice(eq + 1));
    if (key && eq > 0 && Number.isFinite(value)) limits[key] = value;
  }
  return limits;
}

const KEEP_RUNS = 50;
const STATS_REPORT_DELAY_MS = 11_000;

export class DatabaseMaintenance {
  private readonly db: Db;
  private readonly kind: 'pglite' | 'postgres';
  private readonly mode: MaintenanceMode;
  private readonly intervalMs: number;
  private readonly largeTransaction: number;
  private readonly writesPerCheck: number;
  private readonly log: (message: string) => void;
  /** Periodic checks and VACUUM: decided at start (PGlite, or PostgreSQL without autovacuum). */
  private full = false;
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** A check is queued and has not started: further requests join it. */
  private queued: Promise<void> | undefined;
  private writesSinceCheck = 0;
  /** PostgreSQL: a check after writes waits for the writers' counters to reach pg_stat (see noteCommitted). */
  private delayedCheck: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly recent: MaintenanceRun[] = [];
  private readonly listeners: Array<(run: MaintenanceRun) => void> = [];

  constructor(options: MaintenanceOptions) {
    this.db = options.db;
    this.kind = options.kind;
    this.mode = options.mode;
    this.intervalMs = options.intervalMs ?? 30_000;
    this.largeTransaction = options.largeTransaction ?? 500;
    this.writesPerCheck = options.writesPerCheck ?? 2_000;
    this.log = options.log ?? (() => undefined);
  }

  /** Whether periodic checks and VACUUM run (known after start). */
  get periodic(): boolean {
    return this.full;
  }

  /** The latest runs, newest last (no data, only table names and timings). */
  runs(): MaintenanceRun[] {
    return [...this.recent];
  }

  /** Decides what to do on this database, checks once and starts the periodic check. */
  async start(): Promise<void> {
    if (this.mode === 'off' || this.closed) return;
    if (this.kind === 'pglite' || this.mode === 'on') {
      this.full = true;
    } else {
      const setting = await sql<{ autovacuum: string }>`SHOW autovacuum`.execute(this.db);
      this.full = setting.rows[0]?.autovacuum !== 'on';
    }
    void this.request('start-up');
    if (this.full) {
      this.timer = setInterval(() => void this.request('periodic'), this.intervalMs);
      this.timer.unref();
    }
  }

  /** After-commit hook: counts written resources; a big transaction or enough small ones trigger a check. */
  noteCommitted(resources: number): void {
    if (this.mode === 'off' || this.closed) return;
    this.writesSinceCheck += resources;
    if (resources < this.largeTransaction && this.writesSinceCheck < this.writesPerCheck) return;
    if (this.kind === 'pglite') {
      void this.request('writes');
    } else if (!this.delayedCheck) {
      // A PostgreSQL backend reports its table counters when it goes idle, at most every second
      // and otherwise within PGSTAT_IDLE_INTERVAL (10 s): check once they have arrived.
      this.delayedCheck = setTimeout(() => {
        this.delayedCheck = undefined;
        void this.request('writes');
      }, STATS_REPORT_DELAY_MS);
      this.delayedCheck.unref();
    }
  }

  /**
   * After an import or reindex: brings the statistics up to date before returning, so the
   * searches that follow are planned on them.
   */
  async afterBulkWrite(): Promise<void> {
    if (this.mode === 'off' || this.closed) return;
    await this.request('bulk');
  }

  /** Stops the periodic check and waits for a running one. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.delayedCheck) clearTimeout(this.delayedCheck);
    await this.chain;
  }

  /** Exposes the runs on /metrics: counts and the last duration per table and action. */
  registerMetrics(registry: Registry): void {
    const runs = new Counter({
      name: 'db_maintenance_runs_total',
      help: 'ANALYZE / VACUUM runs of the server\'s own database maintenance, by table and action',
      labelNames: ['table', 'action'] as const,
      registers: [registry],
    });
    const lastDuration = new Gauge({
      name: 'db_maintenance_last_duration_seconds',
      help: 'Duration of the latest maintenance run by table and action',
      labelNames: ['table', 'action'] as const,
      registers: [registry],
    });
    const lastAt = new Gauge({
      name: 'db_maintenance_last_run_timestamp_seconds',
      help: 'Unix time of the latest maintenance run by table and action',
      labelNames: ['table', 'action'] as const,
      registers: [registry],
    });
    this.listeners.push((run) => {
      const labels = { table: run.table, action: run.action };
      runs.inc(labels);
      lastDuration.set(labels, run.ms / 1000);
      lastAt.set(labels, Date.parse(run.at) / 1000);
    });
  }

  /** Queues a check; a request while one is already waiting to start joins that one. */
  private request(trigger: string): Promise<void> {
    if (this.queued) return this.queued;
    const next = this.chain.then(async () => {
      this.queued = undefined;
      if (this.closed) return;
      try {
        await this.check(trigger);
      } catch (e) {
        // Maintenance must never take the server down; the next check tries again.
        this.log(`database maintenance (${trigger}) failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    });
    this.queued = next;
    this.chain = next;
    return next;
  }

  private async check(trigger: string): Promise<void> {
    this.writesSinceCheck = 0;
    const tables = await this.tableStats();
    // After bulk work on PostgreSQL the writers' counters may not have reached pg_stat yet
    // (see noteCommitted): analyze every table holding rows rather than trust them.
    const everyTable = trigger === 'bulk' && this.kind === 'postgres';
    for (const t of tables) {
      if (this.closed) return;
      const reltuples = Math.max(t.reltuples, 0);
      const l = t.limits;
      const analyze =
        (everyTable && (t.reltuples > 0 || (await this.hasRows(t.table)))) ||
        (t.reltuples < 0 && (await this.hasRows(t.table))) ||
        t.modsSinceAnalyze > l.analyzeBase + l.analyzeScale * reltuples;
      const vacuum =
        this.full &&
        (t.deadTuples > l.vacuumBase + l.vacuumScale * reltuples || (l.vacuumInsertBase >= 0 && t.insertsSinceVacuum > l.vacuumInsertBase + l.vacuumInsertScale * reltuples));
      if (analyze || vacuum) await this.run(t.table, analyze && vacuum ? 'vacuum analyze' : analyze ? 'analyze' : 'vacuum', trigger);
    }
  }

  private async tableStats(): Promise<TableStats[]> {
    // PGlite runs no idle loop that would flush the statistics counters of this backend to
    // the shared counters pg_stat_user_tables reads; ask for the flush, which happens when
    // this statement ends, and read in the next one. A partitioned table (search_text) has no
    // rows or counters of its own: its partitions are checked, each as a table.
    // The counters are read for this schema's tables only (the functions behind
    // pg_stat_user_tables): the view computes them for every table of every schema first
    // (~11 ms instead of ~3 ms on a database of many schemas), and a busy audit trail asks
    // for a check every 2,000 events.
    if (this.kind === 'pglite') await sql`SELECT pg_stat_force_next_flush()`.execute(this.db);
    const result = await sql<{ table: string; reltuples: number; mods: string | number; dead: string | number; inserts: string | number; options: string | null }>`
      SELECT c.relname AS table, c.reltuples::float8 AS reltuples, pg_stat_get_mod_since_analyze(c.oid) AS mods,
             pg_stat_get_dead_tuples(c.oid) AS dead, pg_stat_get_ins_since_vacuum(c.oid) AS inserts,
             array_to_string(c.reloptions, E'\\n') AS options
      FROM pg_class c
      WHERE c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = current_schema()) AND c.relkind IN ('r', 'm')
      ORDER BY c.relname`.execute(this.db);
    return result.rows.map((r) => ({
      table: r.table,
      reltuples: Number(r.reltuples),
      modsSinceAnalyze: Number(r.mods),
      deadTuples: Number(r.dead),
      insertsSinceVacuum: Number(r.inserts),
      // As text: both drivers (pg, PGlite) return it alike; values of these options hold no newline.
      limits: thresholdsOf(r.options ? r.options.split('\n') : null),
    }));
  }

  /** Never analyzed (reltuples = -1) yet holding rows: the counters may have been lost in a restart. */
  private async hasRows(table: string): Promise<boolean> {
    const result = await sql<{ found: boolean }>`SELECT EXISTS (SELECT 1 FROM ${sql.table(table)}) AS found`.execute(this.db);
    return result.rows[0]?.found === true;
  }

  private async run(table: string, action: MaintenanceRun['action'], trigger: string): Promise<void> {
    const started = performance.now();
    const statement = action === 'analyze' ? sql`ANALYZE ${sql.table(table)}` : action === 'vacuum' ? sql`VACUUM ${sql.table(table)}` : sql`VACUUM (ANALYZE) ${sql.table(table)}`;
    await statement.execute(this.db);
    const run: MaintenanceRun = { table, action, trigger, ms: Math.round(performance.now() - started), at: new Date().toISOString() };
    this.recent.push(run);
    if (this.recent.length > KEEP_RUNS) this.recent.shift();
    for (const listener of this.listeners) listener(run);
    this.log(`database maintenance: ${action.toUpperCase()} ${table} (${trigger}) in ${run.ms} ms`);
  }
}
