import { sql } from 'kysely';
import type { Db } from './db.js';
import type { Period } from './report-queries.js';

/**
 * SQL of the clinical reports (bed occupancy, lab turnaround; src/workflows/reports/). Same
 * conventions as report-queries.ts: the report facts of migration 0030, figures aggregated here.
 */

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

export interface WardRow {
  ward: string;
  name: string | null;
  /** Bed Locations in service (status active or none). */
  beds: number;
  /** Of those, operationalStatus O now. */
  occupied: number;
  /** Seconds of bed occupation inside the period (all beds of the ward, in service or not now). */
  occupiedSeconds: number;
  /** Encounter location entries counted. */
  stays: number;
}

/**
 * Per ward (Location of physicalType `wa`): its beds (physicalType `bd` whose `partOf` is the
 * ward, or a room of it up to three levels, as `$occupancy` finds them), those occupied now,
 * and the occupied time inside the period: each Encounter location entry at one of the beds
 * (status not planned, with a period start; encounter not cancelled / entered-in-error)
 * clipped to the period, its end the entry's period end, else the encounter's, else now.
 * The entries are the rows of `report_bed_stay` (migration 0030) whose span overlaps the period.
 */
export function wardOccupancyFiguresQuery(period: Period) {
  return sql<{ ward: string; name: string | null; beds: number; occupied: number; seconds: string | null; stays: number }>`
    WITH loc AS (
      SELECT r.id, r.content->>'name' AS name,
        (SELECT c->>'code' FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.content->'physicalType'->'coding') = 'array' THEN r.content->'physicalType'->'coding' ELSE '[]'::jsonb END) c
          WHERE c->>'system' IS NULL OR c->>'system' = 'http://terminology.hl7.org/CodeSystem/location-physical-type' LIMIT 1) AS kind,
        (CASE WHEN r.content->'partOf'->>'reference' LIKE 'Location/%' THEN substr(r.content->'partOf'->>'reference', 10) END) AS parent,
        coalesce(r.content->>'status', 'active') = 'active' AS in_service,
        r.content->'operationalStatus'->>'code' AS state
      FROM resource r
      WHERE r.resource_type = 'Location' AND NOT r.deleted
    ), ward AS (
      SELECT id, name FROM loc WHERE kind = 'wa'
    ), bed AS (
      SELECT b.id, b.in_service, b.state,
        CASE WHEN p1.kind = 'wa' THEN p1.id WHEN p2.kind = 'wa' THEN p2.id WHEN p3.kind = 'wa' THEN p3.id END AS ward
      FROM loc b
      LEFT JOIN loc p1 ON p1.id = b.parent
      LEFT JOIN loc p2 ON p2.id = p1.parent AND p1.kind IS DISTINCT FROM 'wa'
      LEFT JOIN loc p3 ON p3.id = p2.parent AND p2.kind IS DISTINCT FROM 'wa'
      WHERE b.kind = 'bd'
    ), stay AS (
      -- Bed stays overlapping the period (report_bed_stay, migration 0030: one row per counted
      -- location entry, found through its GiST-indexed span).
      SELECT bed.ward,
        greatest(0, extract(epoch FROM
          least(coalesce(s.end_at, now()), ${period.end}::timestamptz) - greatest(s.start_at, ${period.start}::timestamptz))) AS seconds
      FROM report_bed_stay s
      JOIN bed ON bed.id = s.location_id
      WHERE s.span && tstzrange(${period.start}::timestamptz, ${period.end}::timestamptz, '[)')
        AND bed.ward IS NOT NULL
    ), occupation AS (
      SELECT ward, sum(seconds) AS seconds, count(*) FILTER (WHERE seconds > 0) AS stays FROM stay GROUP BY ward
    ), capacity AS (
      SELECT ward, count(*) FILTER (WHERE in_service) AS beds, count(*) FILTER (WHERE in_service AND state = 'O') AS occupied
      FROM bed WHERE ward IS NOT NULL GROUP BY ward
    )
    SELECT ward.id AS ward, ward.name, coalesce(capacity.beds, 0)::int AS beds, coalesce(capacity.occupied, 0)::int AS occupied,
      coalesce(occupation.seconds, 0)::text AS seconds, coalesce(occupation.stays, 0)::int AS stays
    FROM ward
    LEFT JOIN capacity ON capacity.ward = ward.id
    LEFT JOIN occupation ON occupation.ward = ward.id
    ORDER BY ward.name, ward.id`;
}

