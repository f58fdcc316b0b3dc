import { backoffDelay, JobInterruptedError, PermanentJobError, RetryLaterError, type JobPayload, type JobRunner, type QueueDefinition } from './types.js';

/** How often unfinished jobs nobody works on are picked up (after a crash, or from another process). */
export const RECOVERY_INTERVAL_MS = 60_000;

interface Pending {
  payload: JobPayload;
  /** failed runs so far */
  failures: number;
}

interface QueueState {
  definition: QueueDefinition;
  pending: Pending[];
  running: number;
  /** job ids queued, waiting for a retry, or running: a second enqueue of one is ignored */
  known: Set<string>;
}

/**
 * Jobs in this process, for the embedded setup without Redis. Same contract as the BullMQ
 * runner: retries with the queue's backoff, postponement without counting an attempt,
 * give-up callback. The queue itself is not durable; durability comes from the job rows in
 * the database, which `recoverable()` sweeps at start and every RECOVERY_INTERVAL_MS.
 */
export class InProcessJobRunner implements JobRunner {
  readonly kind = 'in-process' as const;
  private readonly queues = new Map<string, QueueState>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly active = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private paused = false;
  private closed = false;
  private sweepTimer?: NodeJS.Timeout;

  constructor(definitions: readonly QueueDefinition[], private readonly onError: (error: unknown) => void = () => undefined) {
    for (const definition of definitions) {
      this.queues.set(definition.name, { definition, pending: [], running: 0, known: new Set() });
    }
  }

  /** Picks up jobs left unfinished (by a crash or a stop) and keeps doing so periodically. */
  async start(): Promise<void> {
    await this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), RECOVERY_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  async enqueue(queue: string, payload: JobPayload): Promise<void> {
    const state = this.state(queue);
    if (this.closed || state.known.has(payload.jobId)) return;
    state.known.add(payload.jobId);
    state.pending.push({ payload, failures: 0 });
    this.pump(state);
  }

  async pause(): Promise<void> {
    this.paused = true;
  }

  async resume(): Promise<void> {
    this.paused = false;
    for (const state of this.queues.values()) this.pump(state);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.abort.abort(new JobInterruptedError('the job runner is closing'));
    await Promise.allSettled([...this.active]);
  }

  async depths(): Promise<Array<{ queue: string; waiting: number; active: number; delayed: number; failed: number }>> {
    // Retries waiting on a timer are counted as delayed: known ids neither pending nor running.
    return [...this.queues.values()].map((q) => ({
      queue: q.definition.name,
      waiting: q.pending.length,
      active: q.running,
      delayed: Math.max(0, q.known.size - q.pending.length - q.running),
      failed: 0,
    }));
  }

  private state(queue: string): QueueState {
    const state = this.queues.get(queue);
    if (!state) throw new Error(`no queue named ${queue}`);
    return state;
  }

  private async sweep(): Promise<void> {
    for (const state of this.queues.values()) {
      if (!state.definition.recoverable || this.closed) continue;
      try {
        for (const payload of await state.definition.recoverable()) await this.enqueue(state.definition.name, payload);
      } catch (e) {
        this.onError(e);
      }
    }
  }

  private pump(state: QueueState): void {
    while (!this.paused && !this.closed && state.running < state.definition.concurrency && state.pending.length > 0) {
      const item = state.pending.shift()!;
      state.running++;
      const run = this.execute(state, item).finally(() => {
        state.running--;
        this.active.delete(run);
        this.pump(state);
      });
      this.active.add(run);
    }
  }

  private later(state: QueueState, item: Pending, delayMs: number): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      state.pending.push(item);
      this.pump(state);
    }, delayMs);
    timer.unref();
    this.timers.add(timer);
  }

  private async execute(state: QueueState, item: Pending): Promise<void> {
    const { definition } = state;
    let finished = true;
    try {
      await definition.handler(item.payload, { attempt: item.failures + 1, maxAttempts: definition.attempts, signal: this.abort.signal });
    } catch (e) {
      // Closing: the handler released the job; the next start (or another process) resumes it.
      if (this.closed || e instanceof JobInterruptedError) return;
      if (e instanceof RetryLaterError) {
        finished = false;
        this.later(state, item, e.delayMs);
        return;
      }
      const failures = item.failures + 1;
      if (!(e instanceof PermanentJobError) && failures < definition.attempts) {
        finished = false;
        this.later(state, { payload: item.payload, failures }, backoffDelay(definition, failures));
        return;
      }
      try {
        await definition.onGiveUp(item.payload, e);
      } catch (giveUpError) {
        this.onError(giveUpError);
      }
    } finally {
      if (finished) state.known.delete(item.payload.jobId);
    }
  }
}
