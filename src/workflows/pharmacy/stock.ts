import { randomUUID } from 'node:crypto';
import type { Extension, Medication, SupplyDelivery } from 'fhir/r4.js';
import { alertedBatches, insertBatch, lockBatch, markExpiring, setBatchQuantity, addMovement, tracksStock, usableTotal, type BatchRow } from '../../storage/pharmacy-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import type { ResourceChange } from '../../storage/types.js';
import { currentWriter } from '../../subscriptions/write-context.js';
import { businessRule, referenceTo, replacedVersion } from '../scheduling-rules.js';
import { addDays, BATCH_EXPIRING_URL, BATCH_URL, batchExtension, decimal, EXPIRY_ALERT_DAYS, readBatchExtension, STOCK_QUANTITY_URL, today } from './definitions.js';

/**
 * Stock per batch (seed 004 FR-PH-001, issue 13 §4). The batches and their movements are
 * server tables (migration 0024, src/storage/pharmacy-store.ts); FHIR is the interface:
 *
 * - a receipt is a SupplyDelivery (status completed) whose `suppliedItem.itemReference` is the
 *   Medication (the product), `suppliedItem.quantity` the amount, extension `pharmacy-batch`
 *   the lot and expiry, `destination` the location;
 * - the Medication carries what the server keeps: `medication-stock-quantity` (usable stock:
 *   active batches not past expiry) and `medication-batch-expiring` (batches whose
 *   90-days-to-expiry alert was raised), rewritten in the transaction of every stock movement,
 *   so the notification events (PHARMACY_STOCK_LOW, PHARMACY_BATCH_EXPIRING) follow from the
 *   Medication's versions like every other event.
 *
 * Every movement locks the Medication row first, then its batch rows: one order everywhere,
 * so stock moves of one product queue instead of deadlocking.
 */

/** Medication writes the stock rules make themselves (not re-derived by the Medication hook). */
const ownWrites = new WeakMap<StoreTransaction, Set<string>>();

function stockExtensions(existing: Extension[] | undefined, total: number, unit: string | undefined, alerted: readonly BatchRow[]): Extension[] {
  const kept = (existing ?? []).filter((e) => e.url !== STOCK_QUANTITY_URL && e.url !== BATCH_EXPIRING_URL);
  return [
    ...kept,
    { url: STOCK_QUANTITY_URL, valueQuantity: { value: total, ...(unit ? { unit } : {}) } },
    ...alerted.map((b) => batchExtension(BATCH_EXPIRING_URL, { lot: b.lot, expiry: b.expiry, quantity: { value: Number(b.quantity), ...(b.unit ? { unit: b.unit } : {}) } })),
  ];
}

async function derivedExtensions(tx: StoreTransaction, medication: Medication, id: string, day: string): Promise<Extension[]> {
  const db = await tx.executor();
  const [total, alerted] = [await usableTotal(db, id, day), await alertedBatches(db, id)];
  const unit = medication.extension?.find((e) => e.url === STOCK_QUANTITY_URL)?.valueQuantity?.unit ?? alerted.find((b) => b.unit)?.unit ?? undefined;
  return stockExtensions(medication.extension, decimal(Number(total)), unit, alerted);
}

/** Locks the product's Medication row (first lock of every stock movement); undefined when there is no such Medication. */
export async function lockProduct(tx: StoreTransaction, medicationId: string): Promise<Medication | undefined> {
  const current = await tx.readForUpdate('Medication', medicationId);
  return current?.json && !current.deleted ? (JSON.parse(current.json) as Medication) : undefined;
}

/** Rewrites the Medication's stock extensions from the batches (same transaction); no new version when nothing changed. */
export async function refreshProduct(tx: StoreTransaction, medicationId: string, day = today()): Promise<void> {
  const current = await tx.readForUpdate('Medication', medicationId);
  if (!current?.json || current.deleted) return;
  const medication = JSON.parse(current.json) as Medication;
  const extension = await derivedExtensions(tx, medication, medicationId, day);
  if (JSON.stringify(extension) === JSON.stringify(medication.extension ?? [])) return;
  const own = ownWrites.get(tx) ?? new Set<string>();
  ownWrites.set(tx, own.add(medicationId));
  try {
    await tx.update({ ...medication, extension } as Medication, current, 'PUT');
  } finally {
    own.delete(medicationId);
  }
}

/** Who moves stock (the movement's author): the user's fhirUser, the client, or the server. */
export function movementAuthor(): string {
  const writer = currentWriter();
  return writer?.fhirUser ?? (writer ? `client:${writer.clientId}` : 'server');
}

/**
 * Medication written by a client: once the product has batches, its stock extensions are the
 * server's (a client cannot set stock by editing the Medication; receipts and adjustments do).
 */
export const medicationStockHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'Medication' || !change.resource || ownWrites.get(tx)?.has(change.id)) return;
  // A new Medication under a server id has no batches yet (and a plain create stays one statement).
  if (change.method === 'POST') return;
  if (!(await tracksStock(await tx.executor(), change.id))) return;
  const medication = change.resource as Medication;
  change.resource = { ...medication, extension: await derivedExtensions(tx, medication, change.id, today()) } as Medication;
};

