import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * SQL of the pharmacy stock (migration 0024, src/workflows/pharmacy/). Every function takes the
 * executor of the write transaction it runs in (`StoreTransaction.executor()`), so stock moves
 * commit or roll back with the FHIR write that moved them. Quantities travel as text (numeric
 * columns) and are parsed by the callers. Dates are `YYYY-MM-DD` (UTC day).
 */

export interface BatchRow {
  id: string;
  medication_id: string;
  location_id: string;
  lot: string;
  expiry: string;
  quantity: string;
  unit: string | null;
  active: boolean;
  expiry_alerted: boolean;
  received_at: string;
}

export type MovementKind = 'receipt' | 'dispense' | 'return' | 'adjustment' | 'expiry-write-off';

export interface MovementRow {
  id: string;
  batch_id: string;
  lot: string;
  kind: MovementKind;
  quantity: string;
  balance: string;
  source: string | null;
  author: string | null;
  reason: string | null;
  recorded: string;
}

const BATCH_COLUMNS = sql`id, medication_id, location_id, lot, expiry::text AS expiry, quantity::text AS quantity, unit, active, expiry_alerted, to_json(received_at)#>>'{}' AS received_at`;

/** Whether the product's stock is kept by batch here (any batch ever received). */
export async function tracksStock(db: Db, medicationId: string): Promise<boolean> {
  const result = await sql<{ one: number }>`SELECT 1 AS one FROM pharmacy_batch WHERE medication_id = ${medicationId} LIMIT 1`.execute(db);
  return result.rows.length > 0;
}

/**
 * The product's active batches, FIFO order (nearest expiry first, then earliest received),
 * locked until commit: two dispenses of one product queue here and the second sees what the
 * first left.
 */
export async function lockActiveBatches(db: Db, medicationId: string): Promise<BatchRow[]> {
  const result = await sql<BatchRow>`
    SELECT ${BATCH_COLUMNS} FROM pharmacy_batch
    WHERE medication_id = ${medicationId} AND active
    ORDER BY expiry, received_at, id
    FOR UPDATE`.execute(db);
  return result.rows;
}

/** One batch by product, location and lot, locked. */
export async function lockBatch(db: Db, medicationId: string, locationId: string, lot: string): Promise<BatchRow | undefined> {
  const result = await sql<BatchRow>`
    SELECT ${BATCH_COLUMNS} FROM pharmacy_batch
    WHERE medication_id = ${medicationId} AND location_id = ${locationId} AND lot = ${lot}
    FOR UPDATE`.execute(db);
  return result.rows[0];
}

/** Batches by id, locked (a return to the batches a dispense took). */
export async function lockBatchesById(db: Db, ids: readonly string[]): Promise<BatchRow[]> {
  if (ids.length === 0) return [];
  const result = await sql<BatchRow>`SELECT ${BATCH_COLUMNS} FROM pharmacy_batch WHERE id = ANY(${[...ids]}::text[]) ORDER BY id FOR UPDATE`.execute(db);
  return result.rows;
}

export async function insertBatch(
  db: Db,
  batch: { id: string; medicationId: string; locationId: string; lot: string; expiry: string; quantity: string; unit: string | undefined },
): Promise<void> {
  await sql`
    INSERT INTO pharmacy_batch (id, medication_id, location_id, lot, expiry, quantity, unit)
    VALUES (${batch.id}, ${batch.medicationId}, ${batch.locationId}, ${batch.lot}, ${batch.expiry}::date, ${batch.quantity}::numeric, ${batch.unit ?? null})`.execute(db);
}

/** Sets a batch's quantity (and reactivates nothing: `active` changes only at write-off). */
export async function setBatchQuantity(db: Db, batchId: string, quantity: string): Promise<void> {
  await sql`UPDATE pharmacy_batch SET quantity = ${quantity}::numeric WHERE id = ${batchId}`.execute(db);
}

export async function addMovement(
  db: Db,
  m: { batchId: string; medicationId: string; kind: MovementKind; quantity: string; balance: string; source?: string; author?: string; reason?: string },
): Promise<void> {
  await sql`
    INSERT INTO pharmacy_stock_movement (batch_id, medication_id, kind, quantity, balance, source, author, reason)
    VALUES (${m.batchId}, ${m.medicationId}, ${m.kind}, ${m.quantity}::numeric, ${m.balance}::numeric, ${m.source ?? null}, ${m.author ?? null}, ${m.reason ?? null})`.execute(db);
}

