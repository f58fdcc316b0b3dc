import { sql, type RawBuilder } from 'kysely';
import type { Db } from './db.js';

/**
 * SQL of the prescribing rules (src/workflows/prescribing*.ts). Every function takes the
 * executor of the write transaction (`StoreTransaction.executor()`), so it sees that
 * transaction's earlier writes (a transaction Bundle's Patient, allergies and weight). Lookups
 * start from `search_reference_target` (target_id, target_type, resource_type, param, …): rows
 * exist only for current, live versions, so no history is scanned.
 */

export interface PrescribingRow {
  resource_type: string;
  id: string;
  json: string;
}

/** LOINC body weight, the code of the weight the dose check uses. */
export const BODY_WEIGHT_LOINC = '29463-7';

/**
 * Everything the checks of one prescription need, in ONE round trip: the Patient, its
 * AllergyIntolerances, its other MedicationRequests in `medStatuses` (other than `excludeId`)
 * and (`withWeight`: only when a dose limit in mg/kg needs it) its latest body-weight Observation.
 */
export async function prescribingContext(db: Db, patientId: string, excludeId: string, medStatuses: readonly string[], withWeight = true): Promise<PrescribingRow[]> {
  const result = await prescribingContextQuery(patientId, excludeId, medStatuses, withWeight).execute(db);
  return result.rows;
}

/**
 * The statement of `prescribingContext` (exported for EXPLAIN in bench/ and tests). Each branch
 * starts from the patient's own rows of `search_reference_target` (an equality on the whole
 * index prefix) and reads `resource` by primary key, so its cost is bounded by one patient's
 * record whatever the statistics say: no branch has an ORDER BY that an index over every
 * patient's rows could serve (the trap the weight lookup fell into: walking the date index of
 * ALL Observations newest first, probing each, when the tables had no statistics yet).
 */
export function prescribingContextQuery(patientId: string, excludeId: string, medStatuses: readonly string[], withWeight: boolean): RawBuilder<PrescribingRow> {
  return sql<PrescribingRow>`
    SELECT r.resource_type, r.id, r.content::text AS json FROM ONLY resource r
    WHERE r.resource_type = 'Patient' AND r.id = ${patientId} AND NOT r.deleted
    UNION ALL
    ${referencingPatient(patientId, 'AllergyIntolerance', sql``)}
    UNION ALL
    ${referencingPatient(patientId, 'MedicationRequest', sql`AND r.id <> ${excludeId} AND r.content->>'status' = ANY(${[...medStatuses]}::text[])`)}
    ${withWeight ? sql`UNION ALL ${latestWeight(patientId)}` : sql``}`;
}

/**
 * The live resources of `type` whose `patient` reference is the patient: one primary-key probe
 * of `resource` per index row, in a LATERAL subquery that cannot be flattened (OFFSET 0). With
 * `id = ANY(ids)` instead, PGlite's planner (PostgreSQL 17+) took the index on
 * (resource_type, last_updated, id) and read every resource of the type.
 */
function referencingPatient(patientId: string, type: string, filter: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`SELECT r.resource_type, r.id, r.content::text AS json
    FROM search_reference x
    CROSS JOIN LATERAL (
      SELECT r.resource_type, r.id, r.content FROM ONLY resource r
      WHERE r.resource_type = ${type} AND r.id = x.resource_id AND NOT r.deleted ${filter}
      OFFSET 0) r
    WHERE x.target_id = ${patientId} AND x.target_type = 'Patient' AND x.resource_type = ${type} AND x.param = 'patient'`;
}

/**
 * The latest body weight (by the upper bound of the `date` index row) among the patient's
 * Observations. Driven from the patient's Observation references; the code, resource and date
 * of each are probed in LATERAL subqueries that cannot be flattened (LIMIT / OFFSET 0), so the
 * planner can neither reorder them into a walk of an index over all Observations nor hash-join
 * them against a whole table: one probe per Observation of this patient, then a top-1 sort.
 */
