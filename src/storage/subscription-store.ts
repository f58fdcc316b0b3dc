import { randomUUID } from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import type { Db } from './db.js';

/** The SQL of subscriptions (tables of migrations/0012-subscriptions.ts). */

/** Who wrote a Subscription through the API: what its notifications may carry. */
export interface SubscriptionGrant {
  clientId: string;
  subject: string;
  kind: 'user' | 'client';
  role?: string;
  patient?: string;
  /** the token's scope string */
  scope: string;
}

export interface ActiveSubscriptionRow {
  id: string;
  /** the Subscription JSON */
  json: string;
  grant?: SubscriptionGrant;
  /** ISO instant with microseconds */
  activatedAt?: string;
}

/** One version in resource_history, as the dispatcher reads it. */
export interface HistoryKey {
  resourceType: string;
  id: string;
  versionId: string;
  deleted: boolean;
  /** ISO instant with microseconds (the cursor must not lose precision) */
  lastUpdated: string;
}

export type DeliveryAction = 'create' | 'update' | 'delete';
export type DeliveryStatus = 'pending' | 'delivered' | 'dead-letter' | 'cancelled';

export interface NewDelivery {
  subscriptionId: string;
  resourceType: string;
  resourceId: string;
  versionId: string;
  action: DeliveryAction;
  committedAt: string;
}

export interface DeliveryRecord extends NewDelivery {
  id: string;
  eventNumber: number;
  status: DeliveryStatus;
  attempts: number;
  error?: string;
  createdAt: string;
  deliveredAt?: string;
}

export type DeliveryClaim =
  | {
      kind: 'claimed';
      delivery: DeliveryRecord;
      /** the Subscription's current JSON (undefined: deleted) */
      subscriptionJson?: string;
      /** the matched version's JSON (undefined for a delete) */
      resourceJson?: string;
    }
  | { kind: 'busy' }
  | { kind: 'done' };

const MICROS = sql.raw(`'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`);
const isoMicros = (column: string) => sql<string>`to_char(${sql.ref(column)} AT TIME ZONE 'UTC', ${MICROS})`;
const iso = (v: Date | string | null): string | undefined => (v === null ? undefined : new Date(v).toISOString());

interface DeliveryRow {
  id: string;
  subscription_id: string;
  event_number: string | number;
  resource_type: string;
  resource_id: string;
  version_id: string | number;
  action: DeliveryAction;
  committed_at: Date | string;
  created_at: Date | string;
  status: DeliveryStatus;
  attempts: number;
  error: string | null;
  delivered_at: Date | string | null;
}

function toDelivery(r: DeliveryRow): DeliveryRecord {
  const d: DeliveryRecord = {
    id: r.id,
    subscriptionId: r.subscription_id,
    eventNumber: Number(r.event_number),
    resourceType: r.resource_type,
    resourceId: r.resource_id,
    versionId: String(r.version_id),
    action: r.action,
    committedAt: iso(r.committed_at)!,
    createdAt: iso(r.created_at)!,
    status: r.status,
    attempts: r.attempts,
  };
  if (r.error !== null) d.error = r.error;
  if (r.delivered_at !== null) d.deliveredAt = iso(r.delivered_at);
  return d;
}

const DELIVERY_COLUMNS = sql.raw(
  'id, subscription_id, event_number, resource_type, resource_id, version_id, action, committed_at, created_at, status, attempts, error, delivered_at',
);

export class SubscriptionStore {
  constructor(private readonly db: Db) {}

