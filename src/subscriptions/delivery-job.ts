import { randomUUID } from 'node:crypto';
import type { Resource, Subscription } from 'fhir/r4.js';
import { JobInterruptedError, PermanentJobError, RetryLaterError, type JobContext, type QueueDefinition } from '../jobs/types.js';
import type { ResourceStore } from '../storage/resource-store.js';
import type { ClaimedDelivery, DeliveryRecord, DeliveryStatus, DeliveryTarget, SubscriptionStore } from '../storage/subscription-store.js';
import type { ChannelRegistry } from './channels/registry.js';
import { maskBody, maskedFields } from '../workflows/patient-masking.js';
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
 * The delivery queue: job id = `b-<batch id>` for the deliveries one dispatch round stored for
 * one Subscription, or a delivery row id (no PHI in the queue). A run claims the rows, reads
 * the Subscription and the matched versions, hands each to the channel's sender and records
 * the outcomes; a failure is retried with exponential backoff (only the rows still pending),
 * the last one leaves dead letters and puts the Subscription in status error with the reason.
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
    handler: (payload, ctx) => run(deps, targetOf(payload.jobId), ctx),
    async onGiveUp(payload, error) {
      const dead = await deps.deliveries.deadLetterMany(targetOf(payload.jobId), message(error));
      // One status change per Subscription, naming its first failed delivery.
      const first = new Map<string, DeliveryRecord>();
      for (const r of dead) if (!first.has(r.subscriptionId)) first.set(r.subscriptionId, r);
      for (const r of first.values()) {
        const what = r.kind === 'event' ? `delivery of event ${r.eventNumber}` : `the ${r.kind}`;
        await deps.statusWriter.setError(r.subscriptionId, `${what} failed after ${r.attempts} attempt(s): ${r.error ?? message(error)}`);
      }
    },
    recoverable: async () => recoveryJobIds(await deps.deliveries.unclaimed(10_000, staleClaimMs(deps.timeoutMs), 1000)).map((jobId) => ({ jobId })),
  };
}

/** Job id of a batch of deliveries (the rows sharing `batch_id`). */
export function batchJobId(batchId: string): string {
  return `b-${batchId}`;
}

/**
 * Job ids for deliveries to queue again: the row's batch job (or its own id for a row stored
 * without a batch); for one abandoned by a dead run, a fresh job id (`<id>_r<time>`), because
 * the queue may still hold the dead run's job under the plain id (BullMQ hands a stalled job
 * back only after its lock expires). The rows' claims keep the two from both delivering.
 */
export function recoveryJobIds(rows: ReadonlyArray<{ id: string; abandoned: boolean; batchId?: string }>): string[] {
  const out = new Map<string, boolean>();
  for (const row of rows) {
    const base = row.batchId ? batchJobId(row.batchId) : row.id;
    out.set(base, (out.get(base) ?? false) || row.abandoned);
  }
  const now = Date.now();
  return [...out].map(([base, abandoned]) => (abandoned ? `${base}_r${now}` : base));
}

/** What a job id names: `<row id>` or `b-<batch id>`, either with an optional `_r<time>` suffix. */
export function targetOf(jobId: string): DeliveryTarget {
  const at = jobId.indexOf('_r');
  const base = at < 0 ? jobId : jobId.slice(0, at);
  return base.startsWith('b-') ? { batch: base.slice(2) } : { id: base };
}

/** Deliveries of one job sent at once (a batch belongs to one Subscription: one receiver). */
const PARALLEL_PER_JOB = 8;

/**
 * One job: claims its rows (one statement), sends each through the channel's sender (a few at
 * a time, in event order), then records the outcomes (one statement for the delivered and
 * cancelled, one for the failed). Any failure fails the job: the runner retries it with
 * backoff, and the retry claims only the rows still pending.
 */
