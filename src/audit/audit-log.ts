import type { AuditEvent } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { ResourceStore, StoreTransaction } from '../storage/resource-store.js';

/** Events are written at most this long after their request ended. */
const FLUSH_INTERVAL_MS = 250;
/** A queue this long is written at once, not at the next tick. */
const FLUSH_BATCH = 500;
/** Events per database transaction. */
const WRITE_CHUNK = 500;
/** Beyond this many unwritten events (database down), new ones are dropped and counted. */
const MAX_QUEUE = 100_000;

export interface AuditLogOptions {
  store: ResourceStore;
  enabled: boolean;
  log: (message: string, error?: unknown) => void;
}

/**
 * The audit trail: AuditEvents are queued in memory by the request path (no I/O there) and
 * written in batches through the store's write pipeline (validation, search index), one
 * transaction per batch. Nobody else may write AuditEvents: the store refuses creates,
 * updates and deletes of that type unless they come from this component's own transactions,
 * so REST, Bundle, $import and HL7 v2 writes of AuditEvent all fail with 403.
 */
export class AuditLog {
  private queue: AuditEvent[] = [];
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  /** AuditEvents that could not be written (invalid, or the database failed); logged each time. */
  writeFailures = 0;
  private closed = false;
  /** Transactions opened by this component (the only ones allowed to write AuditEvents). */
  private readonly own = new WeakSet<StoreTransaction>();
  readonly enabled: boolean;

  constructor(private readonly options: AuditLogOptions) {
    this.enabled = options.enabled;
    options.store.onBeforeWrite((tx, change) => {
      if (change.resourceType === 'AuditEvent' && !this.own.has(tx)) {
        throw errors.forbidden('AuditEvent resources are written by the server only; no client may create, change or delete them');
      }
    });
  }

  /** Queues an event; never waits for the database. */
  record(event: AuditEvent): void {
    if (!this.enabled || this.closed) return;
    if (this.queue.length >= MAX_QUEUE) {
      this.dropped++;
      return;
    }
    this.queue.push(event);
    if (this.queue.length >= FLUSH_BATCH) {
      // A write in progress takes what is queued meanwhile before it ends.
      if (!this.writing) void this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_INTERVAL_MS);
      this.timer.unref();
    }
  }

  /** Writes everything queued so far (tests and shutdown wait on it). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    // One writer at a time; events queued meanwhile are written by the next round.
    while (this.writing) await this.writing;
    if (this.queue.length === 0) return;
    this.writing = this.writeQueued().finally(() => {
      this.writing = undefined;
    });
    await this.writing;
  }

  /** Stops taking events and writes what is queued. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    if (this.dropped > 0) this.options.log(`audit: ${this.dropped} AuditEvents were dropped (queue full)`);
  }

  private async writeQueued(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, WRITE_CHUNK);
      try {
        await this.write(batch);
      } catch (e) {
        // One bad event must not lose the others: write them one by one.
        this.options.log('audit: batch write failed, writing events one by one', e);
        for (const event of batch) {
          try {
            await this.write([event]);
          } catch (error) {
            this.writeFailures++;
            this.options.log('audit: an AuditEvent could not be written', error);
          }
        }
      }
    }
  }

  private async write(events: AuditEvent[]): Promise<void> {
    await this.options.store.transaction(async (tx) => {
      this.own.add(tx);
      for (const event of events) await tx.create(event);
    });
  }
}
