import { resolve } from 'node:path';
import type { Encounter, Location, ServiceRequest } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { loadPriceList } from './price-list.js';

const ROOT = resolve(import.meta.dirname, '../../..');

describe('price list and tax table as data (FR-BL-001)', () => {
  const prices = loadPriceList(ROOT, 'VND', 'VN');

  it('maps charge codes to their category and prices them by applicability', () => {
    expect(prices.categoryOf('CONS-GP')).toBe('CONSULTATION');
    expect(prices.categoryOf('BED-DAY')).toBe('OTHER_SERVICE');
    expect(prices.categoryOf('NOPE')).toBeUndefined();
    const lab = (code: string): ServiceRequest => ({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: {}, code: { coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/lab-test', code }] } });
    expect(prices.definitionOf('LAB-ORDER')!.unitPrice(lab('HBA1C'))).toBe(150000n);
    expect(prices.definitionOf('LAB-ORDER')!.unitPrice(lab('UNLISTED'))).toBe(100000n);
    const ward = (code?: string): Location => ({ resourceType: 'Location', ...(code ? { type: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/ward-type', code }] }] } : {}) });
    expect(prices.definitionOf('BED-DAY')!.unitPrice(ward('CCU'))).toBe(2500000n);
    expect(prices.definitionOf('BED-DAY')!.unitPrice(ward('MED'))).toBe(500000n);
    expect(prices.definitionOf('BED-DAY')!.unitPrice(undefined)).toBe(500000n);
    const visit: Encounter = { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' } };
    const followUp: Encounter = { ...visit, type: [{ coding: [{ code: 'CONS-FU' }] }] };
    expect(prices.definitionFor('CONSULTATION', followUp)?.code).toBe('CONS-FU');
    expect(prices.definitionFor('CONSULTATION', visit)?.code).toBe('CONS-GP');
  });

  it('takes tax rates of the configured jurisdiction', () => {
    expect(prices.taxRate('MEDICATION')).toEqual({ units: 5n, scale: 2 });
    expect(loadPriceList(ROOT, 'VND', 'VN-PRIVATE').taxRate('CONSULTATION')).toEqual({ units: 8n, scale: 2 });
    expect(() => loadPriceList(ROOT, 'VND', 'XX')).toThrow(/BILLING_JURISDICTION XX/);
  });

  it('refuses a price list in another currency than BILLING_CURRENCY', () => {
    expect(() => loadPriceList(ROOT, 'USD', 'VN')).toThrow(/must be in USD/);
  });
});
