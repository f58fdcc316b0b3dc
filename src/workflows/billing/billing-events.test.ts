import { resolve } from 'node:path';
import type { ClaimResponse, Invoice } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { detectEvents } from '../notifications/events.js';
import { loadNotificationCatalog } from '../notifications/rules.js';

const { rules } = loadNotificationCatalog(resolve(import.meta.dirname, '../../../conformance/notifications'));

/** The billing notifications key on the statuses the billing operations write (FR-BL-001..003). */
describe('billing notifications', () => {
  const invoice = (status: Invoice['status']): Invoice => ({ resourceType: 'Invoice', status });
  const response = (outcome: ClaimResponse['outcome']): ClaimResponse => ({
    resourceType: 'ClaimResponse',
    status: 'active',
    type: {},
    use: 'claim',
    patient: {},
    created: '2026-12-04',
    insurer: {},
    outcome,
  });

  it('FR-BL-001/002: $invoice → INVOICE_GENERATED, paid in full → PAYMENT_SUCCESSFUL, a refund reopening it → nothing', () => {
    expect(detectEvents(invoice('issued'), undefined, rules).events).toEqual(['INVOICE_GENERATED']);
    expect(detectEvents(invoice('issued'), invoice('issued'), rules).events).toEqual([]);
    expect(detectEvents(invoice('balanced'), invoice('issued'), rules).events).toEqual(['PAYMENT_SUCCESSFUL']);
    expect(detectEvents(invoice('issued'), invoice('balanced'), rules).events).toEqual([]);
  });

  it('FR-BL-003: each adjudication outcome of a ClaimResponse → CLAIM_STATUS_UPDATED', () => {
    expect(detectEvents(response('queued'), undefined, rules).events).toEqual(['CLAIM_STATUS_UPDATED']);
    expect(detectEvents(response('partial'), response('queued'), rules).events).toEqual(['CLAIM_STATUS_UPDATED']);
    expect(detectEvents(response('partial'), response('partial'), rules).events).toEqual([]);
  });
});
