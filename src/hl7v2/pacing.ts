import { performance } from 'node:perf_hooks';

/**
 * Receipts and mapping share one thread. A receipt (store the raw row, parse, ACK) needs about
 * a millisecond of CPU; mapping a message ten times that, and with everything prefetched it
 * runs on resolved promises only, so left alone it would hold the event loop for a whole
 * message or batch while the frames, database answers and ACKs of other connections wait.
 *
 * Mapping calls `pace` before each resource it writes. Once it has held the event loop for a
 * slice, it gives it back (setImmediate runs after pending I/O callbacks); and while receipts
 * are under way it waits for them to be answered, at most `waitMs`, so senders are answered
 * first and mapping goes on in the time they leave. The wait is bounded (at most `waitMs` after
 * each slice), so a steady stream of receipts slows mapping and never stops it; receipts past
 * the parsed backlog wait in the database, and the HL7_MAX_QUEUED bound (ingest.ts) stops them
 * when mapping falls too far behind. Receipts waiting for room in that queue are not counted
 * (they wait for mapping, mapping must not wait for them).
 */
export class Pacer {
  private since = performance.now();
  private receiving = 0;
  private idle: Array<() => void> = [];

  constructor(
    /** CPU time mapping may hold the event loop at once. */
    private readonly sliceMs = 2,
    /** How long mapping waits, after a slice, for receipts under way to be answered. */
    private readonly waitMs = 4,
  ) {}

  /** A receipt is under way (its raw row being stored, its ACK not built yet). */
  receiptStarted(): void {
    this.receiving++;
  }

  receiptDone(): void {
    if (--this.receiving === 0) for (const wake of this.idle.splice(0)) wake();
  }

  async pace(): Promise<void> {
    if (performance.now() - this.since < this.sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.receiving > 0 && this.waitMs > 0) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.idle = this.idle.filter((w) => w !== wake);
          resolve();
        }, this.waitMs);
        this.idle.push(wake);
      });
    }
    this.since = performance.now();
  }
}
