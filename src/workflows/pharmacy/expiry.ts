import { RetryLaterError, type QueueDefinition } from '../../jobs/types.js';
import { addMovement, deactivateExpired, markExpiring, productsToSweep } from '../../storage/pharmacy-store.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import { asSystem } from '../../subscriptions/write-context.js';
import { addDays, EXPIRY_ALERT_DAYS, today } from './definitions.js';
import { lockProduct, refreshProduct } from './stock.js';

/** The daily pharmacy job's queue and its one job (a job id is queued once: every process may ask). */
export const EXPIRY_QUEUE = 'pharmacy-expiry';
export const EXPIRY_JOB = 'daily';
/** Products swept per statement page (each product is its own transaction). */
const PAGE = 200;
const DAY_MS = 86_400_000;

export interface SweepResult {
  /** batches written off at expiry */
  writtenOff: number;
  /** batches newly alerted (90 days to expiry) */
  alerted: number;
  products: number;
}

/**
 * FR-PH-001 "alert 90 days before expiry" and "auto-deactivate expired batches": for every
 * product with work, in one transaction per product (Medication row, then batch rows, locked as
 * every stock movement does), batches past expiry on `day` are deactivated and their quantity
 * written off (`expiry-write-off` movements), batches within 90 days of expiry are marked
 * alerted (once per batch), and the Medication's stock extensions are rewritten, which raises
 * PHARMACY_BATCH_EXPIRING (and PHARMACY_STOCK_LOW) through the notification machinery.
 * Idempotent: running it twice a day, or in two processes, changes nothing the second time.
 */
export async function sweepExpiry(store: ResourceStore, db: Parameters<typeof productsToSweep>[0], day = today()): Promise<SweepResult> {
  const horizon = addDays(day, EXPIRY_ALERT_DAYS);
  const result: SweepResult = { writtenOff: 0, alerted: 0, products: 0 };
  const done = new Set<string>();
  for (;;) {
    const products = (await productsToSweep(db, day, horizon, PAGE)).filter((p) => !done.has(p));
    if (products.length === 0) return result;
    for (const medicationId of products) {
      done.add(medicationId);
      await asSystem(() =>
        store.transaction(async (tx) => {
          await lockProduct(tx, medicationId);
          const exec = await tx.executor();
          const expired = await deactivateExpired(exec, medicationId, day);
          for (const b of expired) {
            await addMovement(exec, { batchId: b.id, medicationId, kind: 'expiry-write-off', quantity: String(-Number(b.quantity)), balance: '0', author: 'server', reason: `expired before ${day}` });
          }
          const alerted = await markExpiring(exec, medicationId, horizon);
          await refreshProduct(tx, medicationId, day);
          result.writtenOff += expired.length;
          result.alerted += alerted;
          result.products++;
        }),
      );
    }
  }
}

function msUntilNextRun(now = Date.now()): number {
  // Shortly after midnight UTC, when a batch's expiry date has passed.
  return DAY_MS - (now % DAY_MS) + 60_000;
}

/**
 * The daily job: sweeps at once when a process starts, then sleeps until the next day (a
 * delayed job on BullMQ, a timer in-process, via RetryLaterError, which counts no attempt).
 */
export function expiryQueue(store: ResourceStore, db: Parameters<typeof productsToSweep>[0], log: (message: string, error?: unknown) => void): QueueDefinition {
  return {
    name: EXPIRY_QUEUE,
    attempts: 5,
    backoffMs: 60_000,
    concurrency: 1,
    handler: async () => {
      const r = await sweepExpiry(store, db);
      if (r.writtenOff || r.alerted) log(`pharmacy expiry sweep: ${r.writtenOff} batches written off, ${r.alerted} alerted`);
      throw new RetryLaterError('next daily pharmacy sweep', msUntilNextRun());
    },
    onGiveUp: async (_payload, error) => log('pharmacy expiry sweep given up', error),
    recoverable: async () => [{ jobId: EXPIRY_JOB }],
  };
}
