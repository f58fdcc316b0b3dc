import { CompiledQuery, sql } from 'kysely';
import { PREPARED, type Db } from './db.js';
import { newResourceId } from './resource-store.js';

/** The SQL of the HL7 v2 raw message store (table hl7_message, migrations/0009-hl7v2.ts). */

export type Hl7MessageStatus = 'received' | 'processed' | 'error' | 'rejected';

export interface Hl7MessageRecord {
  id: string;
  receivedAt: string;
  transport: string;
  sendingApplication: string;
  sendingFacility: string;
  controlId: string;
  messageType: string;
  version: string;
  raw: string;
  status: Hl7MessageStatus;
  error?: string;
  ack?: string;
  resources: string[];
  attempts: number;
  processedAt?: string;
}

export interface NewHl7Message {
  transport: string;
  sendingApplication: string;
  sendingFacility: string;
  controlId: string;
  messageType: string;
  version: string;
  contentHash: string;
  raw: string;
}

interface Row {
  id: string;
  received_at: Date | string;
  transport: string;
  sending_application: string;
  sending_facility: string;
  control_id: string;
  message_type: string;
  version: string;
  raw: string;
  status: Hl7MessageStatus;
  error: string | null;
  ack: string | null;
  resources: string[] | string;
  attempts: number;
  processed_at: Date | string | null;
}

/** `insertMany`'s statement: rows as column arrays, retransmissions (the unique key) left out. */
const INSERT_RECEIVED_SQL = `INSERT INTO hl7_message (id, transport, sending_application, sending_facility, control_id, message_type, version, content_hash, raw, status)
  SELECT id, transport, app, facility, control, type, version, hash, raw, 'received'
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
    AS m(id, transport, app, facility, control, type, version, hash, raw)
  ON CONFLICT (sending_application, sending_facility, control_id, content_hash) DO NOTHING
  RETURNING id, received_at${PREPARED}`;

const iso = (v: Date | string) => (v instanceof Date ? v : new Date(v)).toISOString();

function toRecord(row: Row): Hl7MessageRecord {
  const record: Hl7MessageRecord = {
    id: row.id,
    receivedAt: iso(row.received_at),
    transport: row.transport,
    sendingApplication: row.sending_application,
    sendingFacility: row.sending_facility,
    controlId: row.control_id,
    messageType: row.message_type,
    version: row.version,
    raw: row.raw,
    status: row.status,
    resources: typeof row.resources === 'string' ? (JSON.parse(row.resources) as string[]) : row.resources,
    attempts: Number(row.attempts),
  };
  if (row.error !== null) record.error = row.error;
  if (row.ack !== null) record.ack = row.ack;
  if (row.processed_at !== null) record.processedAt = iso(row.processed_at);
  return record;
}

export class Hl7MessageStore {
  constructor(private readonly db: Db) {}

  /**
   * Stores a received message (status 'received'), unless it is a retransmission of one
   * already stored: then that one is returned with `duplicate` set.
   */
  async insert(message: NewHl7Message): Promise<{ record: Hl7MessageRecord; duplicate: boolean }> {
    const id = newResourceId();
    const inserted = await sql<Row>`
      INSERT INTO hl7_message (id, transport, sending_application, sending_facility, control_id, message_type, version, content_hash, raw, status)
      VALUES (${id}, ${message.transport}, ${message.sendingApplication}, ${message.sendingFacility}, ${message.controlId},
              ${message.messageType}, ${message.version}, ${message.contentHash}, ${message.raw}, 'received')
      ON CONFLICT (sending_application, sending_facility, control_id, content_hash) DO NOTHING
      RETURNING *`.execute(this.db);
    if (inserted.rows[0]) return { record: toRecord(inserted.rows[0]), duplicate: false };
    const existing = await sql<Row>`
      SELECT * FROM hl7_message
      WHERE sending_application = ${message.sendingApplication} AND sending_facility = ${message.sendingFacility}
        AND control_id = ${message.controlId} AND content_hash = ${message.contentHash}`.execute(this.db);
    const row = existing.rows[0];
    if (!row) throw new Error('hl7_message: conflicting row vanished');
    return { record: toRecord(row), duplicate: true };
  }

