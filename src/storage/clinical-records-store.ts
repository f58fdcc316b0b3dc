import { CompiledQuery } from 'kysely';
import type { Db } from './db.js';

/**
 * SQL of the clinical-records rules (issue 13 §1, src/workflows/clinical-records.ts): the
 * Provenances that point at a resource, found through the search index (`Provenance.target`
 * rows of search_reference, index search_reference_target: target_id first), so a signature
 * written earlier in the same transaction counts as soon as it is flushed.
 */
export const PROVENANCE_TARGETING = `
  SELECT r.id, r.content::text AS json
  FROM search_reference x
  JOIN resource r ON r.resource_type = x.resource_type AND r.id = x.resource_id AND NOT r.deleted
  WHERE x.target_id = $1 AND x.target_type = $2 AND x.resource_type = 'Provenance' AND x.param = 'target'`;

/** Ids and JSON texts of the current Provenances whose `target` names `type/id` (any version). */
export async function provenancesTargeting(db: Db, type: string, id: string): Promise<Array<{ id: string; json: string }>> {
  const result = await db.executeQuery<{ id: string; json: string }>(CompiledQuery.raw(PROVENANCE_TARGETING, [id, type]));
  return result.rows;
}

/**
 * The latest weight and height (LOINC 29463-7 / 8302-2) Observations of one encounter, newest
 * first per code: the inputs of the derived BMI (src/workflows/vital-signs-bmi.ts). Starts at
 * the encounter's reference rows (search_reference_target), one probe per candidate.
 */
export const BODY_MEASURES = `
  SELECT t.code, r.id, r.content::text AS json
  FROM search_reference e
  JOIN search_token t ON t.resource_type = e.resource_type AND t.resource_id = e.resource_id AND t.param = 'code'
    AND t.system = 'http://loinc.org' AND t.code IN ('29463-7', '8302-2')
  JOIN resource r ON r.resource_type = e.resource_type AND r.id = e.resource_id AND NOT r.deleted
  WHERE e.target_id = $1 AND e.target_type = 'Encounter' AND e.resource_type = 'Observation' AND e.param = 'encounter'
  ORDER BY r.last_updated DESC`;

export async function bodyMeasuresOfEncounter(db: Db, encounterId: string): Promise<Array<{ code: string; id: string; json: string }>> {
  const result = await db.executeQuery<{ code: string; id: string; json: string }>(CompiledQuery.raw(BODY_MEASURES, [encounterId]));
  return result.rows;
}
