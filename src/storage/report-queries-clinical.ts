import { sql } from 'kysely';
import type { Db } from './db.js';
import type { Period } from './report-queries.js';

/**
 * SQL of the clinical reports (bed occupancy, lab turnaround; src/workflows/reports/). Same
 * conventions as report-queries.ts: a search-index range first, `resource` by primary key,
 * figures aggregated here.
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
 * Encounters are found by their `location-period` index rows overlapping the period.
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
    ), enc AS (
      SELECT DISTINCT d.resource_id AS id
      FROM search_date d
      WHERE d.resource_type = 'Encounter' AND d.param = 'location-period'
        AND d.high > ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
    ), stay AS (
      SELECT bed.ward,
        greatest(0, extract(epoch FROM
          least(coalesce((l->'period'->>'end')::timestamptz, (e.content->'period'->>'end')::timestamptz, now()), ${period.end}::timestamptz)
          - greatest((l->'period'->>'start')::timestamptz, ${period.start}::timestamptz))) AS seconds
      FROM enc
      CROSS JOIN LATERAL (SELECT e.content FROM resource e WHERE e.resource_type = 'Encounter' AND e.id = enc.id AND NOT e.deleted OFFSET 0) e
      CROSS JOIN LATERAL jsonb_array_elements(e.content->'location') l
      JOIN bed ON bed.id = (CASE WHEN l->'location'->>'reference' LIKE 'Location/%' THEN substr(l->'location'->>'reference', 10) END)
      WHERE e.content->>'status' NOT IN ('cancelled', 'entered-in-error')
        AND coalesce(l->>'status', '') <> 'planned' AND l->'period'->>'start' IS NOT NULL
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
 * none), both, and overall. The report's status comes from its index row, not its content:
 * a DiagnosticReport can carry its PDF (presentedForm), which would be read whole otherwise.
 */
export function labTurnaroundQuery(period: Period) {
  return sql<{ g_test: number; g_priority: number; system: string | null; code: string | null; display: string | null; priority: string | null; reports: number; median: string; p90: string; mean: string }>`
    WITH pair AS (
      SELECT sr.content->'code'->'coding'->0->>'system' AS system,
        coalesce(sr.content->'code'->'coding'->0->>'code', sr.content->'code'->>'text') AS code,
        coalesce(sr.content->'code'->'coding'->0->>'display', sr.content->'code'->>'text') AS display,
        coalesce(sr.content->>'priority', 'routine') AS priority,
        extract(epoch FROM d.low - a.low) / 60 AS minutes
      FROM search_date d
      JOIN search_reference b ON b.resource_type = 'DiagnosticReport' AND b.resource_id = d.resource_id AND b.param = 'based-on' AND b.target_type = 'ServiceRequest'
      CROSS JOIN LATERAL (SELECT sr.content FROM resource sr WHERE sr.resource_type = 'ServiceRequest' AND sr.id = b.target_id AND NOT sr.deleted OFFSET 0) sr
      JOIN search_date a ON a.resource_type = 'ServiceRequest' AND a.resource_id = b.target_id AND a.param = 'authored'
      WHERE d.resource_type = 'DiagnosticReport' AND d.param = 'issued'
        AND d.low >= ${period.start}::timestamptz AND d.low < ${period.end}::timestamptz
        -- a probe per report (as EXISTS it was planned as a hash of every report's status row)
        AND (SELECT count(*) FROM search_token s WHERE s.resource_type = 'DiagnosticReport' AND s.resource_id = d.resource_id
          AND s.param = 'status' AND s.code IN ('final', 'amended', 'corrected', 'appended')) > 0
        AND d.low >= a.low
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
