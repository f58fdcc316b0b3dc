import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { JobInterruptedError, PermanentJobError, RetryLaterError, type JobOutbox, type JobPayload, type JobRunner, type QueueDefinition } from './types.js';

/** Finished jobs kept in Redis for inspection; the state clients poll is in PostgreSQL anyway. */
const KEEP_COMPLETED = { age: 24 * 3600, count: 1000 };
const KEEP_FAILED = { age: 7 * 24 * 3600, count: 1000 };
/** When a closing worker hands a job back, another process may take it after this delay. */
const HAND_BACK_DELAY_MS = 1000;
/** A server whose Redis is unreachable at start fails to start rather than hang. */
const READY_TIMEOUT_MS = 10_000;
/** Running jobs hand back their work at the next checkpoint (page): seconds, not minutes. */
const CLOSE_TIMEOUT_MS = 30_000;
/** How often held jobs (outbox queues, Redis away) are offered to Redis again, by every process. */
const OUTBOX_FLUSH_MS = 2_000;

/** One connection attempt and a PING, bounded in time; throws when Redis is not there. */
async function probe(url: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: READY_TIMEOUT_MS, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined); // reported by the rejection below
  try {
    await within(client.connect().then(() => client.ping()), READY_TIMEOUT_MS, 'Redis');
  } catch (e) {
    throw new Error(`Redis at ${new URL(url).host} is not reachable (REDIS_URL): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  } finally {
    client.disconnect();
  }
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} not ready after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface BullMqOptions {
  redisUrl: string;
  /**
   * Key prefix of every queue: processes sharing one database must share it, processes on
   * different databases (tests, tenants) must not (see `queuePrefix`).
   */
  prefix: string;
  onError?: (error: unknown) => void;
  /** Holds the jobs of `outbox` queues while Redis is away. */
  outbox?: JobOutbox;
}

/**
 * Queues on Redis (BullMQ): one Queue (to add) and one Worker per queue definition, job id =
 * our job row id (so a job is never queued twice), attempts and exponential backoff from the
 * definition. BullMQ's stalled-job check re-delivers the jobs of a process that died; the job
 * row's claim decides whether the re-delivery may run.
 */
export class BullMqJobRunner implements JobRunner {
  readonly kind = 'bullmq' as const;
  private readonly queues = new Map<string, { definition: QueueDefinition; queue: Queue<JobPayload> }>();
  private readonly workers: Worker<JobPayload>[] = [];
  private readonly abort = new AbortController();
  private closed = false;
  private outboxTimer?: NodeJS.Timeout;
  private flushing?: Promise<unknown>;

  private constructor(private readonly options: BullMqOptions) {}

  static async create(definitions: readonly QueueDefinition[], options: BullMqOptions): Promise<BullMqJobRunner> {
    // BullMQ objects built against an unreachable Redis retry forever and never close: probe first.
    await probe(options.redisUrl);
    const runner = new BullMqJobRunner(options);
    try {
      for (const definition of definitions) await runner.add(definition);
    } catch (e) {
      await runner.close();
      throw e;
    }
    if (options.outbox && definitions.some((d) => d.outbox)) {
      runner.outboxTimer = setInterval(() => runner.flushOutbox(), OUTBOX_FLUSH_MS);
      runner.outboxTimer.unref();
    }
    return runner;
  }

  /** Workers block on Redis and must ride out reconnects: BullMQ wants maxRetriesPerRequest null. */
  private workerConnection() {
    return { url: this.options.redisUrl, maxRetriesPerRequest: null };
  }

  /** Adding is done inside a kick-off request: fail fast while Redis is away (the client gets 503). */
  private queueConnection() {
    return { url: this.options.redisUrl, enableOfflineQueue: false };
  }

  async depths(): Promise<Array<{ queue: string; waiting: number; active: number; delayed: number; failed: number }>> {
    return Promise.all(
      [...this.queues.values()].map(async ({ definition, queue }) => {
        const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'prioritized', 'waiting-children');
        return { queue: definition.name, waiting: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0), active: c.active ?? 0, delayed: c.delayed ?? 0, failed: c.failed ?? 0 };
      }),
    );
  }

  private async add(definition: QueueDefinition): Promise<void> {
    const queue = new Queue<JobPayload>(definition.name, {
      connection: this.queueConnection(),
      prefix: this.options.prefix,
      defaultJobOptions: {
        attempts: definition.attempts,
        backoff: { type: 'exponential', delay: definition.backoffMs },
        removeOnComplete: KEEP_COMPLETED,
        removeOnFail: KEEP_FAILED,
      },
    });
    queue.on('error', (e) => this.options.onError?.(e));
    this.queues.set(definition.name, { definition, queue });
    const worker = new Worker<JobPayload>(definition.name, (job, token) => this.process(definition, job, token), {
      connection: this.workerConnection(),
      prefix: this.options.prefix,
      concurrency: definition.concurrency,
      ...(definition.stallRecoveryMs ? { lockDuration: definition.stallRecoveryMs, stalledInterval: Math.ceil(definition.stallRecoveryMs / 2) } : {}),
    });
    worker.on('error', (e) => this.options.onError?.(e));
    this.workers.push(worker);
    await within(Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]), READY_TIMEOUT_MS, `Redis queue ${definition.name}`);
  }

  private async process(definition: QueueDefinition, job: Job<JobPayload>, token: string | undefined): Promise<void> {
    const attempt = job.attemptsMade + 1;
    try {
      await definition.handler({ jobId: job.data.jobId }, { attempt, maxAttempts: definition.attempts, signal: this.abort.signal });
    } catch (e) {
      const postpone = e instanceof RetryLaterError ? e.delayMs : e instanceof JobInterruptedError || this.closed ? HAND_BACK_DELAY_MS : undefined;
      if (postpone !== undefined) {
        // Delayed, not failed: the attempt is not counted (BullMQ's documented pattern).
        await job.moveToDelayed(Date.now() + postpone, token);
        throw new DelayedError();
      }
      if (e instanceof PermanentJobError || attempt >= definition.attempts) {
        await definition.onGiveUp({ jobId: job.data.jobId }, e);
        throw new UnrecoverableError(e instanceof Error ? e.message : String(e));
      }
      throw e;
    }
  }

  async enqueue(queueName: string, payload: JobPayload): Promise<void> {
    const entry = this.queues.get(queueName);
    if (!entry) throw new Error(`no queue named ${queueName}`);
    try {
      await entry.queue.add(queueName, { jobId: payload.jobId }, { jobId: payload.jobId });
    } catch (e) {
      if (!entry.definition.outbox || !this.options.outbox) throw e;
      await this.options.outbox.hold(queueName, payload.jobId);
    }
  }

  /** Offers the held jobs to Redis again (one flush at a time per process). */
  private flushOutbox(): void {
    if (this.closed || this.flushing || !this.options.outbox) return;
    this.flushing = this.options.outbox
      .flush(async (queueName, jobId) => {
        const entry = this.queues.get(queueName);
        if (entry) await entry.queue.add(queueName, { jobId }, { jobId });
      })
      .catch((e: unknown) => this.options.onError?.(e))
      .finally(() => (this.flushing = undefined));
  }

  /**
   * Pauses the queues in Redis, i.e. for every process sharing them (a worker-local pause
   * cannot stop a job its blocking fetch is already receiving). Running jobs continue.
   */
  async pause(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.queue.pause()));
  }

  async resume(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.queue.resume()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.outboxTimer);
    await this.flushing;
    // Running handlers stop at their next checkpoint and hand their job back (moveToDelayed).
    this.abort.abort(new JobInterruptedError('the job runner is closing'));
    // Bounded: a worker whose Redis went away never finishes closing (BullMQ keeps reconnecting).
    const closing = Promise.allSettled([...this.workers.map((w) => w.close()), ...[...this.queues.values()].map((q) => q.queue.close())]);
    await within(closing, CLOSE_TIMEOUT_MS, 'closing the job queues').catch((e: unknown) => this.options.onError?.(e));
  }
}
