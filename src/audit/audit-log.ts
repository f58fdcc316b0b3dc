import type { AuditEvent } from 'fhir/r4.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import { errors, FhirError } from '../fhir/errors.js';
import { pgErrorCode } from '../storage/pg-errors.js';
import type { AuditInsert } from '../storage/audit-store.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import type { RestAuditTuple } from './http-audit.js';

/** Events are written at most this long after their request ended. */
const FLUSH_INTERVAL_MS = 500;
/** A queue this long is written at once, not at the next tick. */
const FLUSH_BATCH = 500;
/** Events per write statement. */
const WRITE_CHUNK = 500;
/** After a failed write (database unreachable, say) the queue is tried again after 0.5 s, 1 s, … up to 30 s. */
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** How long close() keeps retrying a failing database before it gives up (and says how many were lost). */
const CLOSE_DEADLINE_MS = 15_000;

/** Where the events go (src/storage/audit-store.ts). */
export interface AuditWriter {
  append(rows: readonly AuditInsert[]): Promise<unknown>;
}

/**
 * What the request path queues: a finished AuditEvent (sign-ins, authorization server), or
 * what a FHIR request left behind (src/audit/http-audit.ts), made into its AuditEvent only
 * by the writer (src/audit/audit-render.ts).
 */
export type AuditItem = AuditEvent | RestAuditTuple;

export interface AuditLogOptions {
  writer: AuditWriter;
  /** Makes a queued item into its stored form (id, JSON, search keys); called by the writer, off the request path. */
  render: (item: AuditItem) => AuditInsert;
  enabled: boolean;
  log: (message: string, error?: unknown) => void;
  /**
   * Unwritten events at which new audited requests wait for the writer (back-pressure).
   * Default 10,000 (~15 MB). Events of requests already admitted are still queued beyond it.
   */
  queueLimit?: number;
  /** How long an audited request waits for room before it is answered 503 (default 5 s). */
  admissionWaitMs?: number;
  /** Told how many events each write stored (database maintenance counts writes). */
  onWritten?: (count: number) => void;
}

export interface AuditLogStats {
  queued: number;
  written: number;
  /** Requests answered 503 because the queue stayed full. */
  refused: number;
  /** Events lost: queue beyond the hard limit, unwritable events, or unwritten at shutdown. */
  lost: number;
}

/** Refuses every AuditEvent write through the general write path: REST, Bundles, $import, `npm run import`, HL7 v2. */
export const refuseAuditEventWrites: BeforeWriteHook = (_tx, change) => {
  if (change.resourceType === 'AuditEvent') {
    throw errors.forbidden('AuditEvent resources are written by the server only; no client may create, change or delete them');
  }
};

/** SQLSTATE classes that mean "this data", not "the database": data exceptions, constraints, bad SQL. */
const eventSpecific = (e: unknown) => /^(22|23|42)/.test(pgErrorCode(e) ?? '');

/**
 * The audit trail. The request path only queues (no I/O, and for FHIR requests not even the
 * AuditEvent: a small record of references to what the request had anyway); the writer makes
 * each batch into AuditEvents (id, JSON, search keys) and appends it through the audit store,
 * one statement per batch. A queued item is rendered once: a retried batch keeps its ids.
 *
 * A full queue is never silently emptied — it means the database does not keep up or is
 * down. The deliberate choice (a hospital must not hand out data it cannot account for):
 * BACK-PRESSURE. At `queueLimit` unwritten events, new audited requests wait until the writer
 * makes room; after `admissionWaitMs` they are answered 503 with Retry-After (counted,
 * logged). Requests already admitted still queue their events. Only beyond twice the limit
 * (which admission keeps out of reach) is an event dropped — counted in `lost`, in the
 * metric `fhir_audit_events_lost_total` and logged, never silently, never with PHI.
 * A failing write keeps its events queued and is retried with back-off; an event the
 * database refuses for its content is isolated by halving the batch, counted and logged.
 * close() writes what is queued (retrying for up to 15 s) and logs how many were lost if any.
 */
