import type { Bundle, Encounter, Invoice } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { createPatient, signInAs } from './smart-helpers.js';
import { chargesOf, create, op } from './billing-helpers.js';

/**
 * Tax per jurisdiction as data (seed 004 FR-BL-001 "calculate taxes per jurisdiction"):
 * BILLING_JURISDICTION=VN-PRIVATE takes 8 % on services and 5 % on medicines from
 * conformance/billing/tax-rates.json; charges are made on every write path (a transaction Bundle here).
 */

let t: TestApp;
let accountant: string;

beforeAll(async () => {
  t = await startTestApp({ BILLING_JURISDICTION: 'VN-PRIVATE' });
  accountant = (await signInAs(t, 'ACCOUNTANT', 'Practitioner/acc-tax')).token;
}, 60_000);
afterAll(async () => {
  await t?.close();
});

describe('tax per jurisdiction (FR-BL-001)', () => {
  it('FR-BL-001: a transaction Bundle finishing a visit and dispensing is charged; the invoice taxes each category at the jurisdiction rate', async () => {
    const patient = await createPatient(t, 'Taxed');
    const visit = await create<Encounter>(t, { resourceType: 'Encounter', status: 'in-progress', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: `Patient/${patient}` } });
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { ...visit, status: 'finished' }, request: { method: 'PUT', url: `Encounter/${visit.id}` } },
        {
          resource: { resourceType: 'MedicationDispense', status: 'completed', medicationCodeableConcept: { text: 'Amoxicillin' }, subject: { reference: `Patient/${patient}` }, quantity: { value: 3 } },
          request: { method: 'POST', url: 'MedicationDispense' },
        },
      ],
    };
    const res = await t.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode, res.body).toBe(200);
    expect(await chargesOf(t, patient)).toHaveLength(2);
    const invoice = (await op(t, 'POST', `/fhir/Patient/${patient}/$invoice`, accountant)).json() as Invoice;
    // 150 000 × 8 % = 12 000; 30 000 × 5 % = 1 500.
    expect(invoice.totalNet?.value).toBe(180000);
    expect(invoice.totalGross?.value).toBe(193500);
    expect(invoice.totalPriceComponent?.filter((p) => p.type === 'tax').map((p) => [p.code?.coding?.[0]?.code, p.amount?.value])).toEqual([
      ['CONSULTATION', 12000],
      ['MEDICATION', 1500],
    ]);
    const tax = invoice.lineItem?.[0]?.priceComponent?.find((p) => p.type === 'tax');
    expect(tax?.factor).toBe(0.08);
  });
});