  /**
   * Records the grant of the API client writing a Subscription (in the write's transaction,
   * `executor`). `activate` restarts the activation time: events before it are not notified.
   */
  async saveState(executor: Db, subscriptionId: string, grant: SubscriptionGrant | undefined, activate: boolean): Promise<void> {
    const g = grant;
    await sql`
      INSERT INTO subscription_state (subscription_id, client_id, subject, token_kind, role, patient, scope, activated_at)
      VALUES (${subscriptionId}, ${g?.clientId ?? null}, ${g?.subject ?? null}, ${g?.kind ?? null}, ${g?.role ?? null}, ${g?.patient ?? null}, ${g?.scope ?? null}, clock_timestamp())
      ON CONFLICT (subscription_id) DO UPDATE SET
        client_id = CASE WHEN ${g !== undefined} THEN EXCLUDED.client_id ELSE subscription_state.client_id END,
        subject = CASE WHEN ${g !== undefined} THEN EXCLUDED.subject ELSE subscription_state.subject END,
        token_kind = CASE WHEN ${g !== undefined} THEN EXCLUDED.token_kind ELSE subscription_state.token_kind END,
        role = CASE WHEN ${g !== undefined} THEN EXCLUDED.role ELSE subscription_state.role END,
        patient = CASE WHEN ${g !== undefined} THEN EXCLUDED.patient ELSE subscription_state.patient END,
        scope = CASE WHEN ${g !== undefined} THEN EXCLUDED.scope ELSE subscription_state.scope END,
        activated_at = CASE WHEN ${activate} THEN clock_timestamp() ELSE subscription_state.activated_at END`.execute(executor);
  }

  /** Subscriptions whose stored status is active, with their grant. */
  async active(): Promise<ActiveSubscriptionRow[]> {
    const r = await sql<{ id: string; json: string; client_id: string | null; subject: string | null; token_kind: string | null; role: string | null; patient: string | null; scope: string | null; activated_at: string | null }>`
      SELECT r.id, r.content::text AS json, s.client_id, s.subject, s.token_kind, s.role, s.patient, s.scope,
             ${isoMicros('s.activated_at')} AS activated_at
      FROM resource r LEFT JOIN subscription_state s ON s.subscription_id = r.id
      WHERE r.resource_type = 'Subscription' AND r.deleted = false AND r.content->>'status' = 'active'`.execute(this.db);
    return r.rows.map((row) => {
      const out: ActiveSubscriptionRow = { id: row.id, json: row.json };
      if (row.activated_at) out.activatedAt = row.activated_at;
      if (row.client_id !== null && row.subject !== null && row.scope !== null && (row.token_kind === 'user' || row.token_kind === 'client')) {
        out.grant = { clientId: row.client_id, subject: row.subject, kind: row.token_kind, scope: row.scope };
        if (row.role !== null) out.grant.role = row.role;
        if (row.patient !== null) out.grant.patient = row.patient;
      }
      return out;
    });
  }

  /**
   * Takes or renews the dispatcher lease (one leader per database) and returns the cursor
   * position; undefined while another process holds an unexpired lease.
   */
  async lease(holder: string, leaseMs: number): Promise<string | undefined> {
    const r = await sql<{ position: string }>`
      UPDATE subscription_dispatch
      SET leader = ${holder}, lease_until = clock_timestamp() + make_interval(secs => ${leaseMs / 1000})
      WHERE name = 'default' AND (leader = ${holder} OR lease_until IS NULL OR lease_until < clock_timestamp())
      RETURNING ${isoMicros('position')} AS position`.execute(this.db);
    return r.rows[0]?.position;
  }

  async releaseLease(holder: string): Promise<void> {
    await sql`UPDATE subscription_dispatch SET leader = NULL, lease_until = NULL WHERE name = 'default' AND leader = ${holder}`.execute(this.db);
  }

  /** Moves the cursor forward (only while holding the lease). */
  async advance(holder: string, position: string): Promise<boolean> {
    const r = await sql`
      UPDATE subscription_dispatch SET position = GREATEST(position, ${position}::timestamptz)
      WHERE name = 'default' AND leader = ${holder}`.execute(this.db);
    return Number(r.numAffectedRows ?? 0) > 0;
  }

  /** Versions stored after `position` (of `type` only, when given), oldest first. */
  async historyAfter(position: string, limit: number, type?: string): Promise<HistoryKey[]> {
    const where = sql`last_updated > ${position}::timestamptz`;
    return this.historyKeys(type ? sql`resource_type = ${type} AND ${where}` : where, limit);
  }

