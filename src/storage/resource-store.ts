import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4.js';
import { CompiledQuery, sql } from 'kysely';
import { FhirError } from '../fhir/errors.js';
import { PREPARED, type Db } from './db.js';
import { isRetryable, mapDatabaseError } from './pg-errors.js';
import { executePrepared } from './prepared-write.js';
import { writeStatements, type BlindResult, type PendingWrite, type WriteStatement } from './write-sql.js';
import type { ResourceChange, SearchIndexSource, StoredVersion, WriteMethod } from './types.js';
import { activeWriteProfile, stageStart } from './write-profile.js';
import { sameVersionContent } from './same-content.js';
import { WriteCombiner } from './write-combiner.js';

/** Runs inside the database transaction before the version is stored: validation, rules, derived data. */
export type BeforeWriteHook = (tx: StoreTransaction, change: ResourceChange) => Promise<void> | void;
/** Runs after commit with every change of the transaction: subscriptions, audit, jobs. */
export type AfterCommitHook = (changes: readonly ResourceChange[]) => Promise<void> | void;

/** How many times a transaction that lost a race (serialization, deadlock, duplicate key) is re-run. */
const MAX_TRANSACTION_ATTEMPTS = 5;

export interface HistoryQuery {
  resourceType?: string;
  id?: string;
  /** Only versions with lastUpdated ≥ since (ISO instant). */
  since?: string;
  /** Only versions with lastUpdated ≤ at (inclusive upper bound, ISO instant). */
  before?: string;
  count: number;
  /** Keyset cursor from a previous page. */
  after?: HistoryCursor;
}

export interface HistoryCursor {
  lastUpdated: string;
  resourceType: string;
  id: string;
  versionId: string;
}

interface VersionRow {
  resource_type: string;
  id: string;
  version_id: string | number;
  last_updated: Date | string;
  deleted: boolean;
  json: string | null;
  method?: string;
}

function toStored(row: VersionRow): StoredVersion {
  const lastUpdated = row.last_updated instanceof Date ? row.last_updated.toISOString() : new Date(row.last_updated).toISOString();
  const stored: StoredVersion = {
    resourceType: row.resource_type,
    id: row.id,
    versionId: String(row.version_id),
    lastUpdated,
    deleted: row.deleted,
    json: row.json,
  };
  if (row.method) stored.method = row.method as WriteMethod;
  return stored;
}

type Executor = Db;

/** The columns of a version row (VersionRow), as every read of one selects them. */
const VERSION_COLUMNS = 'resource_type, id, version_id::text AS version_id, last_updated, deleted';
/**
 * The reads by id (and the locking read of an update), as fixed texts: nothing to build per
 * read, and on PostgreSQL they run as named prepared statements (PREPARED, src/storage/db.ts),
 * planned once per connection.
 */
const READ_SQL = `SELECT ${VERSION_COLUMNS}, content::text AS json
  FROM resource WHERE resource_type = $1 AND id = $2${PREPARED}`;
const READ_MANY_SQL = `SELECT ${VERSION_COLUMNS}, content::text AS json
  FROM resource WHERE resource_type = $1 AND id = ANY($2::text[])${PREPARED}`;
const READ_FOR_UPDATE_SQL = `SELECT ${VERSION_COLUMNS}, content::text AS json
  FROM resource WHERE resource_type = $1 AND id = $2 FOR UPDATE${PREPARED}`;
const VREAD_SQL = `SELECT ${VERSION_COLUMNS}, method, content::text AS json
  FROM resource_history WHERE resource_type = $1 AND id = $2 AND version_id = $3::bigint${PREPARED}`;

/**
 * A server-assigned resource id: a UUID version 7 (RFC 9562), i.e. the creation time in
 * milliseconds followed by random bits. Ids of resources created together sort together,
 * so the btree indexes that contain the id (primary keys, each search table's
 * (resource_type, resource_id, …), the reference targets) take new entries on a few hot
 * pages instead of a random page each: far fewer pages dirtied and written to the WAL per
 * write. That is what keeps ingest fast once those indexes outgrow memory. Ids remain opaque
 * to clients; like any UUID they match FHIR's id syntax.
 */