/** Usable stock of a product: active batches not past expiry on `today`. */
export async function usableTotal(db: Db, medicationId: string, today: string): Promise<string> {
  const result = await sql<{ total: string }>`
    SELECT coalesce(sum(quantity), 0)::text AS total FROM pharmacy_batch
    WHERE medication_id = ${medicationId} AND active AND expiry >= ${today}::date`.execute(db);
  return result.rows[0]?.total ?? '0';
}

/** Active batches whose 90-days-to-expiry alert was raised (listed on the Medication). */
export async function alertedBatches(db: Db, medicationId: string): Promise<BatchRow[]> {
  const result = await sql<BatchRow>`
    SELECT ${BATCH_COLUMNS} FROM pharmacy_batch
    WHERE medication_id = ${medicationId} AND active AND expiry_alerted
    ORDER BY expiry, received_at, id`.execute(db);
  return result.rows;
}

/** Marks the product's active, non-empty batches expiring by `horizon` as alerted; returns how many were new. */
export async function markExpiring(db: Db, medicationId: string, horizon: string): Promise<number> {
  const result = await sql<{ id: string }>`
    UPDATE pharmacy_batch SET expiry_alerted = true
    WHERE medication_id = ${medicationId} AND active AND NOT expiry_alerted AND quantity > 0 AND expiry <= ${horizon}::date
    RETURNING id`.execute(db);
  return result.rows.length;
}

/** Deactivates the product's batches past expiry on `today` (already locked by the caller); returns what they held. */
export async function deactivateExpired(db: Db, medicationId: string, today: string): Promise<Array<{ id: string; quantity: string }>> {
  const result = await sql<{ id: string; quantity: string }>`
    UPDATE pharmacy_batch b SET active = false, quantity = 0
    FROM (SELECT id, quantity FROM pharmacy_batch WHERE medication_id = ${medicationId} AND active AND expiry < ${today}::date) old
    WHERE b.id = old.id
    RETURNING b.id, old.quantity::text AS quantity`.execute(db);
  return result.rows;
}

/** Products with work for the daily sweep: an active batch past expiry, or one to alert. */
export async function productsToSweep(db: Db, today: string, horizon: string, limit: number): Promise<string[]> {
  const result = await sql<{ medication_id: string }>`
    SELECT DISTINCT medication_id FROM pharmacy_batch
    WHERE active AND (expiry < ${today}::date OR (NOT expiry_alerted AND quantity > 0 AND expiry <= ${horizon}::date))
    ORDER BY medication_id
    LIMIT ${limit}`.execute(db);
  return result.rows.map((r) => r.medication_id);
}

/** Every batch of a product (write-offs included), FIFO order. */
export async function batchesOf(db: Db, medicationId: string): Promise<BatchRow[]> {
  const result = await sql<BatchRow>`
    SELECT ${BATCH_COLUMNS} FROM pharmacy_batch WHERE medication_id = ${medicationId}
    ORDER BY active DESC, expiry, received_at, id`.execute(db);
  return result.rows;
}

/** A product's latest movements, newest first. */
export async function movementsOf(db: Db, medicationId: string, limit: number): Promise<MovementRow[]> {
  const result = await sql<MovementRow>`
    SELECT m.id::text AS id, m.batch_id, b.lot, m.kind, m.quantity::text AS quantity, m.balance::text AS balance,
      m.source, m.author, m.reason, to_json(m.recorded)#>>'{}' AS recorded
    FROM pharmacy_stock_movement m JOIN pharmacy_batch b ON b.id = m.batch_id
    WHERE m.medication_id = ${medicationId}
    ORDER BY m.id DESC
    LIMIT ${limit}`.execute(db);
  return result.rows;
}

/**
 * What was dispensed on a prescription so far: live MedicationDispenses naming it (other than
 * `excludeId`) in a dispensed status, their count and summed quantity.
 */
export async function dispensedOn(db: Db, requestId: string, excludeId: string, statuses: readonly string[]): Promise<{ count: number; quantity: string }> {
  const result = await sql<{ n: string; q: string }>`
    SELECT count(*)::text AS n, coalesce(sum((r.content->'quantity'->>'value')::numeric), 0)::text AS q
    FROM resource r
    WHERE r.resource_type = 'MedicationDispense' AND NOT r.deleted AND r.id <> ${excludeId}
      AND r.content->>'status' = ANY(${[...statuses]}::text[])
      AND r.id IN (
        SELECT x.resource_id FROM search_reference x
        WHERE x.resource_type = 'MedicationDispense' AND x.param = 'prescription' AND x.target_type = 'MedicationRequest' AND x.target_id = ${requestId})`.execute(db);
  const row = result.rows[0];
  return { count: Number(row?.n ?? 0), quantity: row?.q ?? '0' };
}
