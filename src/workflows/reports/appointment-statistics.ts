import type { MeasureReport } from 'fhir/r4.js';
import type { Db } from '../../storage/db.js';
import { appointmentCounts, inReportSnapshot, type AppointmentCountRow } from '../../storage/report-queries.js';
import { group, measureReport, proportion, type Figure, type StratumFigure } from './measure-report.js';
import { optionalParam, reportPeriod } from './period.js';

/**
 * `GET /fhir/MeasureReport/$appointment-statistics?periodStart=&periodEnd=[&practitioner=]`
 * (seed 002 "appointment statistics: trends, no-shows and cancellations", 004 reports
 * "appointments"). Appointments whose `start` lies in the period (with `practitioner` =
 * `Practitioner/[id]` or `[id]`: those where that practitioner participates).
 *
 * - `no-show-rate`: initial-population = every appointment; denominator = those whose patient
 *   was due and the outcome is known: fulfilled, noshow, arrived, checked-in; numerator =
 *   noshow; score = numerator / denominator (none when the denominator is 0). Booked, pending,
 *   proposed, waitlisted, cancelled and entered-in-error appointments are not in the
 *   denominator. Stratified by day (UTC), practitioner and status.
 * - `cancellation-rate`: numerator = cancelled, denominator = every appointment; by day and
 *   practitioner.
 */
export const ATTENDANCE_KNOWN = ['fulfilled', 'noshow', 'arrived', 'checked-in'];

interface Tally {
  all: number;
  known: number;
  noshow: number;
  cancelled: number;
}

function tally(rows: AppointmentCountRow[]): Map<string, Tally> {
  const out = new Map<string, Tally>();
  for (const r of rows) {
    const t = out.get(r.key) ?? { all: 0, known: 0, noshow: 0, cancelled: 0 };
    t.all += r.n;
    if (ATTENDANCE_KNOWN.includes(r.status)) t.known += r.n;
    if (r.status === 'noshow') t.noshow += r.n;
    if (r.status === 'cancelled') t.cancelled += r.n;
    out.set(r.key, t);
  }
  return out;
}

const noShow = (t: Tally): Figure => ({ populations: { 'initial-population': t.all, denominator: t.known, numerator: t.noshow }, score: proportion(t.noshow, t.known) });
const cancellation = (t: Tally): Figure => ({ populations: { denominator: t.all, numerator: t.cancelled }, score: proportion(t.cancelled, t.all) });

export async function appointmentStatisticsReport(db: Db, query: URLSearchParams): Promise<MeasureReport> {
  const period = reportPeriod(query, ['practitioner']);
  const practitioner = optionalParam(query, 'practitioner', /^(Practitioner\/)?[A-Za-z0-9\-.]{1,64}$/)?.replace(/^Practitioner\//, '');
  const rows = await inReportSnapshot(db, (snapshot) => appointmentCounts(snapshot, period, practitioner));
  const dayRows = rows.filter((r) => r.dim === 'day');
  const byDay = tally(dayRows);
  const byPractitioner = tally(rows.filter((r) => r.dim === 'practitioner').map((r) => ({ ...r, key: `Practitioner/${r.key}` })));
  const byStatus = tally(dayRows.map((r) => ({ ...r, key: r.status })));
  const overall: Tally = { all: 0, known: 0, noshow: 0, cancelled: 0 };
  for (const t of byDay.values()) {
    overall.all += t.all;
    overall.known += t.known;
    overall.noshow += t.noshow;
    overall.cancelled += t.cancelled;
  }
  const strata = (m: Map<string, Tally>, figure: (t: Tally) => Figure): StratumFigure[] =>
    [...m.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([value, t]) => ({ value, ...figure(t) }));
  return measureReport('appointment-statistics', { start: period.firstDay, end: period.lastDay }, [
    group('no-show-rate', 'No-show rate: noshow / (fulfilled + noshow + arrived + checked-in)', noShow(overall), [
      { code: 'day', strata: strata(byDay, noShow) },
      { code: 'practitioner', strata: strata(byPractitioner, noShow) },
      { code: 'status', strata: strata(byStatus, (t) => ({ populations: { 'initial-population': t.all } })) },
    ]),
    group('cancellation-rate', 'Cancellation rate: cancelled / all appointments', cancellation(overall), [
      { code: 'day', strata: strata(byDay, cancellation) },
      { code: 'practitioner', strata: strata(byPractitioner, cancellation) },
    ]),
  ]);
}
