import { sql, type RawBuilder } from 'kysely';
import type { Db } from './db.js';
import { newResourceId } from './resource-store.js';

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
/** event: a resource version notified (numbered); handshake / heartbeat: topic-based signals (not numbered). */
export type DeliveryKind = 'event' | 'handshake' | 'heartbeat';

export interface NewDelivery {
  subscriptionId: string;
  resourceType: string;
  resourceId: string;
  versionId: string;
  action: DeliveryAction;
  committedAt: string;
  /** default event */
  kind?: DeliveryKind;
}

/** What one delivery job sends: one row (job id = row id) or the rows of one batch. */
export type DeliveryTarget = { id: string } | { batch: string };

/** Deliveries of one Subscription stored by one dispatch round: sent by one job. */
export interface DeliveryBatch {
  batchId: string;
  subscriptionId: string;
  ids: string[];
}

export interface DeliveryRecord extends NewDelivery {
  id: string;
  kind: DeliveryKind;
  batchId?: string;
  eventNumber: number;
  status: DeliveryStatus;
  attempts: number;
  error?: string;
  createdAt: string;
  deliveredAt?: string;
}

/** A claimed delivery with what sending it needs. */
export interface ClaimedDelivery {
  delivery: DeliveryRecord;
  /** the Subscription's current JSON (undefined: deleted) */
  subscriptionJson?: string;
  /** the matched version's JSON (undefined for a delete, a handshake or a heartbeat) */
  resourceJson?: string;
  /** the subscriber's recorded role and token kind (role-based masking of what it is sent) */
  subscriber?: { role?: string; kind?: string };
}

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
  kind: DeliveryKind;
  batch_id: string | null;
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
    kind: r.kind,
  };
  if (r.batch_id !== null) d.batchId = r.batch_id;
  if (r.error !== null) d.error = r.error;
  if (r.delivered_at !== null) d.deliveredAt = iso(r.delivered_at);
  return d;
}

