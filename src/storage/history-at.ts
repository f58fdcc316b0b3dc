import { sql, type RawBuilder } from 'kysely';
import type { Db } from './db.js';
import type { StoredVersion, WriteMethod } from './types.js';

/**
 * History restricted to the versions that were current at some point of a period (`_at`,
 * R4 http.html#history). A version is current from its own lastUpdated until the next version
 * of the same resource is written, so it overlaps [start, end) when it was written before `end`
 * and no later version of that resource was written at or before `start`. The second condition
 * is a probe of the primary key (resource_type, id, version_id) per candidate row.
 *
 * Kept apart from ResourceStore's plain history read; same row order and keyset paging.
 */
export interface HistoryAtQuery {
  resourceType?: string;
  id?: string;
  /** Only versions with lastUpdated ≥ since (ISO instant), as `_since`. */
  since?: string;
  /** The period, half open; either side may be open. */
  start?: string;
  end?: string;
  /**
   * Rows the caller may see, on alias `h` (built by `src/search/sql/history-access.ts`): SMART
   * scope filtering of type and system history.
   */
  access?: RawBuilder<unknown>;
}

export interface HistoryAtCursor {
  lastUpdated: string;
  resourceType: string;
  id: string;
  versionId: string;
}

interface Row {
  resource_type: string;
  id: string;
  version_id: string;
  last_updated: Date | string;
  deleted: boolean;
  method: string | null;
  json: string | null;
}

function conditions(q: HistoryAtQuery): RawBuilder<unknown> {
  const where: RawBuilder<unknown>[] = [sql`true`];
  if (q.resourceType) where.push(sql`h.resource_type = ${q.resourceType}`);
  if (q.id) where.push(sql`h.id = ${q.id}`);
  if (q.since) where.push(sql`h.last_updated >= ${q.since}::timestamptz`);
  if (q.end) where.push(sql`h.last_updated < ${q.end}::timestamptz`);
  if (q.access) where.push(q.access);
  if (q.start) {
    where.push(sql`NOT EXISTS (
      SELECT 1 FROM resource_history n
      WHERE n.resource_type = h.resource_type AND n.id = h.id AND n.version_id > h.version_id
        AND n.last_updated <= ${q.start}::timestamptz)`);
  }
  return sql.join(where, sql` AND `);
}

/** Versions newest first, after `after` (keyset), at most `count`. */
export async function readHistoryAt(db: Db, q: HistoryAtQuery, count: number, after?: HistoryAtCursor): Promise<StoredVersion[]> {
  const keyset = after
    ? sql`(h.last_updated, h.resource_type, h.id, h.version_id) < (${after.lastUpdated}::timestamptz, ${after.resourceType}, ${after.id}, ${after.versionId}::bigint)`
    : sql`true`;
  const result = await sql<Row>`
    SELECT h.resource_type, h.id, h.version_id::text AS version_id, h.last_updated, h.deleted, h.method, h.content::text AS json
    FROM resource_history h
    WHERE ${conditions(q)} AND ${keyset}
    ORDER BY h.last_updated DESC, h.resource_type DESC, h.id DESC, h.version_id DESC
    LIMIT ${count}`.execute(db);
  return result.rows.map((row) => {
    const version: StoredVersion = {
      resourceType: row.resource_type,
      id: row.id,
      versionId: row.version_id,
      lastUpdated: new Date(row.last_updated).toISOString(),
      deleted: row.deleted,
      json: row.json,
    };
    if (row.method) version.method = row.method as WriteMethod;
    return version;
  });
}

export async function countHistoryAt(db: Db, q: HistoryAtQuery): Promise<number> {
  const result = await sql<{ n: string | number }>`SELECT count(*) AS n FROM resource_history h WHERE ${conditions(q)}`.execute(db);
  return Number(result.rows[0]?.n ?? 0);
}
