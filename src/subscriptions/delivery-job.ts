import { randomUUID } from 'node:crypto';
import type { Resource, Subscription } from 'fhir/r4.js';
import { PermanentJobError, RetryLaterError, type JobContext, type QueueDefinition } from '../jobs/types.js';
import type { ResourceStore } from '../storage/resource-store.js';
import type { SubscriptionStore } from '../storage/subscription-store.js';
import type { ChannelRegistry } from './channels/registry.js';
import { buildDelivery } from './notification.js';
import type { SubscriptionStatusWriter } from './status.js';

export const DELIVERY_QUEUE = 'subscription-delivery';
/**
 * A claim older than this belongs to a dead run: a delivery takes at most the channel timeout,
 * so twice that plus a margin.
 */
export function staleClaimMs(timeoutMs: number): number {
  return timeoutMs * 2 + 5_000;
}
/** A job whose channel has no sender in this process is put back for another process. */
const NO_SENDER_DELAY_MS = 5_000;

export interface DeliveryJobDeps {
  deliveries: SubscriptionStore;
  store: ResourceStore;
  channels: ChannelRegistry;
  statusWriter: SubscriptionStatusWriter;
  fhirBase: string;
  attempts: number;
  backoffMs: number;
  concurrency: number;
  /** the channels' time limit per delivery (SUBSCRIPTION_TIMEOUT_MS) */
  timeoutMs: number;
  log: (message: string, error?: unknown) => void;
}

function message(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).slice(0, 500);
}

/**
 * The delivery queue: job id = delivery row id (no PHI in the queue). A run claims its row,
 * reads the Subscription and the matched version, hands them to the channel's sender and
 * records the outcome; a failure is retried with exponential backoff, the last one leaves a
 * dead letter and puts the Subscription in status error with the reason.
 */
export function deliveryQueue(deps: DeliveryJobDeps): QueueDefinition {
  return {
    name: DELIVERY_QUEUE,
    attempts: deps.attempts,
    backoffMs: deps.backoffMs,
    concurrency: deps.concurrency,
    // A delivery takes at most the channel timeout: a crashed process's jobs come back as soon
    // as their row claim is stale too (not after BullMQ's default minute).
    stallRecoveryMs: staleClaimMs(deps.timeoutMs),
    handler: (payload, ctx) => run(deps, deliveryIdOf(payload.jobId), ctx),
    async onGiveUp(payload, error) {
      const id = deliveryIdOf(payload.jobId);
      const record = await deps.deliveries.get(id);
      await deps.deliveries.deadLetter(id, message(error));
      if (record?.status === 'pending') {
        await deps.statusWriter.setError(record.subscriptionId, `delivery of event ${record.eventNumber} failed after ${deps.attempts} attempt(s): ${message(error)}`);
      }
    },
    recoverable: async () => (await deps.deliveries.unclaimed(10_000, staleClaimMs(deps.timeoutMs), 1000)).map(recoveryJobId).map((jobId) => ({ jobId })),
  };
}

/**
 * The job id of a delivery: its row id; for one abandoned by a dead run, a fresh job id
 * (`<row id>_r<time>`), because the queue may still hold the dead run's job under the row id
 * (BullMQ hands a stalled job back only after its lock expires). The row's claim keeps the
 * two from both delivering.
 */
export function recoveryJobId(row: { id: string; abandoned: boolean }): string {
  return row.abandoned ? `${row.id}_r${Date.now()}` : row.id;
}

export function deliveryIdOf(jobId: string): string {
  const at = jobId.indexOf('_r');
  return at < 0 ? jobId : jobId.slice(0, at);
}

async function run(deps: DeliveryJobDeps, id: string, ctx: JobContext): Promise<void> {
  const runId = randomUUID();
  const stale = staleClaimMs(deps.timeoutMs);
  const claim = await deps.deliveries.claim(id, runId, stale);
  if (claim.kind === 'done') return;
  if (claim.kind === 'busy') throw new RetryLaterError('another run holds this delivery', stale);
  const record = claim.delivery;
  try {
    const sub = claim.subscriptionJson ? (JSON.parse(claim.subscriptionJson) as Subscription & { id: string }) : undefined;
    if (!sub || sub.status !== 'active') {
      // Deleted or switched off since the event: nobody wants it any more.
      await deps.deliveries.finish(id, runId, 'cancelled', sub ? `Subscription is ${sub.status}` : 'Subscription deleted');
      return;
    }
    const sender = deps.channels.get(sub.channel.type);
    if (!sender) {
      await deps.deliveries.release(id, runId, undefined, false);
      throw new RetryLaterError(`no ${sub.channel.type} sender in this process`, NO_SENDER_DELAY_MS);
    }
    const resource = record.action !== 'delete' && claim.resourceJson ? (JSON.parse(claim.resourceJson) as Resource) : undefined;
    await sender.deliver(buildDelivery(sub, record, deps.fhirBase, resource));
    await deps.deliveries.finish(id, runId, 'delivered');
  } catch (e) {
    if (e instanceof RetryLaterError) throw e;
    const last = e instanceof PermanentJobError || ctx.attempt >= ctx.maxAttempts;
    // Not the PHI of the event: the channel's message (status code, network error).
    if (!last) deps.log(`subscription ${record.subscriptionId} delivery of event ${record.eventNumber} attempt ${ctx.attempt} failed: ${message(e)}`);
    await deps.deliveries.release(id, runId, message(e), true);
    throw e;
  }
}
