import type { ClaimResponse, Coverage } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { adjudicate, costShareOf, coveredAmounts, patientShare } from './adjudication.js';

const COPAY_TYPE = 'http://terminology.hl7.org/CodeSystem/coverage-copay-type';
const coverage = (cost: Coverage['costToBeneficiary']): Coverage => ({ resourceType: 'Coverage', status: 'active', beneficiary: { reference: 'Patient/p' }, payor: [{ reference: 'Organization/i' }], costToBeneficiary: cost });

describe('patient share at adjudication (USD cents)', () => {
  it('fixed co-pay first, then co-insurance on the rest, rounded once half away from zero', () => {
    const share = costShareOf(coverage([
      { type: { coding: [{ system: COPAY_TYPE, code: 'copay' }] }, valueMoney: { value: 15, currency: 'USD' } },
      { type: { coding: [{ system: COPAY_TYPE, code: 'copaypct' }] }, valueQuantity: { value: 12.5 } },
    ]), 'USD');
    expect(share).toEqual({ copay: 1500n, percent: { units: 125n, scale: 1 } });
    // $100.05: 15.00 + 12.5 % of 85.05 = 10.63125 → 10.63; share 25.63
    expect(patientShare(10005n, share)).toBe(2563n);
    // $115.04: 15.00 + 12.5 % of 100.04 = 12.505 → 12.51 (half away from zero)
    expect(patientShare(11504n, share)).toBe(2751n);
    // co-pay above the item: the whole item, nothing left for co-insurance
    expect(patientShare(999n, share)).toBe(999n);
    expect(patientShare(0n, share)).toBe(0n);
    expect(patientShare(10005n, {})).toBe(0n);
  });

  it('several lines: benefit = eligible − share per line; a total is spread by the claimed amounts', () => {
    const lines = [{ sequence: 1, net: 10000n }, { sequence: 2, net: 20000n }];
    const response = { resourceType: 'ClaimResponse', total: [{ category: { coding: [{ code: 'eligible' }] }, amount: { value: 100.01, currency: 'USD' } }] } as unknown as ClaimResponse;
    const covered = coveredAmounts(response, lines, 'USD')!;
    expect(covered).toEqual([3334n, 6667n]);
    expect(adjudicate(lines, covered, { percent: { units: 20n, scale: 0 } })).toEqual([
      { sequence: 1, submitted: 10000n, eligible: 3334n, copay: 667n, benefit: 2667n },
      { sequence: 2, submitted: 20000n, eligible: 6667n, copay: 1333n, benefit: 5334n },
    ]);
  });

  it('refuses a co-insurance outside 0–100 % and a negative co-pay', () => {
    expect(() => costShareOf(coverage([{ type: { coding: [{ code: 'copaypct' }] }, valueQuantity: { value: 100.5 } }]), 'USD')).toThrow(/between 0 and 100/);
    expect(() => costShareOf(coverage([{ type: { coding: [{ code: 'copay' }] }, valueMoney: { value: -1, currency: 'USD' } }]), 'USD')).toThrow(/negative/);
  });
});
