import { sql } from 'kysely';
import type { Db } from './db.js';
import { nextInDaySequence } from './day-sequence.js';

/**
 * SQL of the laboratory workflow (src/workflows/lab/). Lookups go through the search index
 * tables (rows exist only for current, live versions) joined to `resource` for the content.
 */

/**
 * The next accession number of `day` (YYYYMMDD): 1, 2, … — atomic across processes (migration
 * 0025). `count` numbers at once: the last of them is returned.
 */
export function nextAccessionNumber(db: Db, day: string, count = 1): Promise<number> {
  return nextInDaySequence(db, 'lab_accession_sequence', day, count);
}

export interface WorklistPage {
  rows: Array<{ id: string; json: string }>;
  total: number;
}

/**
 * Open laboratory orders: live ServiceRequests whose status is active (index rows of `status`,
 * a small share of all orders) and that carry a code of the catalogue's system.
 */
function openLabOrders(catalogSystem: string) {
  return sql`
    r.resource_type = 'ServiceRequest' AND NOT r.deleted
    AND r.id IN (
      SELECT s.resource_id FROM search_token s
      WHERE s.resource_type = 'ServiceRequest' AND s.param = 'status' AND s.code = 'active')
    AND EXISTS (
      SELECT 1 FROM search_token c
      WHERE c.resource_type = 'ServiceRequest' AND c.resource_id = r.id AND c.param = 'code' AND c.system = ${catalogSystem})`;
}

/**
 * One page of the work list: priority stat, then asap, then urgent, then routine (or none);
 * oldest first within a priority (authoredOn, else lastUpdated); by id last, so pages are stable.
 */
export function labWorklistSql(catalogSystem: string, count: number, offset: number) {
  return sql<{ id: string; json: string }>`
    SELECT r.id, r.content::text AS json
    FROM resource r
    WHERE ${openLabOrders(catalogSystem)}
    ORDER BY
      CASE r.content->>'priority' WHEN 'stat' THEN 0 WHEN 'asap' THEN 1 WHEN 'urgent' THEN 2 ELSE 3 END,
      coalesce((SELECT min(d.low) FROM search_date d
                WHERE d.resource_type = 'ServiceRequest' AND d.resource_id = r.id AND d.param = 'authored'), r.last_updated),
      r.id
    LIMIT ${count} OFFSET ${offset}`;
}

export async function labWorklist(db: Db, catalogSystem: string, count: number, offset: number): Promise<WorklistPage> {
  const rows = await labWorklistSql(catalogSystem, count, offset).execute(db);
  const total = await sql<{ n: number }>`SELECT count(*)::int AS n FROM resource r WHERE ${openLabOrders(catalogSystem)}`.execute(db);
  return { rows: rows.rows, total: Number(total.rows[0]?.n ?? 0) };
}

export { referencingAny } from './referencing.js';

/**
 * The patient's earlier results of one catalogue test (Observation code `system|code`), other
 * than `excludeIds`, with a status of a released result, newest first, at most `limit`.
 */
export async function previousResults(
  db: Db,
  patientId: string,
  system: string,
  code: string,
  excludeIds: readonly string[],
  limit: number,
): Promise<Array<{ id: string; json: string }>> {
  return (await previousResultsSql(patientId, system, code, excludeIds, limit).execute(db)).rows;
}

export function previousResultsSql(patientId: string, system: string, code: string, excludeIds: readonly string[], limit: number) {
  return sql<{ id: string; json: string }>`
    SELECT r.id, r.content::text AS json
    FROM resource r
    WHERE r.resource_type = 'Observation' AND NOT r.deleted
      AND r.content->>'status' IN ('final', 'amended', 'corrected', 'preliminary')
      AND NOT (r.id = ANY(${[...excludeIds]}::text[]))
      AND r.id IN (
        SELECT x.resource_id FROM search_reference x
        WHERE x.resource_type = 'Observation' AND x.param = 'subject' AND x.target_type = 'Patient' AND x.target_id = ${patientId})
      AND r.id IN (
        SELECT y.resource_id FROM search_token y
        WHERE y.resource_type = 'Observation' AND y.param = 'code' AND y.system = ${system} AND y.code = ${code})
    ORDER BY coalesce((SELECT max(d.low) FROM search_date d
                       WHERE d.resource_type = 'Observation' AND d.resource_id = r.id AND d.param = 'date'), r.last_updated) DESC, r.id DESC
    LIMIT ${limit}`;
}
