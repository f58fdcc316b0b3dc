import { describe, expect, it } from 'vitest';
import { allocate, applyRate, formatMoney, minorToText, money, parseDecimal, toMinor } from './money.js';

describe('money in minor units (no float drift)', () => {
  it('turns decimals into exact minor units per currency', () => {
    expect(toMinor(0.1, 'USD')! + toMinor(0.2, 'USD')!).toBe(30n);
    expect(toMinor('1250000', 'VND')).toBe(1250000n);
    expect(toMinor(12.3, 'USD')).toBe(1230n);
    expect(toMinor(100.5, 'VND')).toBeUndefined();
    expect(toMinor(1.005, 'USD')).toBeUndefined();
    expect(toMinor('1.500', 'USD')).toBe(150n);
    expect(toMinor(1e21, 'VND')).toBeUndefined();
    expect(minorToText(-5n, 'USD')).toBe('-0.05');
    expect(money(1999n, 'USD')).toEqual({ value: 19.99, currency: 'USD' });
  });

  it('applies rates exactly, rounding half away from zero once', () => {
    expect(applyRate(90000n, parseDecimal('0.05')!)).toBe(4500n);
    expect(applyRate(333n, parseDecimal('0.015')!)).toBe(5n); // 4.995
    expect(applyRate(-333n, parseDecimal('0.015')!)).toBe(-5n);
    expect(applyRate(10n, parseDecimal('0.333')!)).toBe(3n);
  });

  it('spreads an amount over lines in proportion, summing exactly', () => {
    const shares = allocate(100n, [1n, 1n, 1n]);
    expect(shares.reduce((a, b) => a + b, 0n)).toBe(100n);
    expect(shares).toEqual([34n, 33n, 33n]);
    expect(allocate(50000n, [150000n, 100000n, 40000n]).reduce((a, b) => a + b, 0n)).toBe(50000n);
  });

  it('formats for receipts', () => {
    expect(formatMoney(1250000n, 'VND')).toBe('1,250,000 VND');
    expect(formatMoney(-123456n, 'USD')).toBe('-1,234.56 USD');
  });
});
