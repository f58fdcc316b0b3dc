import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * SQL of the hospital reports (src/workflows/reports/, issue 14 §5): grouped figures over the
 * stored resources, one statement per figure set. Each starts from a search-index range (the
 * `search_date` value indexes; `search_token` / `search_reference` for lookups), so a report
 * reads the rows of its period only and joins `resource` by primary key for the content; the
 * figures themselves (counts, sums, percentiles) are aggregated here, the caller only lays
 * them out. Search index rows exist only for current, live versions, so history and deleted
 * resources never count. Days are UTC days of the indexed instant (date-only values are read
 * as UTC, src/search/values.ts). `start` / `end` bound the period as [start, end).
 *
 * Contents are read by `CROSS JOIN LATERAL (SELECT … FROM resource … OFFSET 0)`: one
 * primary-key probe per index row of the period. OFFSET 0 keeps the planner from flattening it
 * into a join it may run as a hash over every resource of the type (EXPLAIN at 20 k resources
 * already chose a scan of all Appointments for a month of them), which at 1 M resources costs
 * a whole-type read per report instead of the month's rows. Several fields of one document are
 * taken by one `jsonb_to_record(…)` instead of an operator each.
 */

export interface Period {
  /** ISO instant, inclusive. */
  start: string;
  /** ISO instant, exclusive. */
  end: string;
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

/**
 * Runs a report's statements in one read-only REPEATABLE READ transaction, so its figures come
 * from one snapshot and agree with each other, with JIT off: the planner's estimates for
 * statements over jsonb arrays (set-returning functions guessed at 10 rows a call) pass
 * `jit_above_cost`, and compiling them cost 30–60 ms a call against 5 ms of execution
 * (EXPLAIN ANALYZE of the category statement at 20 k resources, PostgreSQL). The embedded
 * database has no JIT; the setting is harmless there.
 */
export async function inReportSnapshot<T>(db: Db, work: (db: Db) => Promise<T>): Promise<T> {
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (trx) => {
      await sql`SET TRANSACTION READ ONLY`.execute(trx);
      await sql`SET LOCAL jit = off`.execute(trx);
      return work(trx);
    });
}

// ---------------------------------------------------------------- revenue

export interface InvoiceDayRow {
  day: string;
  status: string;
  currency: string | null;
  invoices: number;
  gross: number;
  net: number;
}

/**
 * Invoices of status issued or balanced whose `Invoice.date` lies in the period, per UTC day,
 * status and currency (of totalGross, else totalNet): count and sums of totalGross / totalNet.
 */
export function invoiceTotalsByDayQuery(period: Period) {
  return sql<{ day: string; status: string; currency: string | null; invoices: number; gross: string | null; net: string | null }>`
    SELECT to_char(d.low AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, r.status,
      coalesce(r."totalGross"->>'currency', r."totalNet"->>'currency') AS currency,
      count(*)::int AS invoices,
      sum((r."totalGross"->>'value')::numeric)::text AS gross,
      sum((r."totalNet"->>'value')::numeric)::text AS net
    FROM search_date d
    CROSS JOIN LATERAL (
      SELECT x.* FROM resource r CROSS JOIN LATERAL jsonb_to_record(r.content) AS x(status text, "totalGross" jsonb, "totalNet" jsonb)
      WHERE r.resource_type = 'Invoice' AND r.id = d.resource_id AND NOT r.deleted OFFSET 0) r
    WHERE d.resource_type = 'Invoice' AND d.param = 'date'
      AND d.low >= ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
      AND r.status IN ('issued', 'balanced')
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3`;
}

export async function invoiceTotalsByDay(db: Db, period: Period): Promise<InvoiceDayRow[]> {
  const result = await invoiceTotalsByDayQuery(period).execute(db);
  return result.rows.map((r) => ({ ...r, invoices: num(r.invoices), gross: num(r.gross), net: num(r.net) }));
}

export interface CategoryRow {
  system: string | null;
  code: string | null;
  display: string | null;
  currency: string | null;
  lines: number;
  net: number;
  tax: number;
}

/**
 * Line items of the same invoices per charge category: the first coding of
 * `lineItem.chargeItemCodeableConcept`, or of the referenced ChargeItem's `code`
 * (`chargeItemReference` = `ChargeItem/[id]`), else its text; none: system and code null.
 * Line net = base + surcharge − |discount| − |deduction| price components (discounts count
 * as reductions whichever sign they are sent with); tax = the `tax` components.
 */