  /**
   * `insert` of several messages in ONE statement (one commit, one WAL flush for all: the
   * group commit of concurrent receipts). Answers in the order given; a message that repeats
   * one already stored, or one earlier in the same call, comes back as that row with
   * `duplicate` set.
   */
  async insertMany(messages: readonly NewHl7Message[]): Promise<Array<{ record: Hl7MessageRecord; duplicate: boolean }>> {
    if (messages.length === 0) return [];
    const ids = messages.map(() => newResourceId());
    const column = (pick: (m: NewHl7Message) => string) => messages.map(pick);
    // One fixed text (a named prepared statement), the columns as arrays: nothing to build or
    // plan per receipt. Only the ids and times come back: the caller has the rest.
    const inserted = await this.db.executeQuery<{ id: string; received_at: Date | string }>(
      CompiledQuery.raw(INSERT_RECEIVED_SQL, [
        ids,
        column((m) => m.transport),
        column((m) => m.sendingApplication),
        column((m) => m.sendingFacility),
        column((m) => m.controlId),
        column((m) => m.messageType),
        column((m) => m.version),
        column((m) => m.contentHash),
        column((m) => m.raw),
      ]),
    );
    const receivedAt = new Map(inserted.rows.map((r) => [r.id, r.received_at]));
    const byId = new Map<string, Hl7MessageRecord>();
    messages.forEach((m, i) => {
      const at = receivedAt.get(ids[i]);
      if (at === undefined) return;
      byId.set(ids[i], {
        id: ids[i],
        receivedAt: iso(at),
        transport: m.transport,
        sendingApplication: m.sendingApplication,
        sendingFacility: m.sendingFacility,
        controlId: m.controlId,
        messageType: m.messageType,
        version: m.version,
        raw: m.raw,
        status: 'received',
        resources: [],
        attempts: 0,
      });
    });
    const missing = messages.filter((_, i) => !byId.has(ids[i]));
    const existing = new Map<string, Hl7MessageRecord>();
    const keys = (m: { sendingApplication: string; sendingFacility: string; controlId: string; contentHash: string }) =>
      JSON.stringify([m.sendingApplication, m.sendingFacility, m.controlId, m.contentHash]);
    if (missing.length) {
      const found = await sql<Row & { content_hash: string }>`
        SELECT h.* FROM hl7_message h
        JOIN unnest(${missing.map((m) => m.sendingApplication)}::text[], ${missing.map((m) => m.sendingFacility)}::text[],
                    ${missing.map((m) => m.controlId)}::text[], ${missing.map((m) => m.contentHash)}::text[]) AS k(a, f, c, h)
          ON h.sending_application = k.a AND h.sending_facility = k.f AND h.control_id = k.c AND h.content_hash = k.h`.execute(this.db);
      for (const row of found.rows) {
        existing.set(keys({ sendingApplication: row.sending_application, sendingFacility: row.sending_facility, controlId: row.control_id, contentHash: row.content_hash }), toRecord(row));
      }
    }
    return messages.map((m, i) => {
      const own = byId.get(ids[i]);
      if (own) return { record: own, duplicate: false };
      const record = existing.get(keys(m));
      if (!record) throw new Error('hl7_message: conflicting row vanished');
      return { record, duplicate: true };
    });
  }

  /** Records the outcome of a message; `executor` is the mapping transaction for 'processed'. */
  async finish(
    id: string,
    outcome: { status: Exclude<Hl7MessageStatus, 'received'>; ack: string; error?: string; resources?: string[] },
    executor: Db = this.db,
  ): Promise<void> {
    await sql`
      UPDATE hl7_message
      SET status = ${outcome.status}, ack = ${outcome.ack}, error = ${outcome.error ?? null},
          resources = ${JSON.stringify(outcome.resources ?? [])}::jsonb, attempts = attempts + 1, processed_at = now()
      WHERE id = ${id}`.execute(executor);
  }

  /** `finish` of several messages mapped in one transaction, in one statement. */
  async finishMany(outcomes: ReadonlyArray<{ id: string; status: Exclude<Hl7MessageStatus, 'received'>; ack: string; resources: string[] }>, executor: Db): Promise<void> {
    if (outcomes.length === 0) return;
    await sql`
      UPDATE hl7_message h
      SET status = o.status, ack = o.ack, error = NULL, resources = o.resources::jsonb, attempts = h.attempts + 1, processed_at = now()
      FROM unnest(${outcomes.map((o) => o.id)}::text[], ${outcomes.map((o) => o.status)}::text[], ${outcomes.map((o) => o.ack)}::text[],
                  ${outcomes.map((o) => JSON.stringify(o.resources))}::text[]) AS o(id, status, ack, resources)
      WHERE h.id = o.id`.execute(executor);
  }