async function run(deps: DeliveryJobDeps, target: DeliveryTarget, ctx: JobContext): Promise<void> {
  const runId = randomUUID();
  const stale = staleClaimMs(deps.timeoutMs);
  const { claimed, busy } = await deps.deliveries.claimMany(target, runId, stale);
  if (claimed.length === 0) {
    if (busy) throw new RetryLaterError('another run holds these deliveries', stale);
    return;
  }
  const done: Array<{ id: string; status: DeliveryStatus; error?: string }> = [];
  const failed: Array<{ id: string; error: string; permanent: boolean; record: DeliveryRecord }> = [];
  const subs = new Map<string, (Subscription & { id: string }) | undefined>();
  const toSend: Array<{ c: ClaimedDelivery; sub: Subscription & { id: string } }> = [];
  for (const c of claimed) {
    const json = c.subscriptionJson;
    if (json !== undefined && !subs.has(json)) subs.set(json, JSON.parse(json) as Subscription & { id: string });
    const sub = json === undefined ? undefined : subs.get(json);
    // Deleted or switched off since the event: nobody wants it any more.
    if (!sub || sub.status !== 'active') done.push({ id: c.delivery.id, status: 'cancelled', error: sub ? `Subscription is ${sub.status}` : 'Subscription deleted' });
    else toSend.push({ c, sub });
  }
  const missing = toSend.find((x) => !deps.channels.get(x.sub.channel.type));
  if (missing) {
    await deps.deliveries.finishMany(runId, done);
    await deps.deliveries.releaseMany(runId, toSend.map((x) => ({ id: x.c.delivery.id })), false);
    throw new RetryLaterError(`no ${missing.sub.channel.type} sender in this process`, NO_SENDER_DELAY_MS);
  }
  let next = 0;
  const interrupted: string[] = [];
  // A run stops starting deliveries after one channel timeout, so it ends well before its
  // claims could be taken for abandoned (staleClaimMs); the rest continue in the next run.
  const deadline = Date.now() + deps.timeoutMs;
  const worker = async () => {
    while (next < toSend.length) {
      const { c, sub } = toSend[next++]!;
      const record = c.delivery;
      if (ctx.signal.aborted || Date.now() > deadline) {
        interrupted.push(record.id);
        continue;
      }
      try {
        let resource = record.kind === 'event' && record.action !== 'delete' && c.resourceJson ? (JSON.parse(c.resourceJson) as Resource) : undefined;
        // What the subscriber's role sees masked (national id, phone, address) leaves masked on every channel.
        const masked = maskedFields(c.subscriber);
        if (resource && masked) resource = maskBody(resource, masked);
        await deps.channels.get(sub.channel.type)!.deliver(buildDelivery(sub, record, deps.fhirBase, resource));
        done.push({ id: record.id, status: 'delivered' });
      } catch (e) {
        failed.push({ id: record.id, error: message(e), permanent: e instanceof PermanentJobError, record });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_PER_JOB, toSend.length) }, worker));
  await deps.deliveries.finishMany(runId, done);
  await deps.deliveries.releaseMany(runId, failed, true);
  await deps.deliveries.releaseMany(runId, interrupted.map((id) => ({ id })), false);
  if (failed.length > 0) {
    failed.sort((a, b) => a.record.eventNumber - b.record.eventNumber);
    const first = failed[0]!;
    const last = failed.every((f) => f.permanent) || ctx.attempt >= ctx.maxAttempts;
    // Not the PHI of the event: the channel's message (status code, network error).
    if (!last) deps.log(`subscription ${first.record.subscriptionId}: ${failed.length} delivery(ies) from event ${first.record.eventNumber} failed at attempt ${ctx.attempt}: ${first.error}`);
    if (failed.every((f) => f.permanent)) throw new PermanentJobError(first.error);
    throw new Error(first.error);
  }
  if (interrupted.length > 0) {
    if (ctx.signal.aborted) throw new JobInterruptedError('the job runner is closing');
    throw new RetryLaterError('the rest of the batch continues in a new run', 0);
  }
}
