import { sql } from 'kysely';
import type { Db } from './db.js';
import { nextInDaySequence } from './day-sequence.js';

/**
 * SQL of the front-desk rules (src/workflows/scheduling.ts, inpatient.ts,
 * patient-registration.ts). Every function takes the executor of the write transaction it runs
 * in (`StoreTransaction.executor()`), so it sees that transaction's own earlier writes. Lookups
 * go through the search index tables (rows exist only for current, live versions) joined to
 * `resource` for the content.
 */

/** The next patient number of `day` (YYYYMMDD): 1, 2, … — atomic across processes (see migration 0018). */
export function nextPatientNumber(db: Db, day: string): Promise<number> {
  return nextInDaySequence(db, 'patient_number_sequence', day);
}

export { referencing } from './referencing.js';

/**
 * The patient's appointments (other than `excludeId`) that reached an outcome (`statuses`)
 * and start before `before`, latest first, at most `limit`.
 */
export async function latestAppointmentOutcomes(
  db: Db,
  patientId: string,
  before: string,
  excludeId: string,
  statuses: readonly string[],
  limit: number,
): Promise<Array<{ id: string; status: string }>> {
  const result = await sql<{ id: string; status: string }>`
    SELECT r.id, r.content->>'status' AS status
    FROM resource r
    WHERE r.resource_type = 'Appointment' AND NOT r.deleted AND r.id <> ${excludeId}
      AND r.content->>'status' = ANY(${[...statuses]}::text[])
      AND r.content->>'start' IS NOT NULL
      AND (r.content->>'start')::timestamptz < ${before}::timestamptz
      AND r.id IN (
        SELECT x.resource_id FROM search_reference x
        WHERE x.resource_type = 'Appointment' AND x.param = 'actor' AND x.target_type = 'Patient' AND x.target_id = ${patientId})
    ORDER BY (r.content->>'start')::timestamptz DESC, r.id DESC
    LIMIT ${limit}`.execute(db);
  return result.rows;
}

/** Ids of the live resources of `resourceType` carrying the token `system|code` in `param` (other than `excludeId`). */
export async function withToken(db: Db, resourceType: string, param: string, system: string, code: string, excludeId: string): Promise<string[]> {
  const result = await sql<{ id: string }>`
    SELECT DISTINCT resource_id AS id FROM search_token
    WHERE resource_type = ${resourceType} AND param = ${param} AND system = ${system} AND code = ${code} AND resource_id <> ${excludeId}
    ORDER BY resource_id`.execute(db);
  return result.rows.map((r) => r.id);
}

/**
 * A free bed of a ward (directly, or in a room of the ward), locked for this transaction:
 * active, physicalType `bd`, operationalStatus U or none. Beds locked by concurrent
 * admissions are skipped (SKIP LOCKED), so concurrent admissions to one ward take different
 * beds instead of queueing on the same one; PostgreSQL re-checks the conditions on the
 * newest version of a row it locks, so a bed taken meanwhile is never returned.
 */
export async function lockFreeBed(db: Db, wardId: string): Promise<string | undefined> {
  const result = await sql<{ id: string }>`
    SELECT r.id FROM resource r
    WHERE r.resource_type = 'Location' AND NOT r.deleted
      AND r.id IN (
        SELECT x.resource_id FROM search_reference x
        WHERE x.resource_type = 'Location' AND x.param = 'partof' AND x.target_type = 'Location'
          AND (x.target_id = ${wardId} OR x.target_id IN (
            SELECT y.resource_id FROM search_reference y
            WHERE y.resource_type = 'Location' AND y.param = 'partof' AND y.target_type = 'Location' AND y.target_id = ${wardId})))
      AND r.content->'physicalType'->'coding' @> '[{"code":"bd"}]'::jsonb
      AND coalesce(r.content->>'status', 'active') = 'active'
      AND coalesce(r.content->'operationalStatus'->>'code', 'U') = 'U'
    ORDER BY r.content->>'name', r.id
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED`.execute(db);
  return result.rows[0]?.id;
}
