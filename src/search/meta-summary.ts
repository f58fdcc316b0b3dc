import type { Coding, Meta } from 'fhir/r4.js';
import { sql, type Kysely } from 'kysely';
import { TOKEN, URI } from './index-tables.js';

/**
 * Most distinct codings (or profiles) one list of a `$meta` summary carries. Tags are a small
 * vocabulary in practice; the cap keeps a store where a client wrote a tag per resource from
 * answering a list as long as the store.
 */
export const META_SUMMARY_LIMIT = 10_000;

/**
 * System- and type-level `$meta` (Resource-meta): the profiles, tags and security labels in use
 * on the current versions of `types`, read from the search index (`_tag` and `_security` rows of
 * search_token, `_profile` rows of search_uri: rows exist for current, not deleted versions only).
 *
 * Each list is a skip scan: per type, the next distinct value after the last one found is one
 * index probe (search_uri_value; for codings the partial index search_token_meta, migration
 * 0041), so the cost follows the number of distinct values, not of tagged resources (Synthea
 * puts a profile on every resource). At most META_SUMMARY_LIMIT values per type and list.
 * Codings carry system and code: the index keeps no display as written.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the search layer's handle (index tables are not in the typed schema)
export async function metaSummary(db: Kysely<any>, types: readonly string[]): Promise<Meta> {
  if (types.length === 0) return {};
  const typeList = [...types];
  const limit = META_SUMMARY_LIMIT;
  // The literal `param IN (…)` lets the planner use the partial index (a parameter alone would not prove its predicate).
  const codings = await sql<{ param: string; s: string; c: string }>`
    WITH RECURSIVE k(type, param) AS (
      SELECT ty, pa FROM unnest(${typeList}::text[]) ty CROSS JOIN (VALUES ('_tag'), ('_security')) p(pa)
    ), walk(type, param, s, c, depth) AS (
      SELECT k.type, k.param, n.s, n.c, 1 FROM k CROSS JOIN LATERAL (
        SELECT coalesce(system, '') AS s, coalesce(code, '') AS c FROM ${sql.table(TOKEN)}
        WHERE resource_type = k.type AND param = k.param AND param IN ('_tag', '_security')
        ORDER BY 1, 2 LIMIT 1) n
      UNION ALL
      SELECT w.type, w.param, n.s, n.c, w.depth + 1 FROM walk w CROSS JOIN LATERAL (
        SELECT coalesce(system, '') AS s, coalesce(code, '') AS c FROM ${sql.table(TOKEN)}
        WHERE resource_type = w.type AND param = w.param AND param IN ('_tag', '_security')
          AND (coalesce(system, ''), coalesce(code, '')) > (w.s, w.c)
        ORDER BY 1, 2 LIMIT 1) n
      WHERE w.depth < ${limit}
    )
    SELECT DISTINCT param, s, c FROM walk ORDER BY param, s, c LIMIT ${2 * limit}`.execute(db);
  const profiles = await sql<{ value: string }>`
    WITH RECURSIVE walk(type, value, depth) AS (
      SELECT ty, n.value, 1 FROM unnest(${typeList}::text[]) ty CROSS JOIN LATERAL (
        SELECT value FROM ${sql.table(URI)} WHERE resource_type = ty AND param = '_profile' ORDER BY value LIMIT 1) n
      UNION ALL
      SELECT w.type, n.value, w.depth + 1 FROM walk w CROSS JOIN LATERAL (
        SELECT value FROM ${sql.table(URI)} WHERE resource_type = w.type AND param = '_profile' AND value > w.value ORDER BY value LIMIT 1) n
      WHERE w.depth < ${limit}
    )
    SELECT DISTINCT value FROM walk ORDER BY value LIMIT ${limit}`.execute(db);
  const coding = (row: { s: string; c: string }): Coding => ({ ...(row.s ? { system: row.s } : {}), ...(row.c ? { code: row.c } : {}) });
  const meta: Meta = {};
  const tags = codings.rows.filter((r) => r.param === '_tag').map(coding);
  const security = codings.rows.filter((r) => r.param === '_security').map(coding);
  if (profiles.rows.length > 0) meta.profile = profiles.rows.map((r) => r.value);
  if (security.length > 0) meta.security = security.slice(0, limit);
  if (tags.length > 0) meta.tag = tags.slice(0, limit);
  return meta;
}