function latestWeight(patientId: string): RawBuilder<unknown> {
  return sql`SELECT r.resource_type, r.id, r.content::text AS json FROM ONLY resource r
    WHERE r.resource_type = 'Observation' AND r.id = (
      SELECT x.resource_id
      FROM search_reference x
      CROSS JOIN LATERAL (
        SELECT 1 AS weight FROM search_token c
        WHERE c.resource_type = 'Observation' AND c.param = 'code' AND c.code = ${BODY_WEIGHT_LOINC} AND c.resource_id = x.resource_id AND c.system = 'http://loinc.org'
        LIMIT 1) c
      CROSS JOIN LATERAL (
        SELECT o.id FROM ONLY resource o
        WHERE o.resource_type = 'Observation' AND o.id = x.resource_id AND NOT o.deleted
          AND coalesce(o.content->>'status', 'final') IN ('final', 'amended', 'corrected', 'preliminary')
        OFFSET 0) o
      CROSS JOIN LATERAL (
        SELECT d.high FROM search_date d
        WHERE d.resource_type = 'Observation' AND d.resource_id = x.resource_id AND d.param = 'date'
        OFFSET 0) d
      WHERE x.target_id = ${patientId} AND x.target_type = 'Patient' AND x.resource_type = 'Observation' AND x.param = 'patient'
      ORDER BY d.high DESC, x.resource_id DESC
      LIMIT 1)`;
}

/** Live resources of one type by id, in one statement (Medications named by prescriptions, DetectedIssues named by one). */
export async function resourcesById(db: Db, resourceType: string, ids: readonly string[]): Promise<PrescribingRow[]> {
  if (ids.length === 0) return [];
  return (await resourcesByIdQuery(resourceType, ids).execute(db)).rows;
}

/** The statement of `resourcesById`: one primary-key probe per id (see referencingPatient: `id = ANY(…)` may read the whole type). */
export function resourcesByIdQuery(resourceType: string, ids: readonly string[]): RawBuilder<PrescribingRow> {
  return sql<PrescribingRow>`
    SELECT r.resource_type, r.id, r.content::text AS json
    FROM unnest(${[...ids]}::text[]) AS i(id)
    CROSS JOIN LATERAL (
      SELECT r.resource_type, r.id, r.content FROM ONLY resource r
      WHERE r.resource_type = ${resourceType} AND r.id = i.id AND NOT r.deleted
      OFFSET 0) r`;
}

export interface FillCounts {
  /** MedicationDispenses of the prescription that handed out medication (completed, in-progress, preparation, on-hold). */
  dispensed: number;
  /** Refill Tasks (code fulfill) still open: requested, received, accepted, ready, in-progress, on-hold. */
  openRefills: number;
}

/** Dispenses and open refill requests of one MedicationRequest (other than the Task `excludeTaskId`), one statement. */
export async function fillCounts(db: Db, medicationRequestId: string, excludeTaskId: string): Promise<FillCounts> {
  const result = await sql<{ resource_type: string; n: string | number }>`
    SELECT r.resource_type, count(*) AS n
    FROM search_reference x
    JOIN ONLY resource r ON r.resource_type = x.resource_type AND r.id = x.resource_id
    WHERE x.target_id = ${medicationRequestId} AND x.target_type = 'MedicationRequest'
      AND ((x.resource_type = 'MedicationDispense' AND x.param = 'prescription'
            AND r.content->>'status' IN ('completed', 'in-progress', 'preparation', 'on-hold'))
        OR (x.resource_type = 'Task' AND x.param = 'focus' AND x.resource_id <> ${excludeTaskId}
            AND r.content->>'status' IN ('requested', 'received', 'accepted', 'ready', 'in-progress', 'on-hold')
            AND r.content->'code'->'coding' @> '[{"code":"fulfill"}]'::jsonb))
      AND NOT r.deleted
    GROUP BY r.resource_type`.execute(db);
  const count = (type: string) => Number(result.rows.find((r) => r.resource_type === type)?.n ?? 0);
  return { dispensed: count('MedicationDispense'), openRefills: count('Task') };
}