  /** Versions stored in (from, to]: the window where slow transactions may still commit rows. */
  async historyBetween(from: string, to: string, limit: number, type?: string): Promise<HistoryKey[]> {
    const where = sql`last_updated > ${from}::timestamptz AND last_updated <= ${to}::timestamptz`;
    return this.historyKeys(type ? sql`resource_type = ${type} AND ${where}` : where, limit);
  }

  private async historyKeys(where: RawBuilder<unknown>, limit: number): Promise<HistoryKey[]> {
    const r = await sql<{ resource_type: string; id: string; version_id: string; deleted: boolean; last_updated: string }>`
      SELECT resource_type, id, version_id::text AS version_id, deleted, ${isoMicros('last_updated')} AS last_updated
      FROM resource_history WHERE ${where}
      ORDER BY last_updated, resource_type, id, version_id
      LIMIT ${limit}`.execute(this.db);
    return r.rows.map((x) => ({ resourceType: x.resource_type, id: x.id, versionId: x.version_id, deleted: x.deleted, lastUpdated: x.last_updated }));
  }

  /** Current JSON of resources of one type (deleted ones left out), for the matching pre-check. */
  async contents(type: string, ids: readonly string[]): Promise<Map<string, string>> {
    const r = await sql<{ id: string; json: string }>`
      SELECT id, content::text AS json FROM resource
      WHERE resource_type = ${type} AND id = ANY(${[...ids]}::text[]) AND deleted = false`.execute(this.db);
    return new Map(r.rows.map((x) => [x.id, x.json]));
  }