export class AuditLog {
  /** Oldest first; the head of a batch being written is replaced in place by its rendered rows (null: could not be rendered, counted lost). */
  private queue: Array<AuditItem | Rendered | null> = [];
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryMs = 0;
  private outageLogged = false;
  private closed = false;
  private waiters: Array<() => void> = [];
  private readonly counts = { written: 0, refused: 0, lost: 0 };
  private readonly queueLimit: number;
  private readonly admissionWaitMs: number;
  readonly enabled: boolean;

  constructor(private readonly options: AuditLogOptions) {
    this.enabled = options.enabled;
    this.queueLimit = options.queueLimit ?? 10_000;
    this.admissionWaitMs = options.admissionWaitMs ?? 5_000;
  }

  /** AuditEvents that could not be written (refused by the database, or lost); logged each time. */
  get writeFailures(): number {
    return this.counts.lost;
  }

  stats(): AuditLogStats {
    return { queued: this.queue.length, ...this.counts };
  }

  /** Queues an event (or what its AuditEvent is made of); never waits for the database. */
  record(event: AuditItem): void {
    if (!this.enabled) return;
    if (this.closed || this.queue.length >= 2 * this.queueLimit) {
      this.lose(1, this.closed ? 'recorded after shutdown' : 'queue beyond twice AUDIT_QUEUE_LIMIT');
      return;
    }
    this.queue.push(event);
    if (this.retryMs > 0) return; // a retry is scheduled
    if (this.queue.length >= FLUSH_BATCH) {
      // A write in progress takes full batches queued meanwhile before it ends.
      if (!this.writing) void this.write(false);
    } else if (!this.timer) {
      this.schedule(FLUSH_INTERVAL_MS);
    }
  }

