import type { Extension, Medication, Quantity } from 'fhir/r4.js';

/**
 * The pharmacy's FHIR vocabulary (issue 13 §4; StructureDefinitions in profiles/): extensions
 * the server reads and writes on Medication, SupplyDelivery and MedicationDispense.
 */
const SD = 'https://fhir.hospital.example.org/StructureDefinition';

/** Medication: usable stock of the product (sum of its active, unexpired batches), kept by the server once batches exist. */
export const STOCK_QUANTITY_URL = `${SD}/medication-stock-quantity`;
/** Medication: the reorder level, set by the pharmacy (PHARMACY_STOCK_LOW when stock ≤ it). */
export const REORDER_LEVEL_URL = `${SD}/medication-reorder-level`;
/** Medication: one per batch within 90 days of expiry whose alert was raised (lot, expirationDate, quantity). */
export const BATCH_EXPIRING_URL = `${SD}/medication-batch-expiring`;
/** SupplyDelivery: the received batch (lot, expirationDate); MedicationDispense: one per batch taken (lot, expirationDate, quantity). */
export const BATCH_URL = `${SD}/pharmacy-batch`;
/** MedicationDispense: the pharmacist's override of critical DetectedIssues (valueString: the reason). */
export const OVERRIDE_URL = `${SD}/dispense-override`;

/** Dispense statuses that have taken stock. */
export const DISPENSED = new Set(['in-progress', 'completed']);
/** Statuses a dispensed MedicationDispense may move to, giving its stock back. */
export const UNDONE = new Set(['entered-in-error', 'cancelled', 'stopped', 'declined']);
/** Days before expiry at which a batch is alerted (seed FR-PH-001). */
export const EXPIRY_ALERT_DAYS = 90;

export interface BatchInfo {
  lot: string;
  expiry: string;
  quantity?: Quantity;
  /** server batch id (MedicationDispense only: where a return goes) */
  batchId?: string;
}

export function batchExtension(url: string, b: BatchInfo): Extension {
  return {
    url,
    extension: [
      { url: 'lotNumber', valueString: b.lot },
      { url: 'expirationDate', valueDate: b.expiry },
      ...(b.quantity ? [{ url: 'quantity', valueQuantity: b.quantity }] : []),
      ...(b.batchId ? [{ url: 'batch', valueString: b.batchId }] : []),
    ],
  };
}

export function readBatchExtension(e: Extension): Partial<BatchInfo> {
  const part = (name: string) => e.extension?.find((x) => x.url === name);
  const lot = part('lotNumber')?.valueString;
  const expiry = part('expirationDate')?.valueDate;
  const quantity = part('quantity')?.valueQuantity;
  const batchId = part('batch')?.valueString;
  return { ...(lot ? { lot } : {}), ...(expiry ? { expiry } : {}), ...(quantity ? { quantity } : {}), ...(batchId ? { batchId } : {}) };
}

/** Number without binary-float noise (quantities are decimals: 2.5 ml). */
export function decimal(n: number): number {
  return Number(n.toFixed(6));
}

export function today(now = new Date()): string {
  return now.toISOString().slice(0, 10);
}

export function addDays(day: string, days: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + days * 86_400_000).toISOString().slice(0, 10);
}

export function medicationName(m: Medication | undefined): string {
  return m?.code?.text ?? m?.code?.coding?.[0]?.display ?? m?.code?.coding?.[0]?.code ?? (m?.id ? `Medication/${m.id}` : 'medication');
}
