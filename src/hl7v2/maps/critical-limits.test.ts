import type { Observation } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { criticalLimitCatalog, limitBreach } from './critical-limits.js';

const LOINC = 'http://loinc.org';
const catalog = criticalLimitCatalog([
  { system: LOINC, code: '2823-3', unit: 'mmol/L', low: 2.8, high: 6.2 },
  { system: LOINC, code: '718-7', unit: 'g/dL', low: 6, high: 20 },
  { system: LOINC, code: '2524-7', unit: 'mmol/L', high: 4 },
  { code: 'KLOC', unit: 'mmol/L', low: 2.8 },
]);

function obs(code: string, value: number, unit: string, extra: Partial<Observation['valueQuantity']> = {}, system: string | null = LOINC): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ ...(system ? { system } : {}), code }] },
    valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit, ...extra },
  };
}

describe('critical limits catalog', () => {
  it('flags values strictly beyond a limit, LL below and HH above, and nothing within or at the limit', () => {
    expect(limitBreach(catalog, obs('2823-3', 2.1, 'mmol/L'))?.flag).toBe('LL');
    expect(limitBreach(catalog, obs('2823-3', 6.9, 'mmol/L'))?.flag).toBe('HH');
    expect(limitBreach(catalog, obs('2823-3', 2.8, 'mmol/L'))).toBeUndefined();
    expect(limitBreach(catalog, obs('2823-3', 4.2, 'mmol/L'))).toBeUndefined();
    expect(limitBreach(catalog, obs('2524-7', 0.1, 'mmol/L'))).toBeUndefined();
    expect(limitBreach(catalog, obs('2524-7', 5, 'mmol/L'))?.flag).toBe('HH');
  });

  it('converts metric units (g/L against g/dL, umol/L against mmol/L) and leaves incomparable units alone', () => {
    expect(limitBreach(catalog, obs('718-7', 50, 'g/L'))?.flag).toBe('LL');
    expect(limitBreach(catalog, obs('718-7', 130, 'g/L'))).toBeUndefined();
    expect(limitBreach(catalog, obs('2823-3', 7000, 'umol/L'))?.flag).toBe('HH');
    expect(limitBreach(catalog, obs('2823-3', 1, '%'))).toBeUndefined();
    const noUnit: Observation = { resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '2823-3' }] }, valueQuantity: { value: 1 } };
    expect(limitBreach(catalog, noUnit)).toBeUndefined();
  });

  it('counts a comparator only when every value it allows is beyond the limit', () => {
    expect(limitBreach(catalog, obs('2823-3', 2.0, 'mmol/L', { comparator: '<' }))?.flag).toBe('LL');
    expect(limitBreach(catalog, obs('2823-3', 2.8, 'mmol/L', { comparator: '<' }))?.flag).toBe('LL');
    expect(limitBreach(catalog, obs('2823-3', 3.0, 'mmol/L', { comparator: '<' }))).toBeUndefined();
    expect(limitBreach(catalog, obs('2823-3', 1.0, 'mmol/L', { comparator: '>' }))).toBeUndefined();
    expect(limitBreach(catalog, obs('2823-3', 7.0, 'mmol/L', { comparator: '>' }))?.flag).toBe('HH');
  });

  it('matches local codes (no system) only against entries without a system', () => {
    expect(limitBreach(catalog, obs('KLOC', 1, 'mmol/L', {}, null))?.flag).toBe('LL');
    expect(limitBreach(catalog, obs('KLOC', 1, 'mmol/L'))).toBeUndefined();
    expect(limitBreach(catalog, obs('2823-3', 1, 'mmol/L', {}, null))).toBeUndefined();
  });

  it('refuses a malformed catalog at load', () => {
    expect(() => criticalLimitCatalog([{ code: 'X', unit: 'mmol/L' }])).toThrow(/neither low nor high/);
    expect(() => criticalLimitCatalog([{ code: 'X', unit: 'mmol/L', low: 5, high: 1 }])).toThrow(/low above high/);
    expect(() => criticalLimitCatalog([{ code: 'X', unit: 'mmol/L', low: 1 }, { code: 'X', unit: 'mmol/L', high: 2 }])).toThrow(/repeats/);
  });

  it('the shipped conformance/hl7v2/critical-limits.json loads', async () => {
    const { loadMappingTables } = await import('./tables.js');
    const tables = loadMappingTables(new URL('../../../conformance/hl7v2', import.meta.url).pathname);
    expect(tables.criticalLimits.get(`${LOINC}|2823-3`)).toMatchObject({ low: 2.8, high: 6.2, unit: 'mmol/L' });
  });
});
