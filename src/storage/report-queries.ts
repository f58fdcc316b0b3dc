import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * SQL of the hospital reports (src/workflows/reports/, issue 14 §5): grouped figures over the
 * stored resources, one statement per figure set, the figures themselves (counts, sums,
 * percentiles) aggregated here, the caller only lays them out.
 *
 * They read the report facts of migration 0030 (`report_invoice`, `report_invoice_line`,
 * `report_payment`, `report_payment_allocation`, `report_appointment`, …): narrow rows holding
 * the few fields a report needs of each live resource, written by a trigger in the same
 * statement as the resource version itself, so they always equal the stored content (history
 * and deleted resources never count). A month's report is then a range of one small index
 * instead of a month of JSON documents read and unpacked (at 1 M resources the category
 * statement alone spent ~600 ms in JSON). Days are UTC days of the instant, date-only values
 * read as the start of their UTC day as the search index reads them (src/search/values.ts).
 * `start` / `end` bound the period as [start, end).
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
    SELECT to_char(i.at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, i.status, i.currency,
      count(*)::int AS invoices, sum(i.gross)::text AS gross, sum(i.net)::text AS net
    FROM report_invoice i
    WHERE i.at >= ${period.start}::timestamptz AND i.at < ${period.end}::timestamptz
      AND i.status IN ('issued', 'balanced')
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
 * as reductions whichever sign they are sent with); tax = the `tax` components. One row per
 * line in `report_invoice_line` (migration 0030) holds these, kept by the write itself.
 */
export function invoiceLinesByCategoryQuery(period: Period) {
  return sql<{ system: string | null; code: string | null; display: string | null; currency: string | null; lines: number; net: string | null; tax: string | null }>`
    SELECT l.system, l.code, min(l.display) AS display, l.currency, count(*)::int AS lines,
      coalesce(sum(l.net), 0)::text AS net, coalesce(sum(l.tax), 0)::text AS tax
    FROM report_invoice_line l
    WHERE l.at >= ${period.start}::timestamptz AND l.at < ${period.end}::timestamptz
      AND l.status IN ('issued', 'balanced')
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
 * `paymentAmount` (refunds are negative amounts). From `report_payment` (migration 0030).
 */
export function paymentsByDayQuery(days: { first: string; last: string }) {
  return sql<{ day: string; currency: string | null; payments: number; amount: string | null }>`
    SELECT left(p.payment_date, 10) AS day, p.currency, count(*)::int AS payments, sum(p.amount)::text AS amount
    FROM report_payment p
    WHERE p.payment_date >= ${days.first} AND p.payment_date < ${days.last + 'T'} AND p.status = 'active'
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
 * (`detail.request` = the Invoice, `detail.amount`), from the report facts of migration 0030.
 */
export function outstandingInvoicesQuery(end: string) {
  // `paid` is kept on the invoice's fact row by the writes of its payments (migration 0030):
  // one range of the partial index of open invoices, nothing probed per invoice.
  return sql<{ currency: string | null; invoices: number; gross: string | null; paid: string | null }>`
    SELECT i.currency, count(*)::int AS invoices, coalesce(sum(i.gross), 0)::text AS gross, coalesce(sum(i.paid), 0)::text AS paid
    FROM report_invoice i
    WHERE i.status = 'issued' AND i.at < ${end}::timestamptz
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
 * From `report_appointment` (migration 0030): start, status and the participating
 * Practitioners' ids (distinct) of each live Appointment.
 */
export function appointmentCountsQuery(period: Period, practitioner?: string) {
  const byPractitioner = practitioner ? sql`AND ${practitioner} = ANY (a.practitioners)` : sql``;
  return sql<{ dim: 'day' | 'practitioner'; key: string; status: string; n: number }>`
    WITH a AS MATERIALIZED (
      SELECT to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, a.status, a.practitioners
      FROM report_appointment a
      WHERE a.at >= ${period.start}::timestamptz AND a.at < ${period.end}::timestamptz
        ${byPractitioner}
    )
    SELECT 'day' AS dim, day AS key, status, count(*)::int AS n FROM a GROUP BY day, status
    UNION ALL
    SELECT 'practitioner', p.id, a.status, count(*)::int
    FROM a CROSS JOIN LATERAL unnest(a.practitioners) AS p(id)
    GROUP BY p.id, a.status
    ORDER BY 1, 2, 3`;
}

export async function appointmentCounts(db: Db, period: Period, practitioner?: string): Promise<AppointmentCountRow[]> {
  const result = await appointmentCountsQuery(period, practitioner).execute(db);
  return result.rows.map((r) => ({ ...r, n: num(r.n) }));
}
