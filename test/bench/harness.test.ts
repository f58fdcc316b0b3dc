import { describe, expect, it } from 'vitest';
import { alternated, warmUp } from '../../bench/harness.js';

describe('bench harness', () => {
  it('alternates two variants A B B A, each round continuing the index, and sums each variant’s rounds', async () => {
    const calls: string[] = [];
    const seen = new Set<number>();
    const op = (name: string) => async (i: number) => {
      expect(seen.has(i)).toBe(false);
      seen.add(i);
      calls.push(`${name}${Math.floor(i / 3)}`);
    };
    const [a, b] = await alternated({ name: 'a', operation: op('A') }, { name: 'b', operation: op('B') }, 3, 2, 1);
    // Round by round: which variant ran (the index / 3 is the round).
    expect([...new Set(calls)]).toEqual(['A0', 'B1', 'B2', 'A3']);
    expect(a.operations).toBe(6);
    expect(b.operations).toBe(6);
    expect(a.perSecond).toBeGreaterThan(0);
    expect(a.cpu?.nodeMicros).toBeGreaterThanOrEqual(0);
  });

  it('warms up with exactly the number of calls asked for, the index continuing across rounds', async () => {
    const indexes: number[] = [];
    const w = await warmUp('op', 4, async (i) => {
      indexes.push(i);
    }, 1_234);
    expect(w.operations).toBe(1_234);
    expect(indexes.sort((x, y) => x - y)).toEqual(Array.from({ length: 1_234 }, (_, i) => i));
  });
});