export function newResourceId(): string {
  const time = Date.now().toString(16).padStart(12, '0');
  // randomUUID is "xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx": keep its random bits and variant.
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${randomUUID().slice(15)}`;
}

/**
 * The one place where resources are written. Every write runs in a database transaction,
 * passes the before-write hooks, is stored as a new version with its search index rows
 * (set-based, one statement per flush), and is announced to after-commit hooks.
 */
export class ResourceStore {
  private readonly beforeWrite: BeforeWriteHook[] = [];
  private readonly afterCommit: AfterCommitHook[] = [];
  /** Sends the lone write statements of concurrent transactions together (see write-combiner.ts). */
  readonly combiner = new WriteCombiner();

  constructor(
    readonly db: Db,
    private readonly index: SearchIndexSource,
  ) {}

  /** `first`: before the hooks registered so far, e.g. to fill in server-assigned data that validation requires. */
  onBeforeWrite(hook: BeforeWriteHook, position: 'first' | 'last' = 'last'): void {
    if (position === 'first') this.beforeWrite.unshift(hook);
    else this.beforeWrite.push(hook);
  }

  onAfterCommit(hook: AfterCommitHook): void {
    this.afterCommit.push(hook);
  }

  /** Current version (possibly a delete marker) or undefined when the id was never used. */
  async read(resourceType: string, id: string, executor: Executor = this.db): Promise<StoredVersion | undefined> {
    const result = await executor.executeQuery<VersionRow>(CompiledQuery.raw(READ_SQL, [resourceType, id]));
    const row = result.rows[0];
    return row ? toStored(row) : undefined;
  }

  /**
   * Current versions of many resources of one type in ONE statement (absent ids are left out),
   * for readers that would otherwise read them one round trip each.
   */
  async readMany(resourceType: string, ids: readonly string[], executor: Executor = this.db): Promise<StoredVersion[]> {
    if (ids.length === 0) return [];
    const result = await executor.executeQuery<VersionRow>(CompiledQuery.raw(READ_MANY_SQL, [resourceType, [...new Set(ids)]]));
    return result.rows.map(toStored);
  }

  async vread(resourceType: string, id: string, versionId: string): Promise<StoredVersion | undefined> {
    if (!/^[0-9]{1,18}$/.test(versionId)) return undefined;
    const result = await this.db.executeQuery<VersionRow>(CompiledQuery.raw(VREAD_SQL, [resourceType, id, versionId]));
    const row = result.rows[0];
    return row ? toStored(row) : undefined;
  }

  /** Versions newest first, keyset-paged so concurrent writes never shift a page. */
  async history(query: HistoryQuery): Promise<StoredVersion[]> {
    const conditions = [sql`true`];
    if (query.resourceType) conditions.push(sql`resource_type = ${query.resourceType}`);
    if (query.id) conditions.push(sql`id = ${query.id}`);
    if (query.since) conditions.push(sql`last_updated >= ${query.since}::timestamptz`);
    if (query.before) conditions.push(sql`last_updated <= ${query.before}::timestamptz`);
    if (query.after) {
      const c = query.after;
      conditions.push(
        sql`(last_updated, resource_type, id, version_id) < (${c.lastUpdated}::timestamptz, ${c.resourceType}, ${c.id}, ${c.versionId}::bigint)`,
      );
    }
    const result = await sql<VersionRow>`
      SELECT ${sql.raw(VERSION_COLUMNS)}, method, content::text AS json
      FROM resource_history
      WHERE ${sql.join(conditions, sql` AND `)}
      ORDER BY last_updated DESC, resource_type DESC, id DESC, version_id DESC
      LIMIT ${query.count}`.execute(this.db);
    return result.rows.map(toStored);
  }

  async countHistory(query: Omit<HistoryQuery, 'count' | 'after'>): Promise<number> {
    const conditions = [sql`true`];
    if (query.resourceType) conditions.push(sql`resource_type = ${query.resourceType}`);
    if (query.id) conditions.push(sql`id = ${query.id}`);
    if (query.since) conditions.push(sql`last_updated >= ${query.since}::timestamptz`);
    if (query.before) conditions.push(sql`last_updated <= ${query.before}::timestamptz`);
    const result = await sql<{ n: string | number }>`
      SELECT count(*) AS n FROM resource_history WHERE ${sql.join(conditions, sql` AND `)}`.execute(this.db);
    return Number(result.rows[0]?.n ?? 0);
  }

  /**
   * Runs `work` as one database transaction. A run that lost a race with another transaction
   * is repeated from the start (its effects were rolled back); other errors are mapped to
   * FHIR errors and leave nothing behind.
   *
   * BEGIN is sent only once `work` reads or locks something: a write that needs no read (a
   * plain create) is flushed as a single statement, which PostgreSQL runs atomically on its
   * own, saving two round trips on the hottest path.
   */
  async transaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let changes: ResourceChange[] = [];
      try {
        const value = await this.db.connection().execute(async (connection) => {
          const tx = new StoreTransaction(connection, this, this.index, this.beforeWrite, attempt);
          try {
            const result = await work(tx);
            await tx.commit();
            changes = tx.changes;
            return result;
          } catch (e) {
            await tx.rollback();
            throw e;
          }
        });
        await this.announce(changes);
        return value;
      } catch (e) {
        if (attempt < MAX_TRANSACTION_ATTEMPTS && isRetryable(e)) continue;
        throw mapDatabaseError(e);
      }
    }
  }

  private async announce(changes: ResourceChange[]): Promise<void> {
    if (changes.length === 0) return;
    for (const hook of this.afterCommit) {
      try {
        await hook(changes);
      } catch {
        // The data is committed; a failing listener must not turn the write into an error.
        // Listeners own their retries (jobs) and their own error reporting.
      }
    }
  }
}

/** Puts the versions a write statement chose into the changes of its blind writes. */
function settleBlindWrites(writes: readonly PendingWrite[], rows: readonly BlindResult[]): void {
  const byKey = new Map(rows.map((r) => [`${r.t}/${r.i}`, r]));
  for (const w of writes) {
    const change = w.change;
    const row = byKey.get(`${change.resourceType}/${change.id}`);
    if (!row) throw new FhirError('fault', `the write of ${change.resourceType}/${change.id} returned no version`);
    if (row.pv !== null) {
      change.previous = {
        resourceType: change.resourceType,
        id: change.id,
        versionId: row.pv,
        lastUpdated: row.pu instanceof Date ? row.pu.toISOString() : new Date(row.pu ?? 0).toISOString(),
        deleted: row.pd === true,
        json: null,
      };
    }
    if (row.v !== change.versionId) {
      change.versionId = row.v;
      if (change.resource) {
        change.resource = { ...change.resource, meta: { ...change.resource.meta, versionId: row.v } };
        change.json = JSON.stringify(change.resource);
      }
    }
  }
}

/** The write side of one database transaction. Reads through it see its own earlier writes. */
export class StoreTransaction {
  readonly changes: ResourceChange[] = [];
  private pending: PendingWrite[] = [];
  private begun = false;
  /**
   * Versions read and locked by `prefetchForUpdate` (null: no such resource), keyed
   * `Type/id`. Valid until this transaction writes the key: nobody else can change a locked
   * row, so `readForUpdate` answers from here without a round trip or a flush.
   */
  private readonly locked = new Map<string, StoredVersion | null>();
  /** Set once a blind `put` has been written on its own: nothing may follow it. */
  private sealed = false;
  /** SQL to run in this transaction after its last write, before COMMIT (`beforeCommit`). */
  private readonly finishing: Array<(db: Db) => Promise<void>> = [];

  constructor(
    private readonly connection: Db,
    private readonly store: ResourceStore,
    private readonly index: SearchIndexSource,
    private readonly beforeWrite: readonly BeforeWriteHook[],
    /** 1 for the first run of the transaction's work, more when it is re-run after losing a race. */
    private readonly attempt = 1,
  ) {}

  /**
   * The connection of this transaction, with BEGIN sent and pending writes flushed, for SQL
   * that must see and be part of it (conditional searches, business rules in hooks).
   */
  async executor(): Promise<Db> {
    if (!this.begun) {
      const t = activeWriteProfile ? stageStart() : 0;
      await sql`BEGIN`.execute(this.connection);
      activeWriteProfile?.add('read', t);
      this.begun = true;
    }
    await this.flush();
    return this.connection;
  }

  /**
   * Runs `action` in this transaction once its work is done, after its last write and before
   * COMMIT (a hook's side table written once for all the transaction's resources instead of a
   * statement per resource). Dropped on rollback; a failing action fails the commit.
   */
  beforeCommit(action: (db: Db) => Promise<void>): void {
    this.finishing.push(action);
  }

  /**
   * A connection for plain reads of a rule that need not see inside the transaction: while it
   * has begun nothing and has nothing pending (a lone create), the connection as it is, without
   * BEGIN, so that the create stays one statement; otherwise `executor()`.
   */
  async reader(): Promise<Db> {
    return !this.begun && this.pending.length === 0 ? this.connection : this.executor();
  }

  /** Current version, locked until commit so concurrent updates of it queue up. */
  async readForUpdate(resourceType: string, id: string): Promise<StoredVersion | undefined> {
    const known = this.locked.get(`${resourceType}/${id}`);
    if (known !== undefined) return known ?? undefined;
    const trx = await this.executor();
    const t = activeWriteProfile ? stageStart() : 0;
    const result = await trx.executeQuery<VersionRow>(CompiledQuery.raw(READ_FOR_UPDATE_SQL, [resourceType, id]));
    activeWriteProfile?.add('read', t);
    const row = result.rows[0];
    return row ? toStored(row) : undefined;
  }

  /**
   * `readForUpdate` of many resources in ONE statement (a transaction Bundle's or an import
   * chunk's updates): rows are locked in key order, so two such transactions cannot deadlock
   * on each other, and later `readForUpdate` calls of these keys need no round trip.
   */
  async prefetchForUpdate(keys: ReadonlyArray<{ resourceType: string; id: string }>): Promise<void> {
    const wanted = new Map<string, { resourceType: string; id: string }>();
    for (const k of keys) {
      const key = `${k.resourceType}/${k.id}`;
      if (!this.locked.has(key)) wanted.set(key, k);
    }
    if (wanted.size === 0) return;
    const trx = await this.executor();
    const t = activeWriteProfile ? stageStart() : 0;
    const list = [...wanted.values()];
    const result = await sql<VersionRow>`
      SELECT r.resource_type, r.id, r.version_id::text AS version_id, r.last_updated, r.deleted, r.content::text AS json
      FROM resource r
      JOIN unnest(${list.map((k) => k.resourceType)}::text[], ${list.map((k) => k.id)}::text[]) AS k(t, i)
        ON r.resource_type = k.t AND r.id = k.i
      ORDER BY r.resource_type, r.id
      FOR UPDATE OF r`.execute(trx);
    activeWriteProfile?.add('read', t);
    for (const key of wanted.keys()) this.locked.set(key, null);
    for (const row of result.rows) this.locked.set(`${row.resource_type}/${row.id}`, toStored(row));
  }

  /**
   * Serialises transactions that decide on the same condition (conditional create / update
   * of one query), so two racing requests cannot both see "no match" and both create.
   */
  async lockCondition(key: string): Promise<void> {
    await this.lockConditions([key]);
  }

  /** `lockCondition` for many keys in one statement, taken in a fixed order (no deadlocks between two such calls). */
  async lockConditions(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const trx = await this.executor();
    const t = activeWriteProfile ? stageStart() : 0;
    if (keys.length === 1) {
      await sql`SELECT pg_advisory_xact_lock(hashtextextended(${keys[0]}, 0))`.execute(trx);
    } else {
      await sql`
        SELECT pg_advisory_xact_lock(h) FROM (
          SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(${[...keys]}::text[]) AS k ORDER BY h) s`.execute(trx);
    }
    activeWriteProfile?.add('read', t);
  }

  /** Stores a new resource under a fresh server id (or `id`, for update-as-create). */
  async create(resource: Resource, method: WriteMethod = 'POST', id: string = newResourceId(), previous?: StoredVersion): Promise<ResourceChange> {
    const versionId = previous ? String(Number(previous.versionId) + 1) : '1';
    return this.write(method, resource, id, versionId, previous);
  }

  /**
   * update by id (update-as-create when there is no current version) as the whole of a
   * transaction, WITHOUT reading the current row first: one round trip instead of four
   * (BEGIN, SELECT … FOR UPDATE, write, COMMIT). The write statement takes the version after
   * the current row and writes it into meta.versionId; a concurrent writer that slipped in
   * between makes it fail with a duplicate history key, and the re-run (attempt > 1) takes
   * the locking path, so racing updates of one resource always make progress.
   * `change.previous` tells what was replaced (versionId, lastUpdated, deleted; json null).
   * The write is stored before this returns; the transaction takes no further writes.
   */
  async put(resource: Resource, method: WriteMethod = 'PUT'): Promise<ResourceChange> {
    const id = resource.id;
    if (id === undefined) throw new FhirError('fault', 'put needs a resource with an id');
    if (this.begun || this.attempt > 1 || this.pending.length > 0) {
      const current = await this.readForUpdate(resource.resourceType, id);
      return !current || current.deleted ? this.create(resource, method, id, current) : this.update(resource, current, method);
    }
    // '1' until the statement tells: right for update-as-create, fixed below otherwise.
    const change = await this.write(method, resource, id, '1', undefined, true);
    await this.storeAlone();
    this.sealed = true;
    return change;
  }

  /** Stores `resource` as the next version after `current`. */
  async update(resource: Resource, current: StoredVersion, method: WriteMethod = 'PUT'): Promise<ResourceChange> {
    return this.write(method, resource, current.id, String(Number(current.versionId) + 1), current);
  }

  /**
   * `update` for writers that resend what may be the stored content (an HL7 v2 message sent
   * again): when the content after the before-write hooks (which may fill in server-assigned
   * data such as an accession number) equals `current` (ignoring meta.versionId and
   * lastUpdated), nothing is stored and undefined is returned. Plain FHIR PUTs keep making a
   * new version each (`update`). Hooks ran, so their own effects stay (e.g. a reserved number).
   */
  async updateIfChanged(resource: Resource, current: StoredVersion, method: WriteMethod = 'PUT'): Promise<ResourceChange | undefined> {
    if (current.deleted || current.json === null) return this.update(resource, current, method);
    return this.write(method, resource, current.id, String(Number(current.versionId) + 1), current, false, JSON.parse(current.json) as Resource);
  }

  async delete(current: StoredVersion): Promise<ResourceChange> {
    this.checkNotSealed();
    const change: ResourceChange = {
      method: 'DELETE',
      resourceType: current.resourceType,
      id: current.id,
      versionId: String(Number(current.versionId) + 1),
      lastUpdated: new Date().toISOString(),
      previous: current,
    };
    for (const hook of this.beforeWrite) {
      const pending = hook(this, change);
      if (pending) await pending;
    }
    this.locked.delete(`${change.resourceType}/${change.id}`);
    this.pending.push({ change, json: null, indexRows: new Map() });
    this.changes.push(change);
    return change;
  }

  private checkNotSealed(): void {
    if (this.sealed) throw new FhirError('fault', 'a transaction that stored a blind put takes no further writes');
  }

  private async write(method: WriteMethod, input: Resource, id: string, versionId: string, previous: StoredVersion | undefined, blind?: boolean): Promise<ResourceChange>;
  private async write(method: WriteMethod, input: Resource, id: string, versionId: string, previous: StoredVersion, blind: false, unlessSameAs: Resource): Promise<ResourceChange | undefined>;
  private async write(method: WriteMethod, input: Resource, id: string, versionId: string, previous: StoredVersion | undefined, blind = false, unlessSameAs?: Resource): Promise<ResourceChange | undefined> {
    this.checkNotSealed();
    const lastUpdated = new Date().toISOString();
    const resource: Resource = { ...input, id, meta: { ...input.meta, versionId, lastUpdated } };
    const change: ResourceChange = { method, resourceType: resource.resourceType, id, versionId, lastUpdated, resource, previous };
    const profile = activeWriteProfile;
    let t = profile ? stageStart() : 0;
    for (const hook of this.beforeWrite) {
      // Awaited only when asynchronous: validation is synchronous, and an await per hook per
      // resource lets other requests' work run in between for nothing.
      const pending = hook(this, change);
      if (pending) await pending;
    }
    if (profile) {
      profile.add('validate', t);
      t = stageStart();
    }
    const stored = change.resource;
    if (!stored || stored.id !== id || stored.resourceType !== input.resourceType) {
      throw new FhirError('fault', 'a before-write hook changed the identity of the resource');
    }
    if (unlessSameAs && sameVersionContent(unlessSameAs, stored)) return undefined;
    change.json = JSON.stringify(stored);
    if (profile) {
      profile.add('build', t);
      t = stageStart();
    }
    this.locked.delete(`${change.resourceType}/${id}`);
    this.pending.push({ change, json: change.json, indexRows: this.index.extract(stored), blind });
    if (profile) {
      profile.add('extract', t);
      profile.resources++;
    }
    this.changes.push(change);
    return change;
  }

  /** Writes everything pending, in as few statements as possible (`built`: their statements, when already made). */
  private async flush(built?: WriteStatement[]): Promise<void> {
    if (this.pending.length === 0) return;
    const profile = activeWriteProfile;
    let t = profile ? stageStart() : 0;
    const statements = built ?? writeStatements(this.index.tables, this.pending);
    this.pending = [];
    if (profile) {
      profile.add('build', t);
      t = stageStart();
    }
    if (statements.length > 1 && !this.begun) {
      await sql`BEGIN`.execute(this.connection);
      this.begun = true;
    }
    for (const statement of statements) {
      const result = await executePrepared(this.connection, this.index.tables, statement);
      if (statement.blind.length > 0) settleBlindWrites(statement.blind, result.rows);
    }
    if (profile) profile.add('sql', t);
  }

  /**
   * Writes everything pending as the whole of an autocommit transaction (nothing begun): as one
   * statement, which may be sent together with other transactions' (group commit,
   * write-combiner.ts); as several inside BEGIN when the writes need more than one.
   */
  private async storeAlone(): Promise<void> {
    const profile = activeWriteProfile;
    let t = profile ? stageStart() : 0;
    const statements = writeStatements(this.index.tables, this.pending);
    if (profile) profile.add('build', t);
    if (statements.length !== 1) return this.flush(statements);
    const statement = statements[0]!;
    const writes = this.pending;
    this.pending = [];
    t = profile ? stageStart() : 0;
    const rows = await this.store.combiner.run(this.connection, this.index.tables, writes, statement);
    if (statement.blind.length > 0) settleBlindWrites(statement.blind, rows);
    if (profile) profile.add('sql', t);
  }

  /** Plain reads (not locking) that see this transaction's own writes. */
  async read(resourceType: string, id: string): Promise<StoredVersion | undefined> {
    return this.store.read(resourceType, id, await this.executor());
  }

  /**
   * Flushes and commits; without BEGIN the single flush statement is its own transaction,
   * which may be sent together with other transactions' (group commit, write-combiner.ts).
   */
  async commit(): Promise<void> {
    // Work deferred to the end (side tables kept by hooks, one statement for all the writes):
    // it runs inside the transaction, after every pending write was flushed.
    if (this.finishing.length > 0) {
      const db = await this.executor();
      for (const action of this.finishing.splice(0)) await action(db);
    }
    if (!this.begun && this.pending.length > 0) await this.storeAlone();
    else await this.flush();
    if (this.begun) {
      const t = activeWriteProfile ? stageStart() : 0;
      await sql`COMMIT`.execute(this.connection);
      activeWriteProfile?.add('commit', t);
      this.begun = false;
    }
  }

  async rollback(): Promise<void> {
    this.pending = [];
    this.finishing.length = 0;
    if (!this.begun) return;
    this.begun = false;
    try {
      await sql`ROLLBACK`.execute(this.connection);
    } catch {
      // The connection may already be broken; the pool discards it.
    }
  }
}
