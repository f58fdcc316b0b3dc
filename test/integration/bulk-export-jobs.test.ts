import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BullMqJobRunner } from '../../src/jobs/bullmq-runner.js';
import { InProcessJobRunner } from '../../src/jobs/in-process-runner.js';
import { PermanentJobError, RetryLaterError, type JobContext, type JobRunner, type QueueDefinition } from '../../src/jobs/types.js';

/**
 * The job runner contract, the same on both runners: retries with backoff then give-up,
 * no retry for permanent errors, postponement without using an attempt, one run per job id,
 * interruption on close. BullMQ runs only when REDIS_URL is set (own key prefix per test).
 */
type Behaviour = (ctx: JobContext, run: number) => Promise<void>;

interface Recorder {
  runs: Map<string, JobContext[]>;
  givenUp: Map<string, unknown>;
}

function definition(behaviours: Map<string, Behaviour>, rec: Recorder): QueueDefinition {
  return {
    name: 'test',
    attempts: 3,
    backoffMs: 20,
    concurrency: 2,
    async handler(payload, ctx) {
      const runs = rec.runs.get(payload.jobId) ?? [];
      runs.push({ ...ctx });
      rec.runs.set(payload.jobId, runs);
      await behaviours.get(payload.jobId)?.(ctx, runs.length);
    },
    async onGiveUp(payload, error) {
      expect(rec.givenUp.has(payload.jobId)).toBe(false);
      rec.givenUp.set(payload.jobId, error);
    },
  };
}

const makers: Array<[string, (d: QueueDefinition) => Promise<JobRunner>]> = [
  ['in-process', async (d) => new InProcessJobRunner([d])],
  ...(process.env.REDIS_URL
    ? ([['BullMQ', (d: QueueDefinition) => BullMqJobRunner.create([d], { redisUrl: process.env.REDIS_URL!, prefix: `fhir-test-${randomUUID()}` })]] as Array<[string, (d: QueueDefinition) => Promise<JobRunner>]>)
    : []),
];

async function until(condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.each(makers)('%s job runner', (_name, make) => {
  let runner: JobRunner | undefined;
  afterEach(async () => {
    await runner?.close();
    runner = undefined;
  });

  it('retries a failing job with backoff, then gives up once; a job that succeeds later is not given up', async () => {
    const rec: Recorder = { runs: new Map(), givenUp: new Map() };
    const behaviours = new Map<string, Behaviour>([
      ['always-fails', async () => { throw new Error('database hiccup'); }],
      ['fails-once', async (_ctx, run) => { if (run === 1) throw new Error('hiccup'); }],
    ]);
    runner = await make(definition(behaviours, rec));
    const started = Date.now();
    await runner.enqueue('test', { jobId: 'always-fails' });
    await runner.enqueue('test', { jobId: 'fails-once' });
    await until(() => rec.givenUp.has('always-fails') && (rec.runs.get('fails-once')?.length ?? 0) === 2);
    expect(rec.runs.get('always-fails')!.map((c) => c.attempt)).toEqual([1, 2, 3]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(20 + 40 - 5);
    expect((rec.givenUp.get('always-fails') as Error).message).toContain('database hiccup');
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.givenUp.has('fails-once')).toBe(false);
  });

  it('does not retry a PermanentJobError; RetryLaterError runs again without using an attempt', async () => {
    const rec: Recorder = { runs: new Map(), givenUp: new Map() };
    const behaviours = new Map<string, Behaviour>([
      ['permanent', async () => { throw new PermanentJobError('bad request stored'); }],
      ['postponed', async (_ctx, run) => { if (run <= 3) throw new RetryLaterError('busy', 20); }],
    ]);
    runner = await make(definition(behaviours, rec));
    await runner.enqueue('test', { jobId: 'permanent' });
    await runner.enqueue('test', { jobId: 'postponed' });
    await until(() => rec.givenUp.has('permanent') && (rec.runs.get('postponed')?.length ?? 0) === 4);
    expect(rec.runs.get('permanent')!.length).toBe(1);
    // four runs, no attempt counted, nothing given up
    expect(rec.runs.get('postponed')!.map((c) => c.attempt)).toEqual([1, 1, 1, 1]);
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.givenUp.has('postponed')).toBe(false);
  });

  it('runs a job id once however often it is queued, holds jobs while paused, and interrupts running jobs on close', async () => {
    const rec: Recorder = { runs: new Map(), givenUp: new Map() };
    let aborted = false;
    const behaviours = new Map<string, Behaviour>([
      ['long', (ctx) => new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => { aborted = true; resolve(); }))],
    ]);
    runner = await make(definition(behaviours, rec));
    await runner.pause();
    await runner.enqueue('test', { jobId: 'once' });
    await runner.enqueue('test', { jobId: 'once' });
    await new Promise((r) => setTimeout(r, 200));
    expect(rec.runs.has('once')).toBe(false);
    await runner.resume();
    await until(() => rec.runs.has('once'));
    await runner.enqueue('test', { jobId: 'long' });
    await until(() => rec.runs.has('long'));
    await runner.close();
    runner = undefined;
    expect(aborted).toBe(true);
    expect(rec.runs.get('once')!.length).toBe(1);
  });
});

describe('in-process job runner recovery', () => {
  it('picks up unfinished jobs nobody works on when it starts (after a crash or a restart)', async () => {
    const rec: Recorder = { runs: new Map(), givenUp: new Map() };
    const d = definition(new Map(), rec);
    d.recoverable = async () => [{ jobId: 'left-over-1' }, { jobId: 'left-over-2' }];
    const runner = new InProcessJobRunner([d]);
    try {
      await runner.start();
      await until(() => rec.runs.has('left-over-1') && rec.runs.has('left-over-2'));
    } finally {
      await runner.close();
    }
  });
});