  /** The current time of the database, with microseconds (the clock the cursor is compared on). */
  async now(): Promise<string> {
    const r = await sql<{ now: string }>`SELECT ${sql.raw(`to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)} AS now`.execute(this.db);
    return r.rows[0]!.now;
  }

  /**
   * For deleted resources: the subscriptions that were notified of an earlier version (and not
   * of its delete yet). Key `Type/id` → subscription ids.
   */
  async notifiedBefore(keys: ReadonlyArray<{ resourceType: string; id: string; versionId: string }>): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (keys.length === 0) return out;
    const r = await sql<{ resource_type: string; resource_id: string; subscription_id: string }>`
      SELECT DISTINCT d.resource_type, d.resource_id, d.subscription_id
      FROM subscription_delivery d
      JOIN unnest(${keys.map((k) => k.resourceType)}::text[], ${keys.map((k) => k.id)}::text[], ${keys.map((k) => k.versionId)}::bigint[]) AS k(t, i, v)
        ON d.resource_type = k.t AND d.resource_id = k.i AND d.version_id < k.v
      WHERE d.action <> 'delete'`.execute(this.db);
    for (const row of r.rows) {
      const key = `${row.resource_type}/${row.resource_id}`;
      out.set(key, [...(out.get(key) ?? []), row.subscription_id]);
    }
    return out;
  }

  /**
   * Stores the deliveries not stored yet (a version seen twice is one event) and numbers them
   * per subscription, without gaps; returns the ids of the new rows. One transaction, run by
   * the dispatcher lease holder only, so numbering never races.
   */
  async addDeliveries(deliveries: readonly NewDelivery[]): Promise<string[]> {
    if (deliveries.length === 0) return [];
    return this.db.transaction().execute(async (trx) => {
      const existing = await sql<{ k: string }>`
        SELECT d.subscription_id || ' ' || d.resource_type || '/' || d.resource_id || '/' || d.version_id AS k
        FROM subscription_delivery d
        JOIN unnest(${deliveries.map((d) => d.subscriptionId)}::text[], ${deliveries.map((d) => d.resourceType)}::text[],
                    ${deliveries.map((d) => d.resourceId)}::text[], ${deliveries.map((d) => d.versionId)}::bigint[]) AS k(s, t, i, v)
          ON d.subscription_id = k.s AND d.resource_type = k.t AND d.resource_id = k.i AND d.version_id = k.v`.execute(trx);
      const seen = new Set(existing.rows.map((r) => r.k));
      const fresh = deliveries.filter((d) => !seen.has(`${d.subscriptionId} ${d.resourceType}/${d.resourceId}/${d.versionId}`));
      if (fresh.length === 0) return [];
      const perSubscription = new Map<string, number>();
      for (const d of fresh) perSubscription.set(d.subscriptionId, (perSubscription.get(d.subscriptionId) ?? 0) + 1);
      const counters = await sql<{ subscription_id: string; events: string }>`
        UPDATE subscription_state s SET events = s.events + v.n
        FROM unnest(${[...perSubscription.keys()]}::text[], ${[...perSubscription.values()]}::int[]) AS v(id, n)
        WHERE s.subscription_id = v.id
        RETURNING s.subscription_id, s.events::text AS events`.execute(trx);
      const next = new Map(counters.rows.map((r) => [r.subscription_id, Number(r.events) - perSubscription.get(r.subscription_id)! + 1]));
      const rows = fresh.filter((d) => next.has(d.subscriptionId));
      const ids = rows.map(() => randomUUID());
      const numbers = rows.map((d) => {
        const n = next.get(d.subscriptionId)!;
        next.set(d.subscriptionId, n + 1);
        return n;
      });
      if (rows.length === 0) return [];
      await sql`
        INSERT INTO subscription_delivery (id, subscription_id, event_number, resource_type, resource_id, version_id, action, committed_at)
        SELECT * FROM unnest(${ids}::text[], ${rows.map((d) => d.subscriptionId)}::text[], ${numbers}::bigint[], ${rows.map((d) => d.resourceType)}::text[],
                             ${rows.map((d) => d.resourceId)}::text[], ${rows.map((d) => d.versionId)}::bigint[], ${rows.map((d) => d.action)}::text[],
                             ${rows.map((d) => d.committedAt)}::timestamptz[])`.execute(trx);
      return ids;
    });
  }

  /**
   * Claims a pending delivery for one run. Another live run holding it → busy; delivered,
   * dead-lettered or cancelled → done. A claim older than `staleMs` belongs to a dead run.
   */
  async claim(id: string, runId: string, staleMs: number): Promise<DeliveryClaim> {
    // One round trip: the claim, the Subscription and the matched version.
    const r = await sql<DeliveryRow & { subscription_json: string | null; resource_json: string | null }>`
      WITH c AS (
        UPDATE subscription_delivery SET claimed_by = ${runId}, claimed_at = clock_timestamp(), attempts = attempts + 1
        WHERE id = ${id} AND status = 'pending'
          AND (claimed_by IS NULL OR claimed_at < clock_timestamp() - make_interval(secs => ${staleMs / 1000}))
        RETURNING ${DELIVERY_COLUMNS})
      SELECT c.*,
        (SELECT s.content::text FROM resource s WHERE s.resource_type = 'Subscription' AND s.id = c.subscription_id AND s.deleted = false) AS subscription_json,
        (SELECT h.content::text FROM resource_history h WHERE h.resource_type = c.resource_type AND h.id = c.resource_id AND h.version_id = c.version_id) AS resource_json
      FROM c`.execute(this.db);
    const row = r.rows[0];
    if (row) {
      const claimed: DeliveryClaim = { kind: 'claimed', delivery: toDelivery(row) };
      if (row.subscription_json !== null) claimed.subscriptionJson = row.subscription_json;
      if (row.resource_json !== null) claimed.resourceJson = row.resource_json;
      return claimed;
    }
    const now = await this.get(id);
    return now?.status === 'pending' ? { kind: 'busy' } : { kind: 'done' };
  }

  async get(id: string): Promise<DeliveryRecord | undefined> {
    const r = await sql<DeliveryRow>`SELECT ${DELIVERY_COLUMNS} FROM subscription_delivery WHERE id = ${id}`.execute(this.db);
    return r.rows[0] ? toDelivery(r.rows[0]) : undefined;
  }

  /** Ends a claimed delivery: delivered, dead-letter or cancelled (with why), or back to pending for a retry. */
  async finish(id: string, runId: string, status: DeliveryStatus, error?: string): Promise<void> {
    await sql`
      UPDATE subscription_delivery SET status = ${status}, error = ${error ?? null}, claimed_by = NULL, claimed_at = NULL,
        delivered_at = CASE WHEN ${status} = 'delivered' THEN clock_timestamp() ELSE delivered_at END
      WHERE id = ${id} AND claimed_by = ${runId}`.execute(this.db);
  }

  /** A failed or postponed run gives its claim back; `countAttempt` false undoes the claim's attempt. */
  async release(id: string, runId: string, error: string | undefined, countAttempt: boolean): Promise<void> {
    await sql`
      UPDATE subscription_delivery SET claimed_by = NULL, claimed_at = NULL, error = COALESCE(${error ?? null}, error),
        attempts = attempts - ${countAttempt ? 0 : 1}
      WHERE id = ${id} AND claimed_by = ${runId}`.execute(this.db);
  }

  /** Marks a delivery dead after its last attempt even if no run holds it (the runner gave up). */
  async deadLetter(id: string, error: string): Promise<void> {
    await sql`
      UPDATE subscription_delivery SET status = 'dead-letter', error = ${error}, claimed_by = NULL, claimed_at = NULL
      WHERE id = ${id} AND status = 'pending'`.execute(this.db);
  }

  /**
   * Pending deliveries nobody holds, created before `olderThanMs` ago: queued again after a
   * crash. `abandoned`: a run claimed it and died (its claim is older than `staleMs`).
   */
  async unclaimed(olderThanMs: number, staleMs: number, limit: number): Promise<Array<{ id: string; abandoned: boolean }>> {
    const r = await sql<{ id: string; abandoned: boolean }>`
      SELECT id, claimed_by IS NOT NULL AS abandoned FROM subscription_delivery
      WHERE status = 'pending' AND created_at < clock_timestamp() - make_interval(secs => ${olderThanMs / 1000})
        AND (claimed_by IS NULL OR claimed_at < clock_timestamp() - make_interval(secs => ${staleMs / 1000}))
      ORDER BY created_at LIMIT ${limit}`.execute(this.db);
    return r.rows.map((x) => ({ id: x.id, abandoned: x.abandoned }));
  }

  /** Counter and delivery counts of one subscription (for $status). */
  async status(subscriptionId: string): Promise<{ events: number; counts: Record<DeliveryStatus, number>; lastError?: string }> {
    const s = await sql<{ events: string }>`SELECT events::text AS events FROM subscription_state WHERE subscription_id = ${subscriptionId}`.execute(this.db);
    const c = await sql<{ status: DeliveryStatus; n: string }>`
      SELECT status, count(*)::text AS n FROM subscription_delivery WHERE subscription_id = ${subscriptionId} GROUP BY status`.execute(this.db);
    const e = await sql<{ error: string }>`
      SELECT error FROM subscription_delivery WHERE subscription_id = ${subscriptionId} AND error IS NOT NULL
      ORDER BY created_at DESC LIMIT 1`.execute(this.db);
    const counts: Record<DeliveryStatus, number> = { pending: 0, delivered: 0, 'dead-letter': 0, cancelled: 0 };
    for (const row of c.rows) counts[row.status] = Number(row.n);
    const out: { events: number; counts: Record<DeliveryStatus, number>; lastError?: string } = { events: Number(s.rows[0]?.events ?? 0), counts };
    if (e.rows[0]) out.lastError = e.rows[0].error;
    return out;
  }

  /** Events of one subscription by number (for $events), oldest first. */
  async events(subscriptionId: string, from: number, to: number, limit: number): Promise<DeliveryRecord[]> {
    const r = await sql<DeliveryRow>`
      SELECT ${DELIVERY_COLUMNS} FROM subscription_delivery
      WHERE subscription_id = ${subscriptionId} AND event_number >= ${from} AND event_number <= ${to}
      ORDER BY event_number LIMIT ${limit}`.execute(this.db);
    return r.rows.map(toDelivery);
  }

  /** Dead letters of every subscription, newest first (admin view). */
  async deadLetters(limit: number): Promise<DeliveryRecord[]> {
    const r = await sql<DeliveryRow>`
      SELECT ${DELIVERY_COLUMNS} FROM subscription_delivery WHERE status = 'dead-letter'
      ORDER BY created_at DESC LIMIT ${limit}`.execute(this.db);
    return r.rows.map(toDelivery);
  }
}