  async get(id: string): Promise<Hl7MessageRecord | undefined> {
    const result = await sql<Row>`SELECT * FROM hl7_message WHERE id = ${id}`.execute(this.db);
    return result.rows[0] ? toRecord(result.rows[0]) : undefined;
  }

  /** Newest first, keyset-paged by (received_at, id). */
  async list(query: { status?: Hl7MessageStatus; count: number; before?: { receivedAt: string; id: string } }): Promise<Hl7MessageRecord[]> {
    const conditions = [sql`true`];
    if (query.status) conditions.push(sql`status = ${query.status}`);
    if (query.before) conditions.push(sql`(received_at, id) < (${query.before.receivedAt}::timestamptz, ${query.before.id})`);
    const result = await sql<Row>`
      SELECT * FROM hl7_message WHERE ${sql.join(conditions, sql` AND `)}
      ORDER BY received_at DESC, id DESC LIMIT ${query.count}`.execute(this.db);
    return result.rows.map(toRecord);
  }

  /**
   * Ids of messages stored but never mapped (a crash between receipt and mapping), oldest first:
   * those received at or before `upTo` (a time the database gave), after the keyset `after`.
   */
  async pendingIds(limit: number, upTo: string, after?: { receivedAt: string; id: string }): Promise<Array<{ id: string; receivedAt: string }>> {
    // The time as PostgreSQL's text (microseconds kept: a keyset at milliseconds would find the same rows again).
    const result = await sql<{ id: string; received_at: string }>`
      SELECT id, received_at::text AS received_at FROM hl7_message
      WHERE status = 'received' AND received_at <= ${upTo}::timestamptz
        ${after ? sql`AND (received_at, id) > (${after.receivedAt}::timestamptz, ${after.id})` : sql``}
      ORDER BY received_at, id LIMIT ${limit}`.execute(this.db);
    return result.rows.map((r) => ({ id: r.id, receivedAt: r.received_at }));
  }

  /** The database's clock (start-up recovery takes the messages received up to it). */
  async now(): Promise<string> {
    const result = await sql<{ now: string }>`SELECT now()::text AS now`.execute(this.db);
    return result.rows[0]!.now;
  }

  /** Several messages by id, in one statement (those not found are left out). */
  async getMany(ids: readonly string[]): Promise<Map<string, Hl7MessageRecord>> {
    if (ids.length === 0) return new Map();
    const result = await sql<Row>`SELECT * FROM hl7_message WHERE id = ANY(${[...ids]}::text[])`.execute(this.db);
    return new Map(result.rows.map((row) => [row.id, toRecord(row)]));
  }

  /**
   * Retention: deletes, `batch` rows per statement, messages received and last handled more
   * than `processedDays` days ago that were processed, and — when `failedDays` > 0 — those
   * older than that which stayed `error` or `rejected`. `received` rows (not mapped yet) are
   * never deleted. A limit of 0 keeps that kind for ever.
   */
  async purge(options: { processedDays: number; failedDays: number; batch?: number }): Promise<{ processed: number; failed: number }> {
    const batch = options.batch ?? 1000;
    const purgeStatus = async (statuses: string[], days: number): Promise<number> => {
      if (days <= 0) return 0;
      let total = 0;
      for (;;) {
        const result = await sql`
          DELETE FROM hl7_message WHERE id IN (
            SELECT id FROM hl7_message
            WHERE status = ANY(${statuses}::text[]) AND received_at < now() - make_interval(days => ${days})
              AND processed_at < now() - make_interval(days => ${days})
            LIMIT ${batch})`.execute(this.db);
        const n = Number(result.numAffectedRows ?? 0);
        total += n;
        if (n < batch) return total;
      }
    };
    return {
      processed: await purgeStatus(['processed'], options.processedDays),
      failed: await purgeStatus(['error', 'rejected'], options.failedDays),
    };
  }

  async countByStatus(): Promise<Record<string, number>> {
    const result = await sql<{ status: string; n: string | number }>`
      SELECT status, count(*) AS n FROM hl7_message GROUP BY status`.execute(this.db);
    return Object.fromEntries(result.rows.map((r) => [r.status, Number(r.n)]));
  }
}
