import type { MeasureReport } from 'fhir/r4.js';
import { errors } from '../../fhir/errors.js';
import type { Db } from '../../storage/db.js';
import { inReportSnapshot, invoiceLinesByCategory, invoiceTotalsByDay, outstandingInvoices, paymentsByDay } from '../../storage/report-queries.js';
import { group, measureReport, money, type StratumFigure } from './measure-report.js';
import { optionalParam, reportPeriod } from './period.js';

/**
 * `GET /fhir/MeasureReport/$revenue?periodStart=&periodEnd=[&currency=]` (seed 004 reports
 * "revenue", 000 "financial reporting … revenue and outstanding payments"). Groups:
 *
 * - `invoiced-gross` / `invoiced-net`: Invoices of status issued or balanced dated
 *   (`Invoice.date`) in the period: count (initial-population) and sum of totalGross /
 *   totalNet; stratified by day, month, status, and category (line items by charge code:
 *   count of lines, line net, and for gross line net + tax).
 * - `collected`: active PaymentReconciliations with `paymentDate` in the period: count and sum
 *   of `paymentAmount` (refunds negative); by day and month.
 * - `outstanding`: invoices issued (not balanced) dated up to periodEnd, as they are now:
 *   count and totalGross minus the PaymentReconciliation `detail.amount`s allocated to them
 *   (`detail.request` = the Invoice).
 *
 * Amounts are summed per currency; data in several currencies needs `currency=` (400 otherwise).
 */
export async function revenueReport(db: Db, query: URLSearchParams): Promise<MeasureReport> {
  const period = reportPeriod(query, ['currency']);
  const wanted = optionalParam(query, 'currency', /^[A-Z]{3}$/);
  // Four statements on one snapshot, so invoiced, collected and outstanding agree.
  const [days, categories, payments, open] = await inReportSnapshot(db, async (snapshot) => [
    await invoiceTotalsByDay(snapshot, period),
    await invoiceLinesByCategory(snapshot, period),
    await paymentsByDay(snapshot, { first: period.firstDay, last: period.lastDay }),
    await outstandingInvoices(snapshot, period.end),
  ] as const);
  const seen = new Set([...days, ...categories, ...payments, ...open].map((r) => r.currency).filter((c): c is string => c !== null));
  if (!wanted && seen.size > 1) throw errors.incorrect(`the data is in several currencies (${[...seen].sort().join(', ')}): choose one with currency=`, ['currency']);
  const currency = wanted ?? [...seen][0] ?? null;
  const mine = <T extends { currency: string | null }>(rows: T[]) => rows.filter((r) => r.currency === null || r.currency === currency);

  const dayRows = mine(days);
  const sumBy = <T>(rows: T[], key: (r: T) => string, count: (r: T) => number, amount: (r: T) => number): StratumFigure[] => {
    const acc = new Map<string, { n: number; amount: number }>();
    for (const r of rows) {
      const a = acc.get(key(r)) ?? { n: 0, amount: 0 };
      a.n += count(r);
      a.amount += amount(r);
      acc.set(key(r), a);
    }
    return [...acc.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([value, a]) => ({ value, populations: { 'initial-population': a.n }, score: money(a.amount, currency) }));
  };
  const total = (rows: StratumFigure[]) => ({
    populations: { 'initial-population': rows.reduce((s, r) => s + (r.populations['initial-population'] ?? 0), 0) },
    score: money(rows.reduce((s, r) => s + (r.score?.value ?? 0), 0), currency),
  });
  const categoryKey = (r: { system: string | null; code: string | null }) => (r.code === null ? 'uncategorised' : r.system ? `${r.system}|${r.code}` : r.code);

  const invoiced = (code: 'invoiced-gross' | 'invoiced-net', display: string, amount: (r: (typeof dayRows)[number]) => number, lineAmount: (r: (typeof categories)[number]) => number) => {
    const byDay = sumBy(dayRows, (r) => r.day, (r) => r.invoices, amount);
    return group(code, display, total(byDay), [
      { code: 'day', strata: byDay },
      { code: 'month', strata: sumBy(dayRows, (r) => r.day.slice(0, 7), (r) => r.invoices, amount) },
      { code: 'status', strata: sumBy(dayRows, (r) => r.status, (r) => r.invoices, amount) },
      { code: 'category', strata: sumBy(mine(categories), categoryKey, (r) => r.lines, lineAmount) },
    ]);
  };
  const paymentRows = mine(payments);
  const byPaymentDay = sumBy(paymentRows, (r) => r.day, (r) => r.payments, (r) => r.amount);
  const openRows = mine(open);
  const outstanding = {
    populations: { 'initial-population': openRows.reduce((s, r) => s + r.invoices, 0) },
    score: money(openRows.reduce((s, r) => s + r.gross - r.paid, 0), currency),
  };
  return measureReport('revenue', { start: period.firstDay, end: period.lastDay }, [
    invoiced('invoiced-gross', 'Invoiced, taxes included (Invoice.totalGross)', (r) => r.gross, (r) => r.net + r.tax),
    invoiced('invoiced-net', 'Invoiced, taxes excluded (Invoice.totalNet)', (r) => r.net, (r) => r.net),
    group('collected', 'Payments received (PaymentReconciliation.paymentAmount)', total(byPaymentDay), [
      { code: 'day', strata: byPaymentDay },
      { code: 'month', strata: sumBy(paymentRows, (r) => r.day.slice(0, 7), (r) => r.payments, (r) => r.amount) },
    ]),
    group('outstanding', 'Outstanding: issued invoices less payments allocated to them', outstanding),
  ]);
}