/** The batch a receipt names: lot, expiry, quantity, product, location. */
function receiptOf(delivery: SupplyDelivery): { medicationId: string; locationId: string; lot?: string; expiry?: string; quantity?: number; unit?: string } | undefined {
  const medicationId = referenceTo('Medication', delivery.suppliedItem?.itemReference?.reference);
  if (!medicationId) return undefined;
  const ext = delivery.extension?.find((e) => e.url === BATCH_URL);
  const batch = ext ? readBatchExtension(ext) : {};
  const q = delivery.suppliedItem?.quantity;
  return {
    medicationId,
    locationId: referenceTo('Location', delivery.destination?.reference) ?? '',
    ...(batch.lot ? { lot: batch.lot } : {}),
    ...(batch.expiry ? { expiry: batch.expiry } : {}),
    ...(q?.value !== undefined ? { quantity: q.value } : {}),
    ...(q?.unit ?? q?.code ? { unit: q.unit ?? q.code } : {}),
  };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * Receipts (FR-PH-001): a SupplyDelivery of a Medication entering status `completed` adds its
 * quantity to the batch (created at its first receipt), records a `receipt` movement and
 * refreshes the Medication's stock — all in the delivery's transaction. A completed receipt
 * cannot be changed or deleted afterwards (corrections are adjustments: `Medication/[id]/$adjust-stock`).
 * Deliveries of other items (devices, substances, coded items) are stored as sent.
 */
export const receiptHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'SupplyDelivery') return;
  const before = await replacedVersion<SupplyDelivery>(tx, change);
  const after = change.resource as SupplyDelivery | undefined;
  const received = (d?: SupplyDelivery) => d?.status === 'completed' && receiptOf(d) !== undefined;
  if (received(before)) {
    const unchanged = after && after.status === 'completed' && same(after.suppliedItem, before!.suppliedItem) && same(after.destination, before!.destination) && same(after.extension?.find((e) => e.url === BATCH_URL), before!.extension?.find((e) => e.url === BATCH_URL));
    if (!unchanged) throw businessRule('conflict', 'This delivery is already received into stock; record a stock adjustment (Medication/[id]/$adjust-stock) to correct it.', ['SupplyDelivery']);
    return;
  }
  if (!after || !received(after)) return;
  await receive(tx, change, after);
};

async function receive(tx: StoreTransaction, change: ResourceChange, delivery: SupplyDelivery): Promise<void> {
  const r = receiptOf(delivery)!;
  if (!r.lot || !r.expiry) {
    throw businessRule('invalid', `A medication receipt needs the batch's lot number and expiry date (extension ${BATCH_URL}: lotNumber, expirationDate).`, ['SupplyDelivery.extension']);
  }
  if (r.quantity === undefined || !(r.quantity > 0)) throw businessRule('invalid', 'A medication receipt needs a quantity above zero.', ['SupplyDelivery.suppliedItem.quantity']);
  const day = today();
  if (r.expiry.length < 10 || r.expiry < day) throw businessRule('invalid', `Batch ${r.lot} expired on ${r.expiry}; an expired batch cannot be received into stock.`, ['SupplyDelivery.extension']);
  if (!(await lockProduct(tx, r.medicationId))) throw businessRule('invalid', `Medication/${r.medicationId} does not exist; register the product before receiving it.`, ['SupplyDelivery.suppliedItem.itemReference']);
  const db = await tx.executor();
  const existing = await lockBatch(db, r.medicationId, r.locationId, r.lot);
  let batchId: string;
  let balance: number;
  if (existing) {
    if (existing.expiry !== r.expiry.slice(0, 10)) {
      throw businessRule('conflict', `Lot ${r.lot} is in stock with expiry ${existing.expiry}, not ${r.expiry}; check the delivery.`, ['SupplyDelivery.extension']);
    }
    if (!existing.active) throw businessRule('conflict', `Lot ${r.lot} was written off at expiry; it cannot be received again.`, ['SupplyDelivery.extension']);
    batchId = existing.id;
    balance = decimal(Number(existing.quantity) + r.quantity);
    await setBatchQuantity(db, batchId, String(balance));
  } else {
    batchId = randomUUID();
    balance = r.quantity;
    await insertBatch(db, { id: batchId, medicationId: r.medicationId, locationId: r.locationId, lot: r.lot, expiry: r.expiry.slice(0, 10), quantity: String(r.quantity), unit: r.unit });
  }
  await addMovement(db, { batchId, medicationId: r.medicationId, kind: 'receipt', quantity: String(r.quantity), balance: String(balance), source: `SupplyDelivery/${change.id}`, author: movementAuthor() });
  // A batch received within the alert window is alerted at once (the daily job would tomorrow).
  await markExpiring(db, r.medicationId, addDays(day, EXPIRY_ALERT_DAYS));
  await refreshProduct(tx, r.medicationId, day);
}
