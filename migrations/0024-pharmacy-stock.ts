import { sql, type Kysely } from 'kysely';

/**
 * Pharmacy stock per batch (issue 13 §4, seed 004 FR-PH-001 / FR-PH-002;
 * src/workflows/pharmacy/). FHIR is the interface (SupplyDelivery receipts, MedicationDispense
 * dispenses, `Medication/[id]/$stock`); the server keeps the batches and their movements here,
 * written in the transaction of the FHIR write that moves stock:
 *
 * - `pharmacy_batch`: one row per Medication (the product), location and lot, with its expiry
 *   and the quantity on hand (never negative: a CHECK, besides the row locks of the dispensing
 *   rule). `active` false once written off at expiry; `expiry_alerted` once the 90-days-to-expiry
 *   alert was raised (once per batch).
 * - `pharmacy_stock_movement`: append-only history of every change of a batch's quantity
 *   (receipt, dispense, return, adjustment, expiry write-off) with the FHIR resource that made it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    CREATE TABLE pharmacy_batch (
      id text PRIMARY KEY,
      medication_id text NOT NULL,
      location_id text NOT NULL DEFAULT '',
      lot text NOT NULL,
      expiry date NOT NULL,
      quantity numeric NOT NULL CHECK (quantity >= 0),
      unit text,
      active boolean NOT NULL DEFAULT true,
      expiry_alerted boolean NOT NULL DEFAULT false,
      received_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (medication_id, location_id, lot)
    )`.execute(db);
  // FIFO pick and totals: the active batches of one product by nearest expiry.
  await sql`CREATE INDEX pharmacy_batch_pick ON pharmacy_batch (medication_id, expiry, received_at) WHERE active`.execute(db);
  // The daily expiry sweep: active batches by expiry across products.
  await sql`CREATE INDEX pharmacy_batch_expiry ON pharmacy_batch (expiry) WHERE active`.execute(db);
  await sql`
    CREATE TABLE pharmacy_stock_movement (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      batch_id text NOT NULL REFERENCES pharmacy_batch (id),
      medication_id text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('receipt', 'dispense', 'return', 'adjustment', 'expiry-write-off')),
      quantity numeric NOT NULL,
      balance numeric NOT NULL,
      source text,
      author text,
      reason text,
      recorded timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`CREATE INDEX pharmacy_stock_movement_medication ON pharmacy_stock_movement (medication_id, id)`.execute(db);
  await sql`CREATE INDEX pharmacy_stock_movement_batch ON pharmacy_stock_movement (batch_id, id)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DROP TABLE pharmacy_stock_movement`.execute(db);
  await sql`DROP TABLE pharmacy_batch`.execute(db);
}