export function invoiceLinesByCategoryQuery(period: Period) {
  return sql<{ system: string | null; code: string | null; display: string | null; currency: string | null; lines: number; net: string | null; tax: string | null }>`
    WITH line AS (
      -- Set-returning functions and scalar subqueries, not LATERAL joins: a lateral join keyed by
      -- a jsonb value gets a Memoize node whose hashing of the key cost 20–100 µs a line (EXPLAIN),
      -- more than the work it caches.
      SELECT coalesce(r.content->'totalGross'->>'currency', r.content->'totalNet'->>'currency') AS currency,
        jsonb_array_elements(CASE WHEN jsonb_typeof(r.content->'lineItem') = 'array' THEN r.content->'lineItem' ELSE '[]'::jsonb END) AS item
      FROM search_date d
      CROSS JOIN LATERAL (SELECT r.content FROM resource r WHERE r.resource_type = 'Invoice' AND r.id = d.resource_id AND NOT r.deleted OFFSET 0) r
      WHERE d.resource_type = 'Invoice' AND d.param = 'date'
        AND d.low >= ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
        AND r.content->>'status' IN ('issued', 'balanced')
    ), coded AS MATERIALIZED ( -- once per line: the SELECT below names concept four times
      SELECT currency,
        coalesce(item->'chargeItemCodeableConcept', CASE WHEN item->'chargeItemReference'->>'reference' LIKE 'ChargeItem/%' THEN (
          SELECT ci.content->'code' FROM resource ci
          WHERE ci.resource_type = 'ChargeItem' AND NOT ci.deleted AND ci.id = substr(item->'chargeItemReference'->>'reference', 12)) END) AS concept,
        CASE WHEN jsonb_typeof(item->'priceComponent') = 'array' THEN item->'priceComponent' ELSE '[]'::jsonb END AS components
      FROM line
    )
    SELECT concept->'coding'->0->>'system' AS system,
      coalesce(concept->'coding'->0->>'code', concept->>'text') AS code,
      min(coalesce(concept->'coding'->0->>'display', concept->>'text')) AS display,
      currency, count(*)::int AS lines,
      coalesce(sum((SELECT sum(CASE WHEN c->>'type' IN ('base', 'surcharge') THEN (c->'amount'->>'value')::numeric
                                    WHEN c->>'type' IN ('discount', 'deduction') THEN -abs((c->'amount'->>'value')::numeric) ELSE 0 END)
                    FROM jsonb_array_elements(components) c)), 0)::text AS net,
      coalesce(sum((SELECT sum((c->'amount'->>'value')::numeric) FROM jsonb_array_elements(components) c WHERE c->>'type' = 'tax')), 0)::text AS tax
    FROM coded
    GROUP BY 1, 2, 4
    ORDER BY 1, 2, 4`;
}

export async function invoiceLinesByCategory(db: Db, period: Period): Promise<CategoryRow[]> {
  const result = await invoiceLinesByCategoryQuery(period).execute(db);
  return result.rows.map((r) => ({ ...r, lines: num(r.lines), net: num(r.net), tax: num(r.tax) }));
}

export interface PaymentDayRow {
  day: string;
  currency: string | null;
  payments: number;
  amount: number;
}

/**
 * Payments received: active PaymentReconciliations whose `paymentDate` (a FHIR date, so its
 * text orders as the date does) lies in the period, per day and currency: count and sum of
 * `paymentAmount` (refunds are negative amounts). Served by the expression index of migration
 * 0027.
 */
export function paymentsByDayQuery(days: { first: string; last: string }) {
  return sql<{ day: string; currency: string | null; payments: number; amount: string | null }>`
    SELECT left(r.content->>'paymentDate', 10) AS day, r.content->'paymentAmount'->>'currency' AS currency,
      count(*)::int AS payments, sum((r.content->'paymentAmount'->>'value')::numeric)::text AS amount
    FROM resource r
    WHERE r.resource_type = 'PaymentReconciliation' AND NOT r.deleted
      AND (r.content->>'paymentDate') >= ${days.first} AND (r.content->>'paymentDate') < ${days.last + 'T'}
      AND r.content->>'status' = 'active'
    GROUP BY 1, 2
    ORDER BY 1, 2`;
}

export async function paymentsByDay(db: Db, days: { first: string; last: string }): Promise<PaymentDayRow[]> {
  const result = await paymentsByDayQuery(days).execute(db);
  return result.rows.map((r) => ({ ...r, payments: num(r.payments), amount: num(r.amount) }));
}

export interface OutstandingRow {
  currency: string | null;
  invoices: number;
  gross: number;
  paid: number;
}

/**
 * Open invoices now: status issued (not yet balanced) dated before `end`, their count and
 * totalGross, and what active PaymentReconciliations allocated to them
 * (`detail.request` = the Invoice, `detail.amount`; index rows of the billing search parameter
 * PaymentReconciliation `invoice`, search-params/billing-search-parameters.json).
 */
