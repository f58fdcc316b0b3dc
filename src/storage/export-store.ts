import { sql, type RawBuilder } from 'kysely';
import type { Db } from './db.js';

/**
 * Which resources of a type belong to an export: all of them (system level), or those in the
 * compartment of some owners (Patient / Group level). `params` are the compartment
 * definition's reference search parameters of the scanned type; `ownerIds` undefined means
 * "of any owner" (Patient-level export of all patients).
 */
export type Membership =
  | { kind: 'all' }
  | { kind: 'compartment'; ownerType: string; params: readonly string[]; ownerIds?: readonly string[]; isOwnerType: boolean };

export interface ExportRow {
  id: string;
  /** content as stored (jsonb text: one line, no raw newlines). */
  json: string;
}

export interface ScannedRow {
  id: string;
  /** content as of `until`, or null when the row changed after it */
  json: string | null;
  changed: boolean;
}

export interface ScanChunk {
  resourceType: string;
  /** keyset: ids strictly after this one ('' = from the start). */
  after: string;
  limit: number;
  /** the export's transactionTime: later versions are replaced by the one current then */
  until: string;
  /** _since: only versions changed strictly after this instant. */
  since?: string;
  membership: Membership;
}

/** One file of an export, as listed in the manifest. */
export interface OutputFile {
  fileNo: number;
  kind: 'output' | 'error';
  resourceType: string;
  count: number;
}

/**
 * Reference-index semi-join: the row refers to an owner through one of the compartment's
 * params (Patient/123/Observation style, via `search_reference`, the same rows search uses).
 */
export function membershipCondition(m: Membership, alias = 'r'): RawBuilder<unknown> {
  if (m.kind === 'all') return sql`TRUE`;
  const r = sql.raw(alias);
  const alts: RawBuilder<unknown>[] = [];
  if (m.params.length > 0) {
    const owners = m.ownerIds ? sql`AND cm.target_id = ANY(${[...m.ownerIds]}::text[])` : sql``;
    alts.push(sql`EXISTS (SELECT 1 FROM search_reference cm
      WHERE cm.resource_type = ${r}.resource_type AND cm.resource_id = ${r}.id
        AND cm.param = ANY(${[...m.params]}::text[]) AND cm.target_type = ${m.ownerType} ${owners})`);
  }
  if (m.isOwnerType) alts.push(m.ownerIds ? sql`${r}.id = ANY(${[...m.ownerIds]}::text[])` : sql`TRUE`);
  if (alts.length === 0) return sql`FALSE`;
  return sql`(${sql.join(alts, sql` OR `)})`;
}

/**
 * Runs one keyset page with sorting disabled, so the plan walks the (resource_type, id) index
 * in order and stops after LIMIT rows. Right after a bulk load the statistics are stale and the
 * planner otherwise picks a bitmap scan of the whole rest of the type plus a top-N sort: every
 * page then costs as much as the remaining type, and a big export turns quadratic (measured:
 * 130 ms instead of ~5 ms per page of Observation at 32k rows).
 */
export async function keysetPage<R>(db: Db, page: RawBuilder<R>): Promise<R[]> {
  return db.transaction().execute(async (trx) => {
    await sql`SET LOCAL enable_sort = off`.execute(trx);
    return (await page.execute(trx)).rows;
  });
}

/**
 * SQL of bulk export reads: keyset-paged reads of current resources (one page in memory at a
 * time) and the versions as of the export's transactionTime for rows changed while it ran.
 * (The files it writes: export-files.ts.)
 */
export class ExportStore {
  constructor(private readonly db: Db) {}

  /**
   * The types among `types` that have rows at all, by a loose index scan of the primary key
   * (one index probe per present type), so a system export skips the ~140 empty types.
   */
  async presentTypes(types: readonly string[]): Promise<string[]> {
    const r = await sql<{ resource_type: string }>`
      WITH RECURSIVE t AS (
        (SELECT resource_type FROM resource ORDER BY resource_type LIMIT 1)
        UNION ALL
        SELECT (SELECT r.resource_type FROM resource r WHERE r.resource_type > t.resource_type ORDER BY r.resource_type LIMIT 1)
        FROM t WHERE t.resource_type IS NOT NULL)
      SELECT resource_type FROM t WHERE resource_type IS NOT NULL`.execute(this.db);
    const present = new Set(r.rows.map((x) => x.resource_type));
    return types.filter((t) => present.has(t));
  }

  /**
   * One keyset page of the type as of `until`: rows last changed by then come with their
   * content; rows changed later (`changed`, content null) need their version as of `until`
   * from `versionsAsOf`. One pass over ids, so a row updated while the export runs is still
   * visited exactly once.
   */
  async scan(q: ScanChunk): Promise<ScannedRow[]> {
    const since = q.since ? sql`AND r.last_updated > ${q.since}::timestamptz` : sql``;
    const page = sql<ScannedRow>`
      SELECT r.id, r.last_updated > ${q.until}::timestamptz AS changed,
        CASE WHEN r.last_updated <= ${q.until}::timestamptz THEN r.content::text END AS json
      FROM resource r
      WHERE r.resource_type = ${q.resourceType} AND r.id > ${q.after}
        AND (r.deleted = false OR r.last_updated > ${q.until}::timestamptz) ${since}
        AND ${membershipCondition(q.membership)}
      ORDER BY r.id LIMIT ${q.limit}`;
    return keysetPage(this.db, page);
  }

  /** For each id, the version current at `until` if it existed then, was not deleted and changed after `since`. */
  async versionsAsOf(resourceType: string, ids: string[], until: string, since?: string): Promise<ExportRow[]> {
    if (ids.length === 0) return [];
    const r = await sql<ExportRow & { deleted: boolean; last_updated: Date | string }>`
      SELECT DISTINCT ON (h.id) h.id, h.deleted, h.last_updated, h.content::text AS json
      FROM resource_history h
      WHERE h.resource_type = ${resourceType} AND h.id = ANY(${ids}::text[]) AND h.last_updated <= ${until}::timestamptz
      ORDER BY h.id, h.version_id DESC`.execute(this.db);
    const sinceMs = since ? Date.parse(since) : undefined;
    return r.rows
      .filter((row) => !row.deleted && row.json !== null && (sinceMs === undefined || new Date(row.last_updated).getTime() > sinceMs))
      .map((row) => ({ id: row.id, json: row.json }));
  }
}
