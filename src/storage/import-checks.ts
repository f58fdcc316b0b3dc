import { sql } from 'kysely';
import type { Db } from './db.js';

/**
 * Integrity checks after a load (tests, `npm run import -- --check`): what is stored, and
 * which references do not resolve. Set-based SQL, one statement each.
 */

/** Current (not deleted) resources per type. */
export async function countByType(db: Db): Promise<Map<string, number>> {
  const r = await sql<{ resource_type: string; n: string | number }>`
    SELECT resource_type, count(*) AS n FROM resource WHERE NOT deleted GROUP BY resource_type`.execute(db);
  return new Map(r.rows.map((row) => [row.resource_type, Number(row.n)]));
}

/** Versions in the history, all resources together: with `countByType`, shows whether anything was written twice. */
export async function countVersions(db: Db): Promise<number> {
  const r = await sql<{ n: string | number }>`SELECT count(*) AS n FROM resource_history`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}

export interface DanglingReference {
  /** the resource holding the reference, as Type/id */
  source: string;
  reference: string;
}

/**
 * Relative references (`Type/id`) in search index rows whose target is not a current
 * resource. Fast (index-backed anti-join) but sees only references that a search parameter
 * indexes.
 */
export async function danglingIndexedReferences(db: Db, limit = 100): Promise<DanglingReference[]> {
  const r = await sql<{ resource_type: string; resource_id: string; target_type: string; target_id: string }>`
    SELECT f.resource_type, f.resource_id, f.target_type, f.target_id
    FROM search_reference f
    JOIN resource s ON s.resource_type = f.resource_type AND s.id = f.resource_id AND NOT s.deleted
    WHERE f.target_id IS NOT NULL AND f.target_type IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM resource t WHERE t.resource_type = f.target_type AND t.id = f.target_id AND NOT t.deleted)
    LIMIT ${limit}`.execute(db);
  return r.rows.map((row) => ({ source: `${row.resource_type}/${row.resource_id}`, reference: `${row.target_type}/${row.target_id}` }));
}

/**
 * Every `reference` string anywhere in every current resource (contained resources and
 * extensions included) that does not resolve: `Type/id` without a current target, and
 * anything a load should have rewritten (`urn:uuid:…`, conditional `Type?query`). References
 * to contained resources (`#id`) and absolute URLs of other servers are not checked.
 * `serverBase` (e.g. http://localhost:8080/fhir) makes absolute references to this server
 * checked like relative ones.
 */
export async function danglingReferences(db: Db, opts: { limit?: number; serverBase?: string } = {}): Promise<DanglingReference[]> {
  const base = opts.serverBase ? `${opts.serverBase.replace(/\/+$/, '')}/` : '';
  const r = await sql<{ resource_type: string; id: string; reference: string }>`
    WITH refs AS (
      SELECT DISTINCT r.resource_type, r.id, ref #>> '{}' AS reference
      FROM resource r, jsonb_path_query(r.content, 'strict $.**.reference', '{}', true) AS ref
      WHERE NOT r.deleted AND jsonb_typeof(ref) = 'string'
    ), local AS (
      SELECT resource_type, id, reference,
        CASE WHEN ${base} <> '' AND starts_with(reference, ${base}) THEN substr(reference, length(${base}) + 1) ELSE reference END AS rel
      FROM refs
    )
    SELECT resource_type, id, reference FROM local l
    WHERE NOT starts_with(rel, '#')
      AND (
        starts_with(rel, 'urn:')
        OR rel ~ '^[A-Z][A-Za-z]+\\?'
        OR (rel ~ '^[A-Z][A-Za-z]+/[A-Za-z0-9.-]{1,64}(/_history/[A-Za-z0-9.-]+)?$' AND NOT EXISTS (
          SELECT 1 FROM resource t
          WHERE t.resource_type = split_part(l.rel, '/', 1) AND t.id = split_part(l.rel, '/', 2) AND NOT t.deleted))
      )
    ORDER BY resource_type, id, reference
    LIMIT ${opts.limit ?? 100}`.execute(db);
  return r.rows.map((row) => ({ source: `${row.resource_type}/${row.id}`, reference: row.reference }));
}
