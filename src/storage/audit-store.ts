import { CompiledQuery, sql, type RawBuilder } from 'kysely';
import { dateCond } from '../search/sql/date.js';
import { and, col, or, type Cond } from '../search/sql/util.js';
import type { DateValue } from '../search/request.js';
import type { Db } from './db.js';

/** Keeps one statement's JSON parameter modest (events are ~1–2 KB each). */
export const MAX_EVENTS_PER_STATEMENT = 1000;

/** An AuditEvent search as plain data (built by src/audit/audit-search.ts). */
export interface AuditQuery {
  /** Each inner list is ORed (any of the keys), the lists are ANDed. */
  keys: string[][];
  /** The event has none of the keys of each list (`:not`). */
  notKeys: string[][];
  /** `date` (AuditEvent.recorded): each inner list ORed, lists ANDed. */
  recorded: DateValue[][];
  /** `_lastUpdated`, likewise. */
  lastUpdated: DateValue[][];
  /** `_id`: each list ORed. */
  ids: string[][];
  notIds: string[][];
  /** No event can match (e.g. a confined caller without a patient). */
  none?: boolean;
}

/** An archived event: its id, `recorded` (microseconds, the archival's keyset) and stored JSON. */
export interface ArchiveRow {
  id: string;
  recorded: string;
  json: string;
}

export type AuditOrder = 'id' | 'recorded' | 'last_updated';

export interface AuditPage {
  order: AuditOrder;
  desc: boolean;
  /** Keyset: rows after (sort value, id) in the order. */
  after?: { value: string; id: string };
  limit: number;
}

export interface AuditRow {
  id: string;
  json: string;
  /** The sort value as text (for the next cursor). */
  k: string;
}

const ORDER_COLUMN: Record<AuditOrder, string> = { id: 'id', recorded: 'recorded', last_updated: 'last_updated' };

