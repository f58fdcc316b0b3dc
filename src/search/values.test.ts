import { describe, expect, it } from 'vitest';
import { toCanonical } from './ucum.js';
import { normalizeString, parseDateRange, parseDecimal, precisionRange } from './values.js';

describe('date ranges (precision-aware, zone-less = UTC)', () => {
  it.each([
    ['2020', '2020-01-01T00:00:00.000Z', '2021-01-01T00:00:00.000Z'],
    ['2020-02', '2020-02-01T00:00:00.000Z', '2020-03-01T00:00:00.000Z'],
    ['2020-12-31', '2020-12-31T00:00:00.000Z', '2021-01-01T00:00:00.000Z'],
    ['2020-01-01T10:00:00+01:00', '2020-01-01T09:00:00.000Z', '2020-01-01T09:00:01.000Z'],
    ['2020-01-01T10:00:00', '2020-01-01T10:00:00.000Z', '2020-01-01T10:00:01.000Z'],
    ['2020-01-01T10:00Z', '2020-01-01T10:00:00.000Z', '2020-01-01T10:01:00.000Z'],
    ['2020-01-01T10:00:00.5-05:00', '2020-01-01T15:00:00.500Z', '2020-01-01T15:00:00.600Z'],
    ['9999', '9999-01-01T00:00:00.000Z', 'infinity'],
    ['0001-01-01', '0001-01-01T00:00:00.000Z', '0001-01-02T00:00:00.000Z'],
  ])('%s → [%s, %s)', (s, low, high) => {
    expect(parseDateRange(s)).toEqual({ low, high });
  });
  it.each(['2020-13', '2021-02-29', '2020-01-01T25:00:00Z', '2020-01-01T10', '20200101', '', 'x', '2020-01-01T10:00:00+15:00'])('rejects %s', (s) => {
    expect(parseDateRange(s)).toBeNull();
  });
});

describe('decimals and UCUM', () => {
  it('implicit precision ranges', () => {
    expect(precisionRange(parseDecimal('100')!)).toEqual({ low: '99.5', high: '100.5' });
    expect(precisionRange(parseDecimal('1.50')!)).toEqual({ low: '1.495', high: '1.505' });
    expect(precisionRange(parseDecimal('-2')!)).toEqual({ low: '-2.5', high: '-1.5' });
    expect(parseDecimal('1e400')).toBeNull();
    expect(parseDecimal('1.2.3')).toBeNull();
  });
  it('canonical units compare across prefixes exactly', () => {
    expect(toCanonical('5', 'mg')).toEqual({ value: '0.005', code: 'g' });
    expect(toCanonical('250', 'mg/dL')).toEqual({ value: '2.5', code: 'g/L' });
    expect(toCanonical('1', '[lb_av]')).toEqual({ value: '453.59237', code: 'g' });
    expect(toCanonical('90', 'min')).toEqual({ value: '5400', code: 's' });
    expect(toCanonical('5.4', 'mmol/L')).toEqual({ value: '0.0054', code: 'mol/L' });
    expect(toCanonical('1', 'Cel')).toBeNull();
    expect(toCanonical('1', '{beats}/min')).toBeNull();
  });
  it('folds case and accents', () => {
    expect(normalizeString('ÉLODIE Müller-Łukasz')).toBe('elodie muller-łukasz');
  });
});
