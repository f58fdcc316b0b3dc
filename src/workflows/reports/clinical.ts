import type { MeasureReport } from 'fhir/r4.js';
import type { Db } from '../../storage/db.js';
import { inReportSnapshot } from '../../storage/report-queries.js';
import { labTurnaround, wardOccupancyFigures, type TurnaroundRow } from '../../storage/report-queries-clinical.js';
import { days, group, measureReport, minutes, proportion, type StratumFigure } from './measure-report.js';
import { reportPeriod } from './period.js';

/**
 * `GET /fhir/MeasureReport/$bed-occupancy?periodStart=&periodEnd=` (seed 004 FR-IP-001
 * "calculate occupancy rates", reports "bed occupancy"). Per ward (stratifier `ward`,
 * `Location/[id]`) and over all wards:
 *
 * - `occupancy-rate`: occupied bed-days / available bed-days; initial-population = beds.
 * - `occupied-bed-days`: the time Encounters held the ward's beds inside the period
 *   (`Encounter.location` entries at a bed, not planned, from their period start to their
 *   end, else the encounter's end, else now; clipped to the period), in days;
 *   initial-population = stays (location entries) counted.
 * - `available-bed-days`: beds in service now (Location.status active) × days of the period.
 * - `current-occupancy`: beds occupied now (operationalStatus O) / beds in service, at the
 *   time of the request.
 */
export async function bedOccupancyReport(db: Db, query: URLSearchParams): Promise<MeasureReport> {
  const period = reportPeriod(query);
  const wards = await inReportSnapshot(db, (snapshot) => wardOccupancyFigures(snapshot, period));
  const strata = (figure: (w: (typeof wards)[number]) => Omit<StratumFigure, 'value'>): StratumFigure[] => wards.map((w) => ({ value: `Location/${w.ward}`, ...figure(w) }));
  const sum = (f: (w: (typeof wards)[number]) => number) => wards.reduce((s, w) => s + f(w), 0);
  const occupiedDays = (w: (typeof wards)[number]) => w.occupiedSeconds / 86_400;
  const available = (w: (typeof wards)[number]) => w.beds * period.days;
  return measureReport('bed-occupancy', { start: period.firstDay, end: period.lastDay }, [
    group('occupancy-rate', 'Bed occupancy rate: occupied bed-days / available bed-days', { populations: { 'initial-population': sum((w) => w.beds) }, score: proportion(sum(occupiedDays), sum(available)) }, [
      { code: 'ward', strata: strata((w) => ({ populations: { 'initial-population': w.beds }, score: proportion(occupiedDays(w), available(w)) })) },
    ]),
    group('occupied-bed-days', 'Occupied bed-days in the period', { populations: { 'initial-population': sum((w) => w.stays) }, score: days(sum(occupiedDays)) }, [
      { code: 'ward', strata: strata((w) => ({ populations: { 'initial-population': w.stays }, score: days(occupiedDays(w)) })) },
    ]),
    group('available-bed-days', 'Available bed-days: beds in service × days', { populations: { 'initial-population': sum((w) => w.beds) }, score: days(sum(available)) }, [
      { code: 'ward', strata: strata((w) => ({ populations: { 'initial-population': w.beds }, score: days(available(w)) })) },
    ]),
    group('current-occupancy', 'Beds occupied now / beds in service', { populations: { denominator: sum((w) => w.beds), numerator: sum((w) => w.occupied) }, score: proportion(sum((w) => w.occupied), sum((w) => w.beds)) }, [
      { code: 'ward', strata: strata((w) => ({ populations: { denominator: w.beds, numerator: w.occupied }, score: proportion(w.occupied, w.beds) })) },
    ]),
  ]);
}

/**
 * `GET /fhir/MeasureReport/$lab-turnaround?periodStart=&periodEnd=` (issue 14 §5, seed 004
 * reports "lab utilization"): final DiagnosticReports issued in the period against the
 * ServiceRequests they are based on, minutes from `authoredOn` to `issued`. Groups
 * `turnaround-median`, `turnaround-p90` (linear interpolation, as percentile_cont) and
 * `turnaround-mean`; initial-population = report/request pairs; stratifiers `test`
 * (`system|code` of the request's code), `priority` (routine when none) and `test-priority`
 * (components test and priority).
 */
export async function labTurnaroundReport(db: Db, query: URLSearchParams): Promise<MeasureReport> {
  const period = reportPeriod(query);
  const rows = await inReportSnapshot(db, (snapshot) => labTurnaround(snapshot, period));
  const test = (r: TurnaroundRow) => (r.system ? `${r.system}|${r.code ?? ''}` : (r.code ?? 'unknown'));
  const figure = (code: string, display: string, pick: (r: TurnaroundRow) => number) => {
    const stratum = (r: TurnaroundRow, value: StratumFigure['value']): StratumFigure => ({ value, populations: { 'initial-population': r.reports }, score: r.reports ? minutes(pick(r)) : undefined });
    const all = rows.find((r) => r.grouping === 'all');
    return group(code, display, { populations: { 'initial-population': all?.reports ?? 0 }, score: all?.reports ? minutes(pick(all)) : undefined }, [
      { code: 'test', strata: rows.filter((r) => r.grouping === 'test').map((r) => stratum(r, test(r))) },
      { code: 'priority', strata: rows.filter((r) => r.grouping === 'priority').map((r) => stratum(r, r.priority ?? 'routine')) },
      { code: 'test-priority', strata: rows.filter((r) => r.grouping === 'test-priority').map((r) => stratum(r, { test: test(r), priority: r.priority ?? 'routine' })) },
    ]);
  };
  return measureReport('lab-turnaround', { start: period.firstDay, end: period.lastDay }, [
    figure('turnaround-median', 'Median minutes from order to final report', (r) => r.medianMinutes),
    figure('turnaround-p90', '90th percentile minutes from order to final report', (r) => r.p90Minutes),
    figure('turnaround-mean', 'Mean minutes from order to final report', (r) => r.meanMinutes),
  ]);
}
