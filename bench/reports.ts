import { sql, type RawBuilder } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { labTurnaroundQuery, wardOccupancyFiguresQuery } from '../src/storage/report-queries-clinical.js';
import { appointmentCountsQuery, inReportSnapshot, invoiceLinesByCategoryQuery, invoiceTotalsByDayQuery, outstandingInvoicesQuery, paymentsByDayQuery } from '../src/storage/report-queries.js';
import { compare, measure, type Comparison } from './harness.js';
import { REPORT_PERIOD, reportsData, reportsDataShape } from './reports-data.js';
import { writeAll } from './search-load.js';

/**
 * Hospital reports (issue 14 §5; seed NFR: under 1 s at 100 k records; aim 200 ms at 1 M):
 * `total` resources of the report types (bench/reports-data.ts) written through the store's
 * write path (validation and workflow hooks, set-based index rows), ANALYZEd, then each
 * report operation over HTTP (inject, one caller) for one month, beside the hand-written SQL of
 * its headline figure on the same tables in the same run (the ratio is the cost of the whole
 * report — all its figures, the MeasureReport, HTTP — over that one query). Every report
 * statement's EXPLAIN ANALYZE is kept, with a flag when it reads a whole table.
 */
export interface ReportsBenchReport {
  resources: number;
  loadSeconds: number;
  byType: Record<string, number>;
  comparisons: Comparison[];
  plans: Array<{ statement: string; ms: number; fullScans: string[]; plan: string }>;
  aim: string;
  met: boolean;
}

const period = { start: `${REPORT_PERIOD.first}T00:00:00.000Z`, end: new Date(Date.parse(`${REPORT_PERIOD.last}T00:00:00Z`) + 86_400_000).toISOString() };
const QUERY = `periodStart=${REPORT_PERIOD.first}&periodEnd=${REPORT_PERIOD.last}`;

/** The headline figure of each report written by hand: what a DBA would type for it. */
const BASELINES: Record<string, RawBuilder<unknown>> = {
  revenue: sql`
    SELECT to_char(d.low AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*), sum((r.content->'totalGross'->>'value')::numeric)
    FROM search_date d JOIN resource r ON r.resource_type = 'Invoice' AND r.id = d.resource_id
    WHERE d.resource_type = 'Invoice' AND d.param = 'date' AND d.low >= ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
      AND r.content->>'status' IN ('issued', 'balanced')
    GROUP BY 1`,
  'appointment-statistics': sql`
    SELECT p.target_id, count(*) FILTER (WHERE r.content->>'status' = 'noshow')::float
      / nullif(count(*) FILTER (WHERE r.content->>'status' IN ('fulfilled', 'noshow', 'arrived', 'checked-in')), 0)
    FROM search_date d JOIN resource r ON r.resource_type = 'Appointment' AND r.id = d.resource_id
    JOIN search_reference p ON p.resource_type = 'Appointment' AND p.resource_id = d.resource_id AND p.param = 'practitioner'
    WHERE d.resource_type = 'Appointment' AND d.param = 'date' AND d.low >= ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
    GROUP BY 1`,
  'bed-occupancy': sql`
    SELECT w.target_id AS ward, sum(extract(epoch FROM least(d.high, ${period.end}::timestamptz) - greatest(d.low, ${period.start}::timestamptz))) / 86400
    FROM search_date d
    JOIN search_reference l ON l.resource_type = 'Encounter' AND l.resource_id = d.resource_id AND l.param = 'location'
    JOIN search_reference w ON w.resource_type = 'Location' AND w.resource_id = l.target_id AND w.param = 'partof'
    WHERE d.resource_type = 'Encounter' AND d.param = 'location-period' AND d.high > ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
    GROUP BY 1`,
  'lab-turnaround': sql`
    SELECT sr.content->'code'->'coding'->0->>'code', percentile_cont(0.5) WITHIN GROUP (ORDER BY d.low - a.low)
    FROM search_date d
    JOIN search_reference b ON b.resource_type = 'DiagnosticReport' AND b.resource_id = d.resource_id AND b.param = 'based-on'
    JOIN resource sr ON sr.resource_type = 'ServiceRequest' AND sr.id = b.target_id
    JOIN search_date a ON a.resource_type = 'ServiceRequest' AND a.resource_id = sr.id AND a.param = 'authored'
    WHERE d.resource_type = 'DiagnosticReport' AND d.param = 'issued' AND d.low >= ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
    GROUP BY 1`,
};

