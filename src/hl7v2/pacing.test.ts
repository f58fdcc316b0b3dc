import { performance } from 'node:perf_hooks';
import { describe, expect, test } from 'vitest';
import { Pacer } from './pacing.js';

const busy = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

describe('Pacer (mapping gives way to receipts)', () => {
  test('within a slice, pace returns without a turn of the event loop', async () => {
    const pacer = new Pacer(50, 4);
    await pacer.pace();
    let ran = false;
    setImmediate(() => (ran = true));
    await pacer.pace();
    expect(ran).toBe(false);
  });

  test('after a slice, pace lets pending callbacks run first', async () => {
    const pacer = new Pacer(1, 0);
    busy(2);
    let ran = false;
    setImmediate(() => (ran = true));
    await pacer.pace();
    expect(ran).toBe(true);
  });

  test('while a receipt is under way, pace waits for its answer', async () => {
    const pacer = new Pacer(0, 1000);
    pacer.receiptStarted();
    let resumed = false;
    const paced = pacer.pace().then(() => (resumed = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(resumed).toBe(false);
    pacer.receiptDone();
    await paced;
    expect(resumed).toBe(true);
  });

  test('the wait is bounded: receipts that never end do not stop mapping', async () => {
    const pacer = new Pacer(0, 10);
    pacer.receiptStarted();
    const t = performance.now();
    await pacer.pace();
    await pacer.pace();
    expect(performance.now() - t).toBeLessThan(500);
    expect(performance.now() - t).toBeGreaterThanOrEqual(15);
  });
});