const DELIVERY_COLUMNS = sql.raw(
  'id, subscription_id, event_number, resource_type, resource_id, version_id, action, committed_at, created_at, status, attempts, error, delivered_at, kind, batch_id',
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
  async historyBetween(from: string, to: string, limit: number, type?: string, newestFirst = false): Promise<HistoryKey[]> {
    const where = sql`last_updated > ${from}::timestamptz AND last_updated <= ${to}::timestamptz`;
    return this.historyKeys(type ? sql`resource_type = ${type} AND ${where}` : where, limit, newestFirst);
  }

  /**
   * How many versions (of every type) were stored in (from, to], per time bucket of `bucketMs`
   * (bucket = floor(epoch milliseconds / bucketMs)): the late scan compares these with what
   * it has seen and reads the keys of the buckets that differ only. One row per bucket instead
   * of one per version, from the last_updated index alone.
   */
  async historyCounts(from: string, to: string, bucketMs: number): Promise<Map<number, number>> {
    const r = await sql<{ b: string; n: number }>`
      SELECT ((extract(epoch FROM last_updated) * 1000000)::bigint / ${bucketMs * 1000}::bigint)::text AS b, count(*)::int AS n
      FROM resource_history WHERE last_updated > ${from}::timestamptz AND last_updated <= ${to}::timestamptz
      GROUP BY 1`.execute(this.db);
    return new Map(r.rows.map((x) => [Number(x.b), Number(x.n)]));
  }

  /** `newestFirst`: the last `limit` versions of the range (newest first), else the first ones (oldest first). */
  private async historyKeys(where: RawBuilder<unknown>, limit: number, newestFirst = false): Promise<HistoryKey[]> {
    const order = newestFirst ? sql`ORDER BY last_updated DESC, resource_type DESC, id DESC, version_id DESC` : sql`ORDER BY last_updated, resource_type, id, version_id`;
    const r = await sql<{ resource_type: string; id: string; version_id: string; deleted: boolean; last_updated: string }>`
      SELECT resource_type, id, version_id::text AS version_id, deleted, ${isoMicros('last_updated')} AS last_updated
      FROM resource_history WHERE ${where}
      ${order}
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
      WHERE d.action <> 'delete' AND d.kind = 'event'`.execute(this.db);
    for (const row of r.rows) {
      const key = `${row.resource_type}/${row.resource_id}`;
      out.set(key, [...(out.get(key) ?? []), row.subscription_id]);
    }
    return out;
  }

  /**
   * Stores the deliveries not stored yet (a version seen twice is one event) and numbers the
   * events per subscription, without gaps (handshakes and heartbeats carry the count without
   * increasing it); returns the new rows grouped in batches (one Subscription each, at most
   * `maxBatch` rows), each sent by one job. `advanceTo` moves the dispatch cursor in the same
   * statement: the deliveries and the cursor past them commit together.
   *
   * ONE statement (dedupe, numbering, insert, cursor), written only while `holder` is the
   * dispatcher leader: a leader that lost its lease (paused past it) writes nothing, and
   * `leading` says so. It was a transaction of five statements plus the cursor's own; under a
   * stream of writes a dispatch round pays this once, so it was most of a round's fixed cost.
   */
  async addDeliveries(deliveries: readonly NewDelivery[], holder: string, advanceTo?: string, maxBatch = 200): Promise<{ batches: DeliveryBatch[]; leading: boolean }> {
    // Batches are cut here over every row (the rows already stored are left out by the
    // statement): a batch only ever comes out smaller, never mixes Subscriptions.
    // Time-ordered ids (as resource ids): the rows of a round take new entries on a few hot
    // pages of the primary key and the batch index, not a random page each (WAL per delivery:
    // one page image less per row after every checkpoint; measured 176 → 60 kB per 100 rows).
    const ids = deliveries.map(() => newResourceId());
    const open = new Map<string, { batchId: string; size: number }>();
    const batchIds = deliveries.map((d) => {
      let b = open.get(d.subscriptionId);
      if (!b || b.size >= maxBatch) open.set(d.subscriptionId, (b = { batchId: newResourceId(), size: 0 }));
      b.size++;
      return b.batchId;
    });
    const r = await sql<{ leading: number | string; rows: string }>`
      WITH lead AS (
        SELECT 1 FROM subscription_dispatch WHERE name = 'default' AND leader = ${holder}
      ), input AS (
        SELECT k.* FROM unnest(${ids}::text[], ${deliveries.map((d) => d.subscriptionId)}::text[], ${deliveries.map((d) => d.resourceType)}::text[],
                               ${deliveries.map((d) => d.resourceId)}::text[], ${deliveries.map((d) => d.versionId)}::bigint[], ${deliveries.map((d) => d.action)}::text[],
                               ${deliveries.map((d) => d.committedAt)}::timestamptz[], ${deliveries.map((d) => d.kind ?? 'event')}::text[], ${batchIds}::text[])
          WITH ORDINALITY AS k(id, s, t, i, v, action, committed_at, kind, batch_id, ord)
        WHERE EXISTS (SELECT 1 FROM lead)
      ), fresh AS (
        SELECT DISTINCT ON (k.s, k.t, k.i, k.v) k.* FROM input k
        WHERE NOT EXISTS (SELECT 1 FROM subscription_delivery d
                          WHERE d.subscription_id = k.s AND d.resource_type = k.t AND d.resource_id = k.i AND d.version_id = k.v)
        ORDER BY k.s, k.t, k.i, k.v, k.ord
      ), counts AS (
        SELECT s, count(*) FILTER (WHERE kind = 'event') AS n FROM fresh GROUP BY s
      ), st AS (
        UPDATE subscription_state x SET events = x.events + c.n FROM counts c WHERE x.subscription_id = c.s
        RETURNING x.subscription_id, x.events - c.n AS before
      ), ins AS (
        INSERT INTO subscription_delivery (id, subscription_id, event_number, resource_type, resource_id, version_id, action, committed_at, kind, batch_id)
        SELECT f.id, f.s,
          st.before + CASE WHEN f.kind = 'event' THEN count(*) FILTER (WHERE f.kind = 'event') OVER (PARTITION BY f.s ORDER BY f.ord) ELSE 0 END,
          f.t, f.i, f.v, f.action, f.committed_at, f.kind, f.batch_id
        FROM fresh f JOIN st ON st.subscription_id = f.s
        RETURNING batch_id, subscription_id, id
      ), adv AS (
        UPDATE subscription_dispatch SET position = GREATEST(position, ${advanceTo ?? null}::timestamptz)
        WHERE name = 'default' AND leader = ${holder} AND ${advanceTo ?? null}::timestamptz IS NOT NULL
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM lead) AS leading,
        COALESCE((SELECT json_agg(json_build_array(batch_id, subscription_id, id))::text FROM ins), '[]') AS rows`.execute(this.db);
    const row = r.rows[0]!;
    const batches = new Map<string, DeliveryBatch>();
    for (const [batchId, subscriptionId, id] of JSON.parse(row.rows) as Array<[string, string, string]>) {
      let b = batches.get(batchId);
      if (!b) batches.set(batchId, (b = { batchId, subscriptionId, ids: [] }));
      b.ids.push(id);
    }
    return { batches: [...batches.values()], leading: Number(row.leading) > 0 };
  }

  /**
   * Claims the pending deliveries of one job (one row, or a batch) for one run, in one
   * statement with the Subscription and the matched versions. Rows another live run holds are
   * left to it; when none could be claimed, `busy` tells whether some are still pending. A claim older than `staleMs` belongs to a dead run.
   */
  async claimMany(target: DeliveryTarget, runId: string, staleMs: number): Promise<{ claimed: ClaimedDelivery[]; busy: boolean }> {
    const which = 'batch' in target ? sql`batch_id = ${target.batch}` : sql`id = ${target.id}`;
    const r = await sql<DeliveryRow & { subscription_json: string | null; resource_json: string | null; grant_role: string | null; grant_kind: string | null }>`
      WITH c AS (
        UPDATE subscription_delivery SET claimed_by = ${runId}, claimed_at = clock_timestamp(), attempts = attempts + 1
        WHERE ${which} AND status = 'pending'
          AND (claimed_by IS NULL OR claimed_at < clock_timestamp() - make_interval(secs => ${staleMs / 1000}))
        RETURNING ${DELIVERY_COLUMNS})
      SELECT c.*, st.role AS grant_role, st.token_kind AS grant_kind,
        (SELECT s.content::text FROM resource s WHERE s.resource_type = 'Subscription' AND s.id = c.subscription_id AND s.deleted = false) AS subscription_json,
        (SELECT h.content::text FROM resource_history h WHERE c.kind = 'event' AND h.resource_type = c.resource_type AND h.id = c.resource_id AND h.version_id = c.version_id) AS resource_json
      FROM c LEFT JOIN subscription_state st ON st.subscription_id = c.subscription_id
      ORDER BY c.event_number, c.created_at`.execute(this.db);
    const claimed = r.rows.map((row) => {
      const out: ClaimedDelivery = { delivery: toDelivery(row) };
      if (row.subscription_json !== null) out.subscriptionJson = row.subscription_json;
      if (row.resource_json !== null) out.resourceJson = row.resource_json;
      if (row.grant_role !== null || row.grant_kind !== null) out.subscriber = { ...(row.grant_role !== null ? { role: row.grant_role } : {}), ...(row.grant_kind !== null ? { kind: row.grant_kind } : {}) };
      return out;
    });
    if (claimed.length > 0) return { claimed, busy: false };
    // Nothing claimable: done, or held by another live run (asked only then: one statement per job otherwise).
    const left = await sql<{ n: string }>`
      SELECT count(*)::text AS n FROM subscription_delivery WHERE ${which} AND status = 'pending'`.execute(this.db);
    return { claimed, busy: Number(left.rows[0]?.n ?? 0) > 0 };
  }

  /** Ends claimed deliveries in one statement: delivered, cancelled (with why) and so on. */
  async finishMany(runId: string, outcomes: ReadonlyArray<{ id: string; status: DeliveryStatus; error?: string }>): Promise<void> {
    if (outcomes.length === 0) return;
    await sql`
      UPDATE subscription_delivery d SET status = o.status, error = o.error, claimed_by = NULL, claimed_at = NULL,
        delivered_at = CASE WHEN o.status = 'delivered' THEN clock_timestamp() ELSE d.delivered_at END
      FROM unnest(${outcomes.map((o) => o.id)}::text[], ${outcomes.map((o) => o.status)}::text[], ${outcomes.map((o) => o.error ?? null)}::text[]) AS o(id, status, error)
      WHERE d.id = o.id AND d.claimed_by = ${runId}`.execute(this.db);
  }

  /** Failed or postponed runs give their claims back (one statement); `countAttempt` false undoes the claim's attempt. */
  async releaseMany(runId: string, released: ReadonlyArray<{ id: string; error?: string }>, countAttempt: boolean): Promise<void> {
    if (released.length === 0) return;
    await sql`
      UPDATE subscription_delivery d SET claimed_by = NULL, claimed_at = NULL, error = COALESCE(o.error, d.error),
        attempts = d.attempts - ${countAttempt ? 0 : 1}
      FROM unnest(${released.map((o) => o.id)}::text[], ${released.map((o) => o.error ?? null)}::text[]) AS o(id, error)
      WHERE d.id = o.id AND d.claimed_by = ${runId}`.execute(this.db);
  }

  /** Marks the still pending rows of a job dead after its last attempt (the runner gave up); returns them. */
  async deadLetterMany(target: DeliveryTarget, error: string): Promise<DeliveryRecord[]> {
    const which = 'batch' in target ? sql`batch_id = ${target.batch}` : sql`id = ${target.id}`;
    const r = await sql<DeliveryRow>`
      UPDATE subscription_delivery SET status = 'dead-letter', error = COALESCE(error, ${error}), claimed_by = NULL, claimed_at = NULL
      WHERE ${which} AND status = 'pending'
      RETURNING ${DELIVERY_COLUMNS}`.execute(this.db);
    return r.rows.map(toDelivery).sort((a, b) => a.eventNumber - b.eventNumber);
  }

  /**
   * Of the given Subscriptions (id → heartbeat period in seconds), those that were sent nothing
   * (no delivery row of any kind created) for a whole period since their activation.
   */
  async dueHeartbeats(periods: ReadonlyMap<string, number>): Promise<string[]> {
    if (periods.size === 0) return [];
    const r = await sql<{ id: string }>`
      SELECT p.id FROM unnest(${[...periods.keys()]}::text[], ${[...periods.values()]}::int[]) AS p(id, secs)
      JOIN subscription_state s ON s.subscription_id = p.id
      WHERE GREATEST(s.activated_at, COALESCE((
              -- the newest row is among those with the highest number (signals carry the count):
              -- a short backward scan of subscription_delivery_number, not all the rows
              SELECT d.created_at FROM subscription_delivery d WHERE d.subscription_id = p.id
              ORDER BY d.event_number DESC, d.created_at DESC LIMIT 1), s.activated_at))
            < clock_timestamp() - make_interval(secs => p.secs)`.execute(this.db);
    return r.rows.map((x) => x.id);
  }

  /** JSON of versions and of the version before each (for topic FHIRPath criteria); key `Type/id/version`. */
  async versionPairs(keys: ReadonlyArray<{ resourceType: string; id: string; versionId: string }>): Promise<Map<string, string>> {
    if (keys.length === 0) return new Map();
    const r = await sql<{ resource_type: string; id: string; version_id: string; json: string }>`
      SELECT h.resource_type, h.id, h.version_id::text AS version_id, h.content::text AS json
      FROM resource_history h
      JOIN unnest(${keys.map((k) => k.resourceType)}::text[], ${keys.map((k) => k.id)}::text[], ${keys.map((k) => k.versionId)}::bigint[]) AS k(t, i, v)
        ON h.resource_type = k.t AND h.id = k.i AND (h.version_id = k.v OR h.version_id = k.v - 1)
      WHERE h.deleted = false AND h.content IS NOT NULL`.execute(this.db);
    return new Map(r.rows.map((x) => [`${x.resource_type}/${x.id}/${x.version_id}`, x.json]));
  }

  async get(id: string): Promise<DeliveryRecord | undefined> {
    const r = await sql<DeliveryRow>`SELECT ${DELIVERY_COLUMNS} FROM subscription_delivery WHERE id = ${id}`.execute(this.db);
    return r.rows[0] ? toDelivery(r.rows[0]) : undefined;
  }

  /**
   * Pending deliveries nobody holds, created before `olderThanMs` ago: queued again after a
   * crash. `abandoned`: a run claimed it and died (its claim is older than `staleMs`).
   */
  async unclaimed(olderThanMs: number, staleMs: number, limit: number): Promise<Array<{ id: string; abandoned: boolean; batchId?: string }>> {
    const r = await sql<{ id: string; abandoned: boolean; batch_id: string | null }>`
      SELECT id, claimed_by IS NOT NULL AS abandoned, batch_id FROM subscription_delivery
      WHERE status = 'pending' AND created_at < clock_timestamp() - make_interval(secs => ${olderThanMs / 1000})
        AND (claimed_by IS NULL OR claimed_at < clock_timestamp() - make_interval(secs => ${staleMs / 1000}))
      ORDER BY created_at LIMIT ${limit}`.execute(this.db);
    return r.rows.map((x) => (x.batch_id === null ? { id: x.id, abandoned: x.abandoned } : { id: x.id, abandoned: x.abandoned, batchId: x.batch_id }));
  }

  /** Counter and delivery counts of one subscription (for $status). */
  async status(subscriptionId: string): Promise<{ events: number; counts: Record<DeliveryStatus, number>; lastError?: string }> {
    const s = await sql<{ events: string }>`SELECT events::text AS events FROM subscription_state WHERE subscription_id = ${subscriptionId}`.execute(this.db);
    const c = await sql<{ status: DeliveryStatus; n: string }>`
      SELECT status, count(*)::text AS n FROM subscription_delivery WHERE subscription_id = ${subscriptionId} AND kind = 'event' GROUP BY status`.execute(this.db);
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
      WHERE subscription_id = ${subscriptionId} AND kind = 'event' AND event_number >= ${from} AND event_number <= ${to}
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
