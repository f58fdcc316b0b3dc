import { describe, expect, it } from 'vitest';
import { runLoadtest } from '../../bench/loadtest.js';

/**
 * Issue 17 §2, the short form of `npm run loadtest` that CI runs: the real server process on a
 * socket, a hospital mix of reads, searches, creates, patches, transactions and history at a fixed
 * rate, then flat out. Latency is reported, not asserted (these machines are noisy and shared);
 * what must hold is that every request of the mix is answered with success.
 */
describe('load test, short form', () => {
  it('a fixed-rate mix and a flat-out run answer every request with 2xx', async () => {
    const lines: string[] = [];
    const result = await runLoadtest({ rate: 40, durationSeconds: 10, maxDurationSeconds: 6, connections: 8, patients: 2, log: (line) => lines.push(line) });
    console.log(lines.join('\n'));
    expect(result.loadedPatients).toBeGreaterThanOrEqual(2);
    expect(result.fixed.requests).toBeGreaterThan(200);
    for (const phase of [result.fixed, result.max]) {
      expect(phase.errors, phase.phase).toBe(0);
      expect(phase.timeouts, phase.phase).toBe(0);
      expect(phase.non2xx, `${phase.phase}: ${JSON.stringify(phase.byOperation)}`).toBe(0);
      // Every kind of request of the mix was exercised.
      expect(Object.keys(phase.byOperation).length, phase.phase).toBeGreaterThanOrEqual(8);
    }
  }, 240_000);
});