export function outstandingInvoicesQuery(end: string) {
  // Driven by the status index rows (current versions only, so no status test on the content:
  // one there makes the planner read every Invoice to apply it); per open invoice its date and
  // its payments are probed by index (scalar subquery and LATERAL, so the planner cannot turn
  // them into scans of every Invoice date or payment).
  return sql<{ currency: string | null; invoices: number; gross: string | null; paid: string | null }>`
    SELECT coalesce(r.content->'totalGross'->>'currency', r.content->'totalNet'->>'currency') AS currency,
      count(*)::int AS invoices,
      coalesce(sum((r.content->'totalGross'->>'value')::numeric), 0)::text AS gross,
      coalesce(sum(paid.amount), 0)::text AS paid
    FROM search_token t
    CROSS JOIN LATERAL (SELECT r.content FROM resource r WHERE r.resource_type = 'Invoice' AND r.id = t.resource_id AND NOT r.deleted OFFSET 0) r
    LEFT JOIN LATERAL (
      SELECT sum((det->'amount'->>'value')::numeric) AS amount
      FROM search_reference x
      JOIN resource p ON p.resource_type = 'PaymentReconciliation' AND p.id = x.resource_id AND NOT p.deleted
      CROSS JOIN LATERAL jsonb_array_elements(p.content->'detail') det
      WHERE x.target_id = t.resource_id AND x.target_type = 'Invoice' AND x.resource_type = 'PaymentReconciliation' AND x.param = 'invoice'
        AND p.content->>'status' = 'active' AND det->'request'->>'reference' = 'Invoice/' || t.resource_id
    ) paid ON true
    WHERE t.resource_type = 'Invoice' AND t.param = 'status' AND t.code = 'issued'
      AND (SELECT min(d.low) FROM search_date d WHERE d.resource_type = 'Invoice' AND d.resource_id = t.resource_id AND d.param = 'date') < ${end}::timestamptz
    GROUP BY 1 ORDER BY 1`;
}

export async function outstandingInvoices(db: Db, end: string): Promise<OutstandingRow[]> {
  const result = await outstandingInvoicesQuery(end).execute(db);
  return result.rows.map((r) => ({ ...r, invoices: num(r.invoices), gross: num(r.gross), paid: num(r.paid) }));
}

// ---------------------------------------------------------------- appointments

export interface AppointmentCountRow {
  /** 'day' or 'practitioner' */
  dim: 'day' | 'practitioner';
  key: string;
  status: string;
  n: number;
}

/**
 * Appointments whose `start` lies in the period (optionally with `practitioner` among the
 * participants), counted per UTC day × status and per participating Practitioner × status
 * (an appointment with two practitioners counts for each). Totals are the day rows' sums.
 */
export function appointmentCountsQuery(period: Period, practitioner?: string) {
  const byPractitioner = practitioner
    ? sql`AND EXISTS (SELECT 1 FROM search_reference x WHERE x.resource_type = 'Appointment' AND x.resource_id = d.resource_id
          AND x.param = 'practitioner' AND x.target_type = 'Practitioner' AND x.target_id = ${practitioner})`
    : sql``;
  return sql<{ dim: 'day' | 'practitioner'; key: string; status: string; n: number }>`
    WITH a AS (
      SELECT d.resource_id AS id, to_char(d.low AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, r.content->>'status' AS status,
        r.content->'participant' AS participant
      FROM search_date d
      CROSS JOIN LATERAL (SELECT r.content FROM resource r WHERE r.resource_type = 'Appointment' AND r.id = d.resource_id AND NOT r.deleted OFFSET 0) r
      WHERE d.resource_type = 'Appointment' AND d.param = 'date'
        AND d.low >= ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
        ${byPractitioner}
    )
    SELECT 'day' AS dim, day AS key, status, count(*)::int AS n FROM a GROUP BY day, status
    UNION ALL
    SELECT 'practitioner', p.id, a.status, count(DISTINCT a.id)::int
    FROM a
    -- from the content already read (a join to the index rows was planned as a scan of all of them)
    CROSS JOIN LATERAL (
      SELECT (CASE WHEN x->'actor'->>'reference' LIKE 'Practitioner/%' THEN substr(x->'actor'->>'reference', 14) END) AS id
      FROM jsonb_array_elements(CASE WHEN jsonb_typeof(a.participant) = 'array' THEN a.participant ELSE '[]'::jsonb END) x
    ) p
    WHERE p.id IS NOT NULL
    GROUP BY p.id, a.status
    ORDER BY 1, 2, 3`;
}

export async function appointmentCounts(db: Db, period: Period, practitioner?: string): Promise<AppointmentCountRow[]> {
  const result = await appointmentCountsQuery(period, practitioner).execute(db);
  return result.rows.map((r) => ({ ...r, n: num(r.n) }));
}