const STATEMENTS: Record<string, RawBuilder<unknown>> = {
  'revenue: invoices by day': invoiceTotalsByDayQuery(period),
  'revenue: lines by category': invoiceLinesByCategoryQuery(period),
  'revenue: payments by day': paymentsByDayQuery({ first: REPORT_PERIOD.first, last: REPORT_PERIOD.last }),
  'revenue: outstanding': outstandingInvoicesQuery(period.end),
  'appointment-statistics': appointmentCountsQuery(period),
  'bed-occupancy': wardOccupancyFiguresQuery(period),
  'lab-turnaround': labTurnaroundQuery(period),
};

export async function benchReports(o: { app: ServerApp; token: string; total: number; calls: number; log?: (line: string) => void }): Promise<ReportsBenchReport> {
  const log = o.log ?? ((line: string) => console.log(line));
  const db = o.app.database.db;
  const shape = reportsDataShape(o.total);
  const load = await writeAll(o.app.store, reportsData(o.total), {
    batch: 500,
    inFlight: 2,
    onProgress: (n) => {
      if (n % 100_000 < 500) log(`  ${n} resources written`);
    },
  });
  log(`  ${load.resources} resources written in ${load.seconds.toFixed(1)} s (${load.perSecond.toFixed(0)}/s): ${Object.entries(load.byType).map(([k, v]) => `${v} ${k}`).join(', ')}; ${shape.wards} wards × ${shape.bedsPerWard} beds`);
  await sql`ANALYZE`.execute(o.app.database.unlimitedDb);
  const { plans, comparisons } = await measureReports({ app: o.app, token: o.token, calls: o.calls, resources: load.resources, log });
  const aim = 'each report p95 ≤ 200 ms at 1 M resources (seed: < 1 s at 100 k)';
  return { resources: load.resources, loadSeconds: load.seconds, byType: load.byType, comparisons, plans, aim, met: comparisons.every((c) => c.met === true) };
}

/** EXPLAIN ANALYZE of every report statement, then each report over HTTP beside its headline SQL, on data already loaded. */
export async function measureReports(o: { app: ServerApp; token: string; calls: number; resources: number; log: (line: string) => void }): Promise<Pick<ReportsBenchReport, 'plans' | 'comparisons'>> {
  const log = o.log;
  const db = o.app.database.db;

  const plans: ReportsBenchReport['plans'] = [];
  for (const [statement, query] of Object.entries(STATEMENTS)) {
    // As the reports run them (src/storage/report-queries.ts#inReportSnapshot: JIT off).
    const rows = await inReportSnapshot(db, (snapshot) => sql<Record<string, string>>`EXPLAIN (ANALYZE, COSTS OFF) ${query}`.execute(snapshot));
    const plan = rows.rows.map((r) => Object.values(r)[0]).join('\n');
    const ms = Number(/Execution Time: ([0-9.]+)/.exec(plan)?.[1] ?? NaN);
    // A full read of a big table is the thing to catch (Locations are few: read whole by design).
    const fullScans = [...plan.matchAll(/Seq Scan on (\w+)/g)].map((m) => m[1]!).filter((t) => t !== 'loc');
    plans.push({ statement, ms, fullScans, plan });
    log(`  EXPLAIN ${statement}: ${ms.toFixed(1)} ms${fullScans.length ? `, full scans: ${fullScans.join(', ')}` : ', index ranges only'}`);
    if (process.env.BENCH_REPORTS_PLANS === '1') log(plan);
  }

  const headers = { authorization: `Bearer ${o.token}` };
  const comparisons: Comparison[] = [];
  for (const name of Object.keys(BASELINES)) {
    const query = name === 'revenue' ? `${QUERY}&currency=VND` : QUERY;
    const fhir = await measure(`$${name} (HTTP inject)`, o.calls, 1, async () => {
      const res = await o.app.http.inject({ method: 'GET', url: `/fhir/MeasureReport/$${name}?${query}`, headers });
      if (res.statusCode !== 200) throw new Error(`$${name}: ${res.statusCode} ${res.body.slice(0, 300)}`);
    });
    const raw = await measure(`${name} headline SQL by hand`, o.calls, 1, async () => {
      await BASELINES[name]!.execute(db);
    });
    comparisons.push(compare(`$${name} at ${o.resources} resources (one month) vs its headline SQL`, fhir, raw, { text: 'p95 ≤ 200 ms (seed: < 1 s at 100 k)', met: (c) => c.fhir.p95Ms <= 200 }));
  }
  return { plans, comparisons };
}
