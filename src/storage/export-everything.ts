import { sql, type RawBuilder } from 'kysely';
import type { Db } from './db.js';

export interface EverythingQuery {
  ownerType: string;
  ownerId: string;
  /** (member type, reference param) pairs of the compartment definition */
  pairs: ReadonlyArray<readonly [string, string]>;
  /** _type */
  types?: readonly string[];
  /** _since (exclusive) */
  since?: string;
  /**
   * Only the owner and its compartment members, not what they refer to: for callers confined to
   * a patient compartment (SMART `patient/` scopes), whose referenced resources may be outside it.
   */
  membersOnly?: boolean;
  /**
   * What the caller may see, as a condition on the `resource` row `r` (SMART scopes: types,
   * patient compartment, granular filters, hidden types; built by the search side).
   */
  access?: RawBuilder<unknown>;
}

export interface EverythingRow {
  resourceType: string;
  id: string;
  json: string;
  /** in the compartment (or the owner itself) rather than only referenced from it */
  member: boolean;
}

export interface EverythingCursor {
  resourceType: string;
  id: string;
}

/**
 * `$everything` as one statement: the owner, the members of its compartment (reverse
 * references through the compartment's params, from `search_reference`), and whatever those
 * refer to, one level (Practitioner, Organization, Location, Medication, …, also through the
 * reference index). Deduplicated and ordered by (type, id) so pages are keyset pages: no
 * duplicates or gaps between pages even while the record changes.
 */
function everythingSql(q: EverythingQuery) {
  const memberTypes = q.pairs.map((p) => p[0]);
  const memberParams = q.pairs.map((p) => p[1]);
  const types = q.types ? sql`AND r.resource_type = ANY(${[...q.types]}::text[])` : sql``;
  const since = q.since ? sql`AND r.last_updated > ${q.since}::timestamptz` : sql``;
  const referenced = q.membersOnly ? sql`AND false` : sql``;
  const keyed = sql`
    WITH members AS (
      SELECT ${q.ownerType}::text AS resource_type, ${q.ownerId}::text AS id
      UNION
      SELECT cm.resource_type, cm.resource_id
      FROM search_reference cm
      JOIN unnest(${memberTypes}::text[], ${memberParams}::text[]) AS p(t, param) ON cm.resource_type = p.t AND cm.param = p.param
      WHERE cm.target_type = ${q.ownerType} AND cm.target_id = ${q.ownerId}
    ),
    reached AS (
      SELECT resource_type, id, true AS member FROM members
      UNION ALL
      SELECT f.target_type, f.target_id, false FROM search_reference f
      JOIN members m ON f.resource_type = m.resource_type AND f.resource_id = m.id
      WHERE f.target_type IS NOT NULL AND f.target_id IS NOT NULL ${referenced}
    ),
    keyed AS (SELECT resource_type, id, bool_or(member) AS member FROM reached GROUP BY resource_type, id)`;
  const access = q.access ? sql`AND ${q.access}` : sql``;
  return { keyed, filter: sql`r.deleted = false ${types} ${since} ${access}` };
}

export async function everythingPage(db: Db, q: EverythingQuery, after: EverythingCursor | undefined, limit: number): Promise<EverythingRow[]> {
  const { keyed, filter } = everythingSql(q);
  const keyset = after ? sql`AND (r.resource_type, r.id) > (${after.resourceType}::text, ${after.id}::text)` : sql``;
  const r = await sql<{ resource_type: string; id: string; json: string; member: boolean }>`
    ${keyed}
    SELECT r.resource_type, r.id, r.content::text AS json, k.member
    FROM keyed k JOIN resource r ON r.resource_type = k.resource_type AND r.id = k.id
    WHERE ${filter} ${keyset}
    ORDER BY r.resource_type, r.id
    LIMIT ${limit}`.execute(db);
  return r.rows.map((row) => ({ resourceType: row.resource_type, id: row.id, json: row.json, member: row.member }));
}

export async function everythingCount(db: Db, q: EverythingQuery): Promise<number> {
  const { keyed, filter } = everythingSql(q);
  const r = await sql<{ n: string | number }>`
    ${keyed}
    SELECT count(*) AS n FROM keyed k JOIN resource r ON r.resource_type = k.resource_type AND r.id = k.id
    WHERE ${filter}`.execute(db);
  return Number(r.rows[0]?.n ?? 0);
}
