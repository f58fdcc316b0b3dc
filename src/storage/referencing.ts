import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * Live resources of `resourceType` whose reference parameter `param` points at one of `targets`
 * (`Type/id`), ids and contents, ordered by id. Read through `search_reference` (rows exist only
 * for current, live versions) joined to `resource` for the content.
 *
 * One target — the common case on hot paths such as booking — is compared with plain
 * equalities, so the planner gets a direct index condition on `search_reference_target`; several
 * targets are joined from an unnested list of (type, id) pairs.
 */
export async function referencingAny(db: Db, resourceType: string, param: string, targets: readonly string[]): Promise<Array<{ id: string; json: string }>> {
  if (targets.length === 0) return [];
  const types = targets.map((t) => t.split('/')[0]!);
  const ids = targets.map((t) => t.split('/')[1]!);
  const matches =
    targets.length === 1
      ? sql`SELECT x.resource_id FROM search_reference x
            WHERE x.resource_type = ${resourceType} AND x.param = ${param} AND x.target_type = ${types[0]} AND x.target_id = ${ids[0]}`
      : sql`SELECT x.resource_id FROM search_reference x
            JOIN unnest(${types}::text[], ${ids}::text[]) AS k(t, i) ON x.target_type = k.t AND x.target_id = k.i
            WHERE x.resource_type = ${resourceType} AND x.param = ${param}`;
  const result = await sql<{ id: string; json: string }>`
    SELECT r.id, r.content::text AS json
    FROM resource r
    WHERE r.resource_type = ${resourceType} AND NOT r.deleted AND r.id IN (${matches})
    ORDER BY r.id`.execute(db);
  return result.rows;
}

/** `referencingAny` for one target `targetType/targetId`. */
export function referencing(db: Db, resourceType: string, param: string, targetType: string, targetId: string): Promise<Array<{ id: string; json: string }>> {
  return referencingAny(db, resourceType, param, [`${targetType}/${targetId}`]);
}