  /**
   * Back-pressure for the request path: undefined (go on at once) while there is room,
   * otherwise a promise that resolves when there is, or rejects with a 503 after the wait.
   */
  admit(): Promise<void> | undefined {
    if (!this.enabled || this.queue.length < this.queueLimit) return undefined;
    return new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        this.counts.refused++;
        this.options.log(`audit: a request was refused (503): ${this.queue.length} AuditEvents wait to be written`);
        reject(new FhirError('unavailable', 'the audit trail cannot keep up (its database writes are behind); retry later', { 'Retry-After': '10' }));
      }, this.admissionWaitMs);
      const wake = () => {
        clearTimeout(timeout);
        resolve();
      };
      this.waiters.push(wake);
    });
  }

  /** Writes everything queued (tests and shutdown wait on it); a failing database leaves the events queued. */
  flush(): Promise<void> {
    return this.write(true);
  }

  /** `all`: until the queue is empty; otherwise see writeQueued. */
  private async write(all: boolean): Promise<void> {
    this.clearTimer();
    // One writer at a time; events queued meanwhile are written by the next round.
    while (this.writing) await this.writing;
    if (this.queue.length === 0) return;
    this.writing = this.writeQueued(all).finally(() => {
      this.writing = undefined;
    });
    await this.writing;
  }

  /** Stops taking events and writes what is queued, retrying a failing database for a while. */
  async close(): Promise<void> {
    const deadline = Date.now() + CLOSE_DEADLINE_MS;
    await this.flush();
    while (this.queue.length > 0 && Date.now() < deadline) {
      this.clearTimer();
      await new Promise((r) => setTimeout(r, Math.min(this.retryMs || RETRY_MIN_MS, Math.max(0, deadline - Date.now()))));
      await this.flush();
    }
    this.clearTimer();
    this.closed = true;
    if (this.queue.length > 0) {
      // Those that could not be rendered were counted already.
      const n = this.queue.reduce((count, item) => count + (item === null ? 0 : 1), 0);
      this.queue = [];
      if (n > 0) this.lose(n, 'the database did not take them before shutdown');
    }
    this.wakeWaiters();
  }

  /** Prometheus metrics of the audit trail. */
  registerMetrics(registry: Registry): void {
    const stats = () => this.stats();
    new Gauge({ name: 'fhir_audit_queue_length', help: 'AuditEvents waiting to be written', registers: [registry], collect() { this.set(stats().queued); } });
    new Counter({ name: 'fhir_audit_events_written_total', help: 'AuditEvents written', registers: [registry], collect() { this.reset(); this.inc(stats().written); } });
    new Counter({ name: 'fhir_audit_events_lost_total', help: 'AuditEvents that could not be written (each one is also logged)', registers: [registry], collect() { this.reset(); this.inc(stats().lost); } });
    new Counter({ name: 'fhir_audit_refused_requests_total', help: 'Requests answered 503 because the audit queue stayed full', registers: [registry], collect() { this.reset(); this.inc(stats().refused); } });
  }

  private schedule(ms: number): void {
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write(false);
    }, ms);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private lose(n: number, why: string): void {
    this.counts.lost += n;
    // Counts and reasons only: events carry patient references and user names.
    this.options.log(`audit: ${n} AuditEvent(s) lost (${why}); ${this.counts.lost} lost since start`);
  }

  private wakeWaiters(): void {
    if (this.waiters.length === 0 || (!this.closed && this.queue.length >= this.queueLimit)) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Writes the events queued when it starts, then full batches queued meanwhile (`all`: until
   * the queue is empty). The rest waits for its timer (at most FLUSH_INTERVAL_MS, as any event):
   * going on at once with what arrived during a write made a busy server write one small
   * statement per round trip (~15 events each), and a statement's own cost (planning, commit,
   * WAL flush) was then a large part of each event's.
   */
  private async writeQueued(all: boolean): Promise<void> {
    let due = this.queue.length;
    while (this.queue.length > 0 && (all || due > 0 || this.queue.length >= FLUSH_BATCH)) {
      const n = Math.min(this.queue.length, WRITE_CHUNK);
      const batch = this.renderHead(n);
      try {
        await this.writeIsolating(batch);
      } catch (e) {
        // The database (not the events) failed: keep them, try again later.
        this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs ? this.retryMs * 2 : RETRY_MIN_MS);
        if (!this.outageLogged) {
          this.outageLogged = true;
          this.options.log(`audit: writing AuditEvents failed (${pgErrorCode(e) ?? 'no SQLSTATE'}); ${this.queue.length} kept queued, retrying`, e);
        }
        if (!this.closed) this.schedule(this.retryMs);
        return;
      }
      this.queue.splice(0, n);
      due -= n;
      if (this.retryMs > 0) this.options.log(`audit: writing AuditEvents works again; ${this.queue.length} still queued`);
      this.retryMs = 0;
      this.outageLogged = false;
      this.wakeWaiters();
    }
    // Those queued during the write, when their own record() found a timer already set.
    if (this.queue.length > 0 && !this.timer && !this.closed) this.schedule(FLUSH_INTERVAL_MS);
  }

  /** The first `n` queued items as rows, rendering (in place, once) those not rendered yet. */
  private renderHead(n: number): AuditInsert[] {
    const rows: AuditInsert[] = [];
    for (let i = 0; i < n; i++) {
      let item = this.queue[i] as AuditItem | Rendered | null;
      if (item !== null && !(item instanceof Rendered)) {
        try {
          item = new Rendered(this.options.render(item));
        } catch (e) {
          // A fault of the server's own code, not of the database: this one event is lost, loudly.
          item = null;
          this.lose(1, `its AuditEvent could not be built: ${e instanceof Error ? e.message : String(e)}`);
        }
        this.queue[i] = item;
      }
      if (item !== null) rows.push(item.row);
    }
    return rows;
  }

  /** Writes `events`; an event the database refuses for its content is found by halving, counted and left out. */
  private async writeIsolating(events: readonly AuditInsert[]): Promise<void> {
    try {
      await this.options.writer.append(events);
      this.counts.written += events.length;
      this.options.onWritten?.(events.length);
    } catch (e) {
      if (!eventSpecific(e)) throw e;
      if (events.length === 1) {
        this.lose(1, `the database refused it: SQLSTATE ${pgErrorCode(e)}`);
        return;
      }
      const half = events.length >> 1;
      await this.writeIsolating(events.slice(0, half));
      await this.writeIsolating(events.slice(half));
    }
  }
}

/** A queued item already rendered (a batch that failed keeps its rows for the retry). */
class Rendered {
  constructor(readonly row: AuditInsert) {}
}
