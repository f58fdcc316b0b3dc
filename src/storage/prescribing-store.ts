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
  // Each branch reads `resource` by (resource_type, id = ANY(ids)), the ids taken from the index
  // tables in an init plan: the plans are fixed index probes, cheap to plan and bounded by one
  // patient's record. The weights are picked among the patient's Observations (not the reverse).
  const referencing = (type: string) => sql`ARRAY(
    SELECT x.resource_id FROM search_reference x
    WHERE x.target_id = ${patientId} AND x.target_type = 'Patient' AND x.resource_type = ${type} AND x.param = 'patient')`;
  const result = await sql<PrescribingRow>`
    SELECT r.resource_type, r.id, r.content::text AS json FROM ONLY resource r
    WHERE r.resource_type = 'Patient' AND r.id = ${patientId} AND NOT r.deleted
    UNION ALL
    SELECT r.resource_type, r.id, r.content::text AS json FROM ONLY resource r
    WHERE r.resource_type = 'AllergyIntolerance' AND r.id = ANY(${referencing('AllergyIntolerance')}) AND NOT r.deleted
    UNION ALL
    SELECT r.resource_type, r.id, r.content::text AS json FROM ONLY resource r
    WHERE r.resource_type = 'MedicationRequest' AND r.id = ANY(${referencing('MedicationRequest')}) AND NOT r.deleted
      AND r.id <> ${excludeId} AND r.content->>'status' = ANY(${[...medStatuses]}::text[])
    ${withWeight ? sql`UNION ALL ${latestWeight(referencing('Observation'))}` : sql``}`.execute(db);
  return result.rows;
}

/** The latest body weight among the patient's Observations (the `date` index row's upper bound). */
function latestWeight(observations: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`(SELECT r.resource_type, r.id, r.content::text AS json FROM ONLY resource r
     JOIN search_date d ON d.resource_type = 'Observation' AND d.resource_id = r.id AND d.param = 'date'
     WHERE r.resource_type = 'Observation' AND NOT r.deleted
       AND r.id = ANY(ARRAY(
         SELECT c.resource_id FROM search_token c
         WHERE c.resource_type = 'Observation' AND c.param = 'code' AND c.code = ${BODY_WEIGHT_LOINC} AND c.system = 'http://loinc.org'
           AND c.resource_id = ANY(${observations})))
       AND coalesce(r.content->>'status', 'final') IN ('final', 'amended', 'corrected', 'preliminary')
     ORDER BY d.high DESC, r.id DESC
     LIMIT 1)`;
}

/** Live resources of one type by id, in one statement (Medications named by prescriptions, DetectedIssues named by one). */
export async function resourcesById(db: Db, resourceType: string, ids: readonly string[]): Promise<PrescribingRow[]> {
  if (ids.length === 0) return [];
  const result = await sql<PrescribingRow>`
    SELECT r.resource_type, r.id, r.content::text AS json FROM ONLY resource r
    WHERE r.resource_type = ${resourceType} AND r.id = ANY(${[...ids]}::text[]) AND NOT r.deleted`.execute(db);
  return result.rows;
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
