import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { BullMqJobRunner } from '../../src/jobs/bullmq-runner.js';
import type { QueueDefinition } from '../../src/jobs/types.js';
import type { Db } from '../../src/storage/db.js';
import { JobOutboxStore } from '../../src/storage/job-outbox-store.js';
import { freePort } from '../support/ports.js';
import { redisServerAvailable, startRedis, stopRedis } from '../support/redis-server.js';
import { openTestDb, type TestDb } from '../support/search-db.js';

/**
 * Issue 17 §3: a job queued by an after-commit hook (a hospital notification event: a critical
 * result written while Redis is down) is not lost. Its queue is marked `outbox`: the failed
 * enqueue is held in the database and handed to BullMQ once Redis answers again.
 */
describe.skipIf(!redisServerAvailable)('jobs held while Redis is away (outbox queues)', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('holds the enqueue of an outbox queue in the database and runs the job after Redis is back; other queues fail fast', { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fhir-outbox-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const testDb: TestDb = await openTestDb();
    cleanups.push(() => testDb.close());
    const outbox = new JobOutboxStore(testDb.db as Db);
    const port = await freePort();
    let redis: ChildProcess = await startRedis(port, dir);
    cleanups.push(() => stopRedis(redis));

    const ran: string[] = [];
    const queue = (name: string, held: boolean): QueueDefinition => ({
      name,
      outbox: held,
      attempts: 1,
      backoffMs: 100,
      concurrency: 1,
      handler: async (payload) => void ran.push(payload.jobId),
      onGiveUp: async () => undefined,
    });
    const runner = await BullMqJobRunner.create([queue('events', true), queue('plain', false)], { redisUrl: `redis://127.0.0.1:${port}`, prefix: `outbox-test-${port}`, outbox, onError: () => undefined });
    cleanups.push(() => runner.close());
    const until = async (what: string, ok: () => boolean | Promise<boolean>) => {
      const deadline = Date.now() + 60_000;
      while (!(await ok())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (ran: ${ran.join(', ')})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    await runner.enqueue('events', { jobId: 'before' });
    await until('the first job', () => ran.includes('before'));

    await stopRedis(redis);
    await runner.enqueue('events', { jobId: 'while-down-1' });
    await runner.enqueue('events', { jobId: 'while-down-2' });
    await expect(runner.enqueue('plain', { jobId: 'plain-while-down' })).rejects.toThrow();
    expect(await outbox.count()).toBe(2);

    redis = await startRedis(port, dir);
    await until('the held jobs', () => ran.includes('while-down-1') && ran.includes('while-down-2'));
    await until('an empty outbox', async () => (await outbox.count()) === 0);
    expect(ran.filter((id) => id.startsWith('while-down'))).toHaveLength(2);
    expect(ran).not.toContain('plain-while-down');
  });
});