export async function wardOccupancyFigures(db: Db, period: Period): Promise<WardRow[]> {
  const result = await wardOccupancyFiguresQuery(period).execute(db);
  return result.rows.map((r) => ({ ward: r.ward, name: r.name, beds: num(r.beds), occupied: num(r.occupied), occupiedSeconds: num(r.seconds), stays: num(r.stays) }));
}

export interface TurnaroundRow {
  /** Which grouping: 'all', 'test', 'priority' or 'test-priority'. */
  grouping: 'all' | 'test' | 'priority' | 'test-priority';
  system: string | null;
  code: string | null;
  display: string | null;
  priority: string | null;
  reports: number;
  medianMinutes: number;
  p90Minutes: number;
  meanMinutes: number;
}

/**
 * Lab turnaround: each DiagnosticReport of status final / amended / corrected / appended
 * issued in the period, paired with each ServiceRequest of its `basedOn`: minutes from the
 * request's `authoredOn` to the report's `issued` (pairs with issued before authoredOn are
 * data errors and left out). Median and 90th percentile are `percentile_cont` (linear
 * interpolation), per test (the request's first code coding) and priority (`routine` when
 * none), both, and overall. Read from the report facts of migration 0030, never the documents
 * (a DiagnosticReport can carry its PDF in presentedForm).
 */
export function labTurnaroundQuery(period: Period) {
  return sql<{ g_test: number; g_priority: number; system: string | null; code: string | null; display: string | null; priority: string | null; reports: number; median: string; p90: string; mean: string }>`
    WITH pair AS (
      -- report_lab_result / report_lab_request (migration 0030): a range over the period's
      -- reports, then each request by primary key.
      SELECT q.system, q.code, q.display, q.priority, extract(epoch FROM d.issued - q.authored) / 60 AS minutes
      FROM report_lab_result d
      CROSS JOIN LATERAL unnest(d.requests) AS b(id)
      -- A probe per request (OFFSET 0: as a join it was planned as a hash of every request, EXPLAIN at 1 M).
      CROSS JOIN LATERAL (SELECT q.* FROM report_lab_request q WHERE q.id = b.id OFFSET 0) q
      WHERE d.issued >= ${period.start}::timestamptz AND d.issued < ${period.end}::timestamptz
        AND d.status IN ('final', 'amended', 'corrected', 'appended')
        AND d.issued >= q.authored
    )
    SELECT GROUPING(system, code) AS g_test, GROUPING(priority) AS g_priority, system, code, min(display) AS display, priority,
      count(*)::int AS reports,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes)::text AS median,
      percentile_cont(0.9) WITHIN GROUP (ORDER BY minutes)::text AS p90,
      avg(minutes)::text AS mean
    FROM pair
    GROUP BY GROUPING SETS ((), (system, code), (priority), (system, code, priority))
    ORDER BY 1 DESC, 2 DESC, system, code, priority`;
}

export async function labTurnaround(db: Db, period: Period): Promise<TurnaroundRow[]> {
  const result = await labTurnaroundQuery(period).execute(db);
  return result.rows.map((r) => {
    const gTest = num(r.g_test) === 0;
    const gPriority = num(r.g_priority) === 0;
    const grouping = gTest && gPriority ? 'test-priority' : gTest ? 'test' : gPriority ? 'priority' : 'all';
    return {
      grouping,
      system: r.system,
      code: r.code,
      display: r.display,
      priority: r.priority,
      reports: num(r.reports),
      medianMinutes: num(r.median),
      p90Minutes: num(r.p90),
      meanMinutes: num(r.mean),
    };
  });
}
