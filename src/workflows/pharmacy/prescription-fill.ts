import type { MedicationRequest } from 'fhir/r4.js';
import { dispensedOn } from '../../storage/pharmacy-store.js';
import type { StoreTransaction } from '../../storage/resource-store.js';
import { decimal, DISPENSED } from './definitions.js';

/**
 * How much of a prescription is dispensed (seed 004 FR-PH-002 "not fully dispensed", issue 13
 * §4): what it allows is `dispenseRequest.quantity` × (1 + `numberOfRepeatsAllowed`) — the first
 * fill and its refills — or, without a quantity, 1 + `numberOfRepeatsAllowed` dispenses. Counted
 * are its MedicationDispenses that took medication (in-progress, completed), other than the one
 * being written.
 */
export interface FillState {
  /** Quantity allowed in all (undefined: the prescription gives no quantity, fills are counted). */
  allowed?: number;
  unit: string;
  /** Dispenses allowed (first fill + repeats). */
  fills: number;
  /** Quantity and number of the other dispenses. */
  quantity: number;
  count: number;
}

export async function fillState(tx: StoreTransaction, request: MedicationRequest, requestId: string, excludeDispenseId: string): Promise<FillState> {
  const fills = 1 + (request.dispenseRequest?.numberOfRepeatsAllowed ?? 0);
  const perFill = request.dispenseRequest?.quantity?.value;
  const so = await dispensedOn(await tx.executor(), requestId, excludeDispenseId, [...DISPENSED]);
  return {
    ...(perFill !== undefined ? { allowed: decimal(perFill * fills) } : {}),
    unit: request.dispenseRequest?.quantity?.unit ?? '',
    fills,
    quantity: Number(so.quantity),
    count: so.count,
  };
}

/** Whether the other dispenses plus one of `quantity` (undefined: no dispense) use up the prescription. */
export function fullyDispensed(state: FillState, quantity: number | undefined): boolean {
  const count = state.count + (quantity === undefined ? 0 : 1);
  if (state.allowed === undefined) return count >= state.fills;
  return decimal(state.quantity + (quantity ?? 0)) >= state.allowed;
}

/**
 * Sets the prescription's status (`completed` once fully dispensed, `active` again when a
 * dispense that completed it is undone), as a new version in the dispense's transaction. The
 * caller holds the prescription's dispensing lock, so two last dispenses cannot both miss it.
 */
export async function setPrescriptionStatus(tx: StoreTransaction, requestId: string, from: MedicationRequest['status'], to: MedicationRequest['status']): Promise<void> {
  const current = await tx.readForUpdate('MedicationRequest', requestId);
  if (!current?.json || current.deleted) return;
  const request = JSON.parse(current.json) as MedicationRequest;
  if (request.status !== from) return;
  const next: MedicationRequest = { ...request, status: to };
  await tx.update(next, current);
}
