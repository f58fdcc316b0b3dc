import { sql, type RawBuilder } from 'kysely';
import type { Db } from './db.js';

/**
 * Trends of Observations over the search index (issue 13 §2): `Observation/$lastn` and
 * `Observation/$stats`, each one statement, starting at the patient's `subject` reference rows
 * (index search_reference_target, target_id first) and probing each Observation's code /
 * category / date / status rows through the `_res` indexes (resource_type, resource_id, param).
 * Statuses entered-in-error and cancelled are left out.
 */
export interface CodeFilter {
  /** '' for any system. */
  system: string;
  code: string;
}

export interface TrendQuery {
  patientId: string;
  codes: readonly CodeFilter[];
  /** category codes (any system) */
  categories: readonly string[];
  start?: string;
  end?: string;
}

/** `codeColumn` / `systemColumn` match one of `codes` (a code filter without a system matches any system). */
function codeMatch(codeColumn: string, systemColumn: string, codes: readonly CodeFilter[]): RawBuilder<unknown> {
  if (codes.length === 0) return sql`true`;
  return sql`EXISTS (SELECT 1 FROM unnest(${codes.map((c) => c.code)}::text[], ${codes.map((c) => c.system)}::text[]) AS f(code, system)
    WHERE f.code = ${sql.ref(codeColumn)} AND (f.system = '' OR f.system = ${sql.ref(systemColumn)}))`;
}

function common(q: TrendQuery): RawBuilder<unknown> {
  const category = q.categories.length === 0 ? sql`true` : sql`EXISTS (SELECT 1 FROM search_token c WHERE c.resource_type = 'Observation' AND c.resource_id = s.resource_id AND c.param = 'category' AND c.code = ANY(${[...q.categories]}::text[]))`;
  const period =
    q.start === undefined && q.end === undefined
      ? sql`true`
      : sql`EXISTS (SELECT 1 FROM search_date d WHERE d.resource_type = 'Observation' AND d.resource_id = s.resource_id AND d.param = 'date'
          AND d.high >= ${q.start ?? '-infinity'}::timestamptz AND d.low <= ${q.end ?? 'infinity'}::timestamptz)`;
  return sql`s.target_id = ${q.patientId} AND s.target_type = 'Patient' AND s.resource_type = 'Observation' AND s.param = 'subject'
    AND ${category} AND ${period}
    AND NOT EXISTS (SELECT 1 FROM search_token st WHERE st.resource_type = 'Observation' AND st.resource_id = s.resource_id AND st.param = 'status' AND st.code IN ('entered-in-error', 'cancelled'))`;
}

export function lastnSql(q: TrendQuery, max: number): RawBuilder<{ id: string; system: string | null; code: string; json: string }> {
  return sql<{ id: string; system: string | null; code: string; json: string }>`
    WITH coded AS (
      SELECT s.resource_id AS id, t.system, t.code,
        (SELECT max(d.high) FROM search_date d WHERE d.resource_type = 'Observation' AND d.resource_id = s.resource_id AND d.param = 'date') AS effective
      FROM search_reference s
      JOIN search_token t ON t.resource_type = 'Observation' AND t.resource_id = s.resource_id AND t.param = 'code'
      WHERE ${common(q)} AND ${codeMatch('t.code', 't.system', q.codes)}
    ), ranked AS (
      SELECT id, system, code, row_number() OVER (PARTITION BY system, code ORDER BY effective DESC NULLS LAST, id DESC) AS n
      FROM coded
    )
    SELECT r.id, ranked.system, ranked.code, r.content::text AS json
    FROM ranked JOIN resource r ON r.resource_type = 'Observation' AND r.id = ranked.id AND NOT r.deleted
    WHERE ranked.n <= ${max}
    ORDER BY ranked.system, ranked.code, ranked.n`;
}

export async function lastn(db: Db, q: TrendQuery, max: number): Promise<Array<{ id: string; system: string | null; code: string; json: string }>> {
  return (await lastnSql(q, max).execute(db)).rows;
}

export interface StatsRow {
  system: string | null;
  code: string;
  unit: string | null;
  count: string;
  average: string | null;
  minimum: string | null;
  maximum: string | null;
  median: number | string | null;
  sum: string | null;
  std_dev: string | null;
  first: Date | string | null;
  last: Date | string | null;
}

/**
 * Statistics per code and unit over the values of `Observation.value` and of components
 * (composites `code-value-quantity` and `component-code-value-quantity`: c1 the code, c2 the
 * value, UCUM-canonical where convertible, c2_code its unit).
 */
export function statsSql(q: TrendQuery): RawBuilder<StatsRow> {
  return sql<StatsRow>`
    SELECT v.c1_system AS system, v.c1_code AS code, v.c2_code AS unit,
      count(*)::text AS count, avg(v.c2_low)::text AS average, min(v.c2_low)::text AS minimum, max(v.c2_low)::text AS maximum,
      percentile_cont(0.5) WITHIN GROUP (ORDER BY v.c2_low) AS median, sum(v.c2_low)::text AS sum, stddev_samp(v.c2_low)::text AS std_dev,
      min(d.low) AS first, max(d.high) AS last
    FROM search_reference s
    JOIN search_composite v ON v.resource_type = 'Observation' AND v.resource_id = s.resource_id
      AND v.param IN ('code-value-quantity', 'component-code-value-quantity') AND v.c2_low IS NOT NULL
    LEFT JOIN search_date d ON d.resource_type = 'Observation' AND d.resource_id = s.resource_id AND d.param = 'date'
    WHERE ${common(q)} AND ${codeMatch('v.c1_code', 'v.c1_system', q.codes)}
    GROUP BY v.c1_system, v.c1_code, v.c2_code
    ORDER BY v.c1_system, v.c1_code, v.c2_code`;
}

export async function stats(db: Db, q: TrendQuery): Promise<StatsRow[]> {
  return (await statsSql(q).execute(db)).rows;
}
