import { describe, expect, it } from 'vitest';
import { dailyDose, perDay } from './prescribing-dose.js';

describe('daily dose from dosageInstruction (FR-EMR-003 dose range)', () => {
  it('administrations per day from Timing.repeat (frequencyMax, periods in hours and weeks) and Timing.code', () => {
    expect(perDay({ repeat: { frequency: 1, period: 6, periodUnit: 'h' } })).toBe(4);
    expect(perDay({ repeat: { frequency: 2, frequencyMax: 3, period: 1, periodUnit: 'd' } })).toBe(3);
    expect(perDay({ repeat: { frequency: 1, period: 1, periodUnit: 'wk' } })).toBeCloseTo(1 / 7);
    expect(perDay({ code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation', code: 'TID' }] } })).toBe(3);
    expect(perDay(undefined)).toBeUndefined();
  });

  it('units × strength, mass units for single-ingredient drugs, the high end of a dose range, instructions added up', () => {
    const timing = (n: number) => ({ repeat: { frequency: n, period: 1, periodUnit: 'd' as const } });
    expect(dailyDose([{ timing: timing(4), doseAndRate: [{ doseQuantity: { value: 2 } }] }], 325, true)).toEqual({ dailyMg: 2600, singleMg: 650 });
    expect(dailyDose([{ timing: timing(2), doseAndRate: [{ doseQuantity: { value: 1, code: 'g' } }] }], 500, true).dailyMg).toBe(2000);
    expect(dailyDose([{ timing: timing(2), doseAndRate: [{ doseQuantity: { value: 500, code: 'mg' } }] }], 300, false).dailyMg).toBeUndefined();
    expect(dailyDose([{ timing: timing(3), doseAndRate: [{ doseRange: { low: { value: 1 }, high: { value: 2 } } }] }], 200, true).dailyMg).toBe(1200);
    expect(dailyDose([{ timing: timing(1), doseAndRate: [{ doseQuantity: { value: 1 } }] }, { timing: timing(1), doseAndRate: [{ doseQuantity: { value: 2 } }] }], 10, true).dailyMg).toBe(30);
    // "as needed" without timing: the single dose is known, the daily one is not.
    expect(dailyDose([{ asNeededBoolean: true, doseAndRate: [{ doseQuantity: { value: 1 } }] }], 400, true)).toEqual({ singleMg: 400 });
  });
});