/** An instant as UTC text with microseconds: a keyset value that finds neither the same row again nor skips one. */
const utcMicros = (instant: RawBuilder<unknown>) => sql`to_char(${instant} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/**
 * One AuditEvent ready to be appended, already in the form the INSERT embeds (built off the
 * request path by src/audit/audit-render.ts, so a batch is joined, never serialized again).
 */
export interface AuditInsert {
  id: string;
  /** AuditEvent.recorded (ISO instant). */
  recorded: string;
  /** The search keys (src/audit/audit-keys.ts) as a JSON array of strings. */
  keys: string;
  /**
   * The event's JSON with its `id` but without `meta` and without the closing brace: `meta`
   * (version 1, lastUpdated = the write's time) is appended by the write that stores it.
   */
  head: string;
}

/**
 * The audit trail's storage: an append-only table of its own (migration 0014), inherited by
 * `resource` and `resource_history` so every reader of those sees AuditEvents. AuditEvents are
 * built by the server, never sent by a client, so they skip what the general write path does
 * for untrusted input: no validation per event (a test validates samples against the base
 * specification), no read of a current version (ids are fresh), no upsert, no history row, no
 * generic index rows, no before-write hooks. A batch is ONE multi-row INSERT.
 */
export class AuditStore {
  constructor(private readonly db: Db) {}

  /** Appends the events, each stamped `meta` {versionId 1, lastUpdated now}; one statement per MAX_EVENTS_PER_STATEMENT. */
  async append(rows: readonly AuditInsert[]): Promise<void> {
    for (let start = 0; start < rows.length; start += MAX_EVENTS_PER_STATEMENT) {
      await this.writeChunk(rows.length <= MAX_EVENTS_PER_STATEMENT ? rows : rows.slice(start, start + MAX_EVENTS_PER_STATEMENT));
    }
  }

  private async writeChunk(rows: readonly AuditInsert[]): Promise<void> {
    if (rows.length === 0) return;
    const lastUpdated = new Date().toISOString();
    const meta = `,"meta":{"versionId":"1","lastUpdated":"${lastUpdated}"}}`;
    // Two parameters: the small columns as one JSON array, and the events' JSON texts joined
    // by U+001E, which no JSON text holds unescaped. Each event is then parsed into jsonb once,
    // by itself: embedded in the JSON array it was parsed twice (the array, then each element
    // taken out of it), ~30 µs of database CPU more per event.
    let columns = '[';
    let contents = '';
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      columns += `${i ? ',' : ''}{"i":${JSON.stringify(row.id)},"r":${JSON.stringify(row.recorded)},"k":${row.keys}}`;
      contents += `${i ? '\x1e' : ''}${row.head}${meta}`;
    }
    columns += ']';
    // ROWS FROM pairs the two lists row by row; a list one longer than the other leaves an id
    // NULL, which the table refuses (the batch is then split until the culprit is found).
    await this.db.executeQuery(
      CompiledQuery.raw(
        `INSERT INTO audit_event (resource_type, id, version_id, last_updated, deleted, content, method, recorded, search_keys)
        SELECT 'AuditEvent', x.i, 1, $3::timestamptz, false, x.c::jsonb, 'POST', x.r, x.k
        FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (i text, r timestamptz, k text[]), unnest(string_to_array($2, E'\\x1e'))) AS x(i, r, k, c)`,
        [columns, contents, lastUpdated],
      ),
    );
  }

  /** One page of matches, in the page's order. */
  async search(q: AuditQuery, page: AuditPage): Promise<AuditRow[]> {
    const column = col('a', ORDER_COLUMN[page.order]);
    const dir = sql.raw(page.desc ? 'DESC' : 'ASC');
    const conds = [this.where(q)];
    if (page.after) {
      const op = sql.raw(page.desc ? '<' : '>');
      const value = page.order === 'id' ? sql`${page.after.value}` : sql`${page.after.value}::timestamptz`;
      conds.push(page.order === 'id' ? sql`a.id ${op} ${value}` : sql`(${column}, a.id) ${op} (${value}, ${page.after.id})`);
    }
    // resource_type is fixed so the (resource_type, id) index gives the id order.
    const order = page.order === 'id' ? sql`a.resource_type ${dir}, a.id ${dir}` : sql`${column} ${dir}, a.id ${dir}`;
    const result = await sql<AuditRow>`SELECT a.id, a.content::text AS json, ${page.order === 'id' ? sql`a.id` : utcMicros(column)} AS k
      FROM audit_event a WHERE ${and(conds)} ORDER BY ${order} LIMIT ${page.limit}`.execute(this.db);
    return result.rows;
  }

  async count(q: AuditQuery): Promise<number> {
    const result = await sql<{ n: string | number }>`SELECT count(*) AS n FROM audit_event a WHERE ${this.where(q)}`.execute(this.db);
    return Number(result.rows[0]?.n ?? 0);
  }

  /** EXPLAIN of a page (plan checks and the report). */
  async explain(q: AuditQuery, page: AuditPage): Promise<string> {
    const column = col('a', ORDER_COLUMN[page.order]);
    const dir = sql.raw(page.desc ? 'DESC' : 'ASC');
    const order = page.order === 'id' ? sql`a.resource_type ${dir}, a.id ${dir}` : sql`${column} ${dir}, a.id ${dir}`;
    const result = await sql<Record<string, string>>`EXPLAIN (ANALYZE, COSTS OFF) SELECT a.id, a.content::text FROM audit_event a WHERE ${this.where(q)} ORDER BY ${order} LIMIT ${page.limit}`.execute(this.db);
    return result.rows.map((r) => Object.values(r)[0]).join('\n');
  }

  /** AuditEvents having any of `keys` (reverse includes), as JSON, at most `limit`. */
  async withAnyKey(keys: readonly string[], limit: number): Promise<string[]> {
    if (keys.length === 0) return [];
    const result = await sql<{ json: string }>`SELECT a.content::text AS json FROM audit_event a
      WHERE a.resource_type = 'AuditEvent' AND a.search_keys && ${[...keys]}::text[] ORDER BY a.resource_type, a.id LIMIT ${limit}`.execute(this.db);
    return result.rows.map((r) => r.json);
  }

  /**
   * Archival (src/audit/audit-archive.ts): a page of the events recorded before `before`, oldest
   * first, after the keyset `after` (`recorded` as text with microseconds, and id), through the
   * (recorded, id) index.
   */
  async archivePage(before: string, after: { recorded: string; id: string } | undefined, limit: number): Promise<ArchiveRow[]> {
    const result = await sql<ArchiveRow>`SELECT a.id, ${utcMicros(sql`a.recorded`)} AS recorded, a.content::text AS json
      FROM audit_event a WHERE a.recorded < ${before}::timestamptz
        ${after ? sql`AND (a.recorded, a.id) > (${after.recorded}::timestamptz, ${after.id})` : sql``}
      ORDER BY a.recorded, a.id LIMIT ${limit}`.execute(this.db);
    return result.rows;
  }

  /** How many events were recorded before `before` (what an archival would take now). */
  async countRecordedBefore(before: string): Promise<number> {
    const result = await sql<{ n: string | number }>`SELECT count(*) AS n FROM audit_event WHERE recorded < ${before}::timestamptz`.execute(this.db);
    return Number(result.rows[0]?.n ?? 0);
  }

  /**
   * Deletes archived events by id, in one transaction, the only DELETE the append-only trigger
   * lets through (migration 0040: `fhir.audit_archive` set for this transaction alone). Called
   * only once their archive file is on disk. Returns how many were deleted.
   */
  async removeArchived(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return this.db.transaction().execute(async (tx) => {
      await sql`SET LOCAL fhir.audit_archive = 'on'`.execute(tx);
      let deleted = 0;
      for (let start = 0; start < ids.length; start += MAX_EVENTS_PER_STATEMENT) {
        const chunk = ids.slice(start, start + MAX_EVENTS_PER_STATEMENT);
        const result = await sql`DELETE FROM audit_event WHERE resource_type = 'AuditEvent' AND id = ANY(${chunk}::text[])`.execute(tx);
        deleted += Number(result.numAffectedRows ?? 0);
      }
      return deleted;
    });
  }

  /** After an archival: the deleted rows' space back, and fresh statistics (nobody else may run VACUUM on the embedded database). */
  async vacuum(): Promise<void> {
    await sql`VACUUM (ANALYZE) audit_event`.execute(this.db);
  }

  private where(q: AuditQuery): Cond {
    if (q.none) return sql`FALSE`;
    const conds: Cond[] = [sql`a.resource_type = 'AuditEvent'`];
    // `&&` (overlap) and NOT `&&` on the GIN-indexed keys; several lists → several overlaps.
    for (const keys of q.keys) conds.push(sql`a.search_keys && ${keys}::text[]`);
    for (const keys of q.notKeys) conds.push(sql`NOT (a.search_keys && ${keys}::text[])`);
    const now = Date.now();
    for (const values of q.recorded) conds.push(or(values.map((v) => dateCond('a', 'recorded', 'recorded', v, now))));
    for (const values of q.lastUpdated) conds.push(or(values.map((v) => dateCond('a', 'last_updated', 'last_updated', v, now))));
    for (const ids of q.ids) conds.push(sql`a.id = ANY(${ids}::text[])`);
    for (const ids of q.notIds) conds.push(sql`NOT (a.id = ANY(${ids}::text[]))`);
    return and(conds);
  }
}
