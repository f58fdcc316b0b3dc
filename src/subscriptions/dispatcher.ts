import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Resource, Subscription } from 'fhir/r4.js';
import { parseScopes } from '../auth/scopes.js';
import { accessFilterFor, type AccessFilter } from '../search/sql/access.js';
import type { SearchService } from '../search/search-service.js';
import type { HistoryKey, NewDelivery, SubscriptionStore } from '../storage/subscription-store.js';
import type { ResourceChange } from '../storage/types.js';
import { splitCriteria, type Criteria } from './criteria.js';
import { ended } from './model.js';
import { criteriaNeedles, mayMatch } from './prefilter.js';
import { batchJobId, recoveryJobIds } from './delivery-job.js';
import { fhirPathPasses, heartbeatSeconds, isTopicCriteria, topicProblems, type TopicRegistry, type TopicTrigger } from './topics.js';
import type { SubscriptionStatusWriter } from './status.js';
import { detached } from './write-context.js';

/** The dispatcher lease: another process takes over this long after the leader stopped renewing it. */
const leaseMs = (pollMs: number) => Math.max(5_000, pollMs * 10);
/**
 * The leader renews its lease this often, not every round (a statement per round saved): far
 * inside the lease, and its writes (deliveries, cursor) are refused anyway once another process
 * has taken the lease (`addDeliveries` and `advance` check the leader).
 */
const renewEvery = (pollMs: number) => leaseMs(pollMs) / 5;
/** Versions read from resource_history per batch. */
const BATCH = 1000;
/** Batches per round before the lease is renewed. */
const MAX_BATCHES_PER_ROUND = 20;
/** How far back a transaction may have stamped its versions before it committed (see `lateScan`). */
export const OVERLAP_MS = 120_000;
const LATE_SCAN_EVERY_MS = 10_000;
/**
 * While writes stream in, most late commits are late by milliseconds (concurrent transactions
 * stamped just before the cursor moved): the last QUICK_OVERLAP_MS are read again this often,
 * so such versions are notified within a second rather than at the next full late scan.
 */
const QUICK_SCAN_EVERY_MS = 300;
const QUICK_OVERLAP_MS = 2_000;
/** Deliveries stored but not queued (a crash in between) or abandoned by a dead run are queued again this often. */
const RECOVER_EVERY_MS = 10_000;
const RELOAD_EVERY_MS = 60_000;
/** After a round that spent M ms matching, the next starts M × this later at the earliest. */
const MATCH_SPACING = 4;
/**
 * While versions keep coming (the last round found some), rounds start at most this often,
 * and never more often than every twice their own duration. A round costs a few statements
 * whatever its size (history read, contents, one delivery statement, a job's claim and
 * finish): spaced like this a stream of writes is dispatched in batches of ~BUSY_ROUND_MS of
 * writes instead of one round per few writes (bench: a round every ~10 ms with 2–5 versions
 * each, a fixed cost per round that cost more than the matching).
 */
const BUSY_ROUND_MS = 100;
/**
 * ...but at most this far: the spacing is measured in wall time, which a stream of writes in the
 * same process inflates many times over (the round's awaits queue behind the requests), so
 * uncapped it throttled dispatch to a fraction of the write rate (bench: ~100 versions/s).
 */
const MAX_ROUND_GAP_MS = 250;
/** Rounds woken by writes after a quiet spell are at least this far apart (each costs a few statements even when empty). */
const MIN_ROUND_GAP_MS = 10;
/** Ids per matching search (`_id=a,b,…`). */
const ID_CHUNK = 500;
/** After a round that found versions, the next looks again this soon (other processes' writes keep coming). */
const BUSY_POLL_MS = 100;
/** How often heartbeats are looked for. */
const HEARTBEAT_CHECK_MS = 1_000;

export interface DispatcherDeps {
  state: SubscriptionStore;
  search: Pick<SearchService, 'parse' | 'matchEach' | 'memoryMatcher'>;
  /** queues a delivery job (a row id or a batch job id) */
  enqueue(jobId: string): Promise<void>;
  /** subscription topics (conformance/subscription-topics) */
  topics: TopicRegistry;
  statusWriter: SubscriptionStatusWriter;
  fhirBase: string;
  pollMs: number;
  /** a delivery claimed longer ago than this was abandoned by a dead process */
  staleClaimMs: number;
  log: (message: string, error?: unknown) => void;
}

interface ActiveSubscription {
  id: string;
  criteria: Criteria;
  /** the subscriber's stored grant as a search access filter (undefined: sees everything) */
  access: AccessFilter | undefined;
  /** subscriptions sharing criteria and grant share one search per batch */
  groupKey: string;
  activatedAt: string;
  /** literal values a match must contain (see prefilter.ts); empty: search every change */
  needles: string[][];
  /** criteria and access judged in memory exactly as the search would (see search/memory-match.ts); else SQL */
  memory?: (resource: Resource) => boolean;
  /** topic-based: the trigger this entry stands for (a topic with triggers on n types gives n entries) */
  trigger?: TopicTrigger;
  channelType: string;
  /** the Subscription's current version (a handshake is sent once per activating version) */
  versionId: string;
  /** topic-based rest-hook with a heartbeat period, in seconds */
  heartbeatSeconds?: number;
}

const keyOf = (k: Pick<HistoryKey, 'resourceType' | 'id' | 'versionId'>) => `${k.resourceType}/${k.id}/${k.versionId}`;

/** Bucket sizes of the late scans' count check (see `unseenRanges`): multiples of SEEN_BUCKET_MS. */
const SEEN_BUCKET_MS = 100;
const QUICK_BUCKET_MS = 100;
const FULL_BUCKET_MS = 1_000;

/** Microseconds since the epoch of an ISO instant with 3 (toISOString) or 6 (the database's) fraction digits. */
function microsOf(iso: string): number {
  const fraction = /\.(\d+)Z$/.exec(iso)?.[1] ?? '';
  return Date.parse(`${iso.slice(0, 19)}Z`) * 1000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

function isoOfMicros(micros: number): string {
  return `${new Date(Math.floor(micros / 1_000_000) * 1000).toISOString().slice(0, 19)}.${String(micros % 1_000_000).padStart(6, '0')}Z`;
}

function minus(isoInstant: string, ms: number): string {
  return new Date(Date.parse(isoInstant) - ms).toISOString();
}

/**
 * Turns committed writes into deliveries. One process per database (the lease holder) reads
 * resource_history from a durable cursor, matches the versions against the active
 * Subscriptions and stores one delivery row per (subscription, version) — idempotent, so a
 * version read twice is still one event — then queues the rows and advances the cursor. A
 * crash anywhere loses nothing: the cursor only moves past versions whose deliveries are stored.
 *
 * Matching is the search engine's: per resource type in the batch and per distinct
 * (criteria, grant), one search `criteria&_id=<changed ids>` with the subscriber's access
 * filter, so a match equals what that subscriber would find by searching, and a resource it
 * may not read never matches. A delete is notified to the subscriptions that were notified of
 * an earlier version of the resource (the deleted content can no longer be searched).
 *
 * Versions are stamped before their transaction commits, so a slow transaction can commit
 * versions older than the cursor: every LATE_SCAN_EVERY_MS the last OVERLAP_MS before the
 * cursor are read again and versions not seen yet are dispatched.
 */
export class SubscriptionDispatcher {
  private readonly holder = randomUUID();
  private subs: ActiveSubscription[] = [];
  private subsDirty = true;
  /** versions dispatched within the overlap window, key → lastUpdated */
  private readonly seen = new Map<string, string>();
  /** how many of `seen` fall in each SEEN_BUCKET_MS time bucket (the late scans' check) */
  private readonly seenCounts = new Map<number, number>();
  private leader = false;
  private nextLeaseTry = 0;
  /** when the lease was last taken or renewed (see renewEvery) */
  private leasedAt = 0;
  /** the dispatch cursor as stored, while leading (only the leader moves it) */
  private position = '';
  private lastLateScan = 0;
  private lastRecover = 0;
  private lastLoad = 0;
  private lastHeartbeat = 0;
  private lastQuickScan = 0;
  /** when a round last read versions (quick late scans run while this is recent) */
  private lastWorkAt = 0;
  /** the last round read versions: look again soon (BUSY_POLL_MS) rather than at the next poll */
  private busy = false;
  private running: Promise<void> | undefined;
  private again = false;
  /** Matching time of the last round; the next round waits MATCH_SHARE times as long (see `poke`). */
  private matchMs = 0;
  private notBefore = 0;
  private delayed: NodeJS.Timeout | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: DispatcherDeps) {}

  start(): void {
    this.timer = setInterval(() => this.poke(), this.deps.pollMs);
    this.timer.unref();
    this.poke();
  }

  /** After-commit hook: writes of this process are dispatched at once, not at the next poll. */
  notify(changes: readonly ResourceChange[]): void {
    const subscriptionWritten = changes.some((c) => c.resourceType === 'Subscription');
    if (subscriptionWritten) this.subsDirty = true;
    // Nothing to match: the poll moves the cursor on; writes cost no dispatch round.
    else if (this.subs.length === 0) return;
    // A round is running (one more follows it) or is already set for its time: this write is
    // in it. Checked here, on every write, before leaving the request's context (not free).
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.delayed) return;
    // Not inside the request that committed: its context must not leak into the dispatch.
    detached(() => this.poke());
  }

  /** Resolves when no round is running (tests, bench). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Runs a round now and waits for it (tests, bench). */
  async flush(): Promise<void> {
    this.nextLeaseTry = 0;
    this.notBefore = 0;
    await this.idle();
    this.poke();
    await this.idle();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.delayed) clearTimeout(this.delayed);
    await this.idle();
    if (this.leader) await this.deps.state.releaseLease(this.holder).catch(() => undefined);
  }

  /**
   * Starts a round unless one runs (then one more follows it). Matching costs about the same
   * per round whatever the batch size (one search per criteria), so under a stream of writes
   * rounds are spaced to keep matching at most about 1/(1+MATCH_SPACING) of the time: the
   * batches grow instead of the cost. An idle server dispatches a write at once.
   */
  private poke(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    const wait = this.notBefore - Date.now();
    if (wait > 0) {
      this.delayed ??= setTimeout(() => {
        this.delayed = undefined;
        this.poke();
      }, wait);
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if (this.again) this.poke();
      else if (this.busy && !this.closed) {
        this.delayed ??= setTimeout(() => {
          this.delayed = undefined;
          this.poke();
        }, Math.max(BUSY_POLL_MS, this.notBefore - Date.now()));
        this.delayed.unref();
      }
    });
  }

  private async loop(): Promise<void> {
    this.again = false;
    this.busy = false;
    this.matchMs = 0;
    const started = Date.now();
    try {
      await this.round();
    } catch (e) {
      this.deps.log('subscription dispatch failed (retried at the next poll)', e);
    }
    // Spaced by the whole round (its statements and awaits, not only its matching): under a
    // stream of writes the next round waits as long as this one took, and at least until
    // BUSY_ROUND_MS after this one started, so batches grow instead of the rounds' count.
    const ended = Date.now();
    const took = ended - started;
    const gap = Math.max(MIN_ROUND_GAP_MS, this.matchMs * MATCH_SPACING, this.busy ? Math.max(took, BUSY_ROUND_MS - took) : 0);
    this.notBefore = ended + Math.min(MAX_ROUND_GAP_MS, gap);
  }

  /** Another process holds the lease now: stop dispatching until it could have run out. */
  private stepDown(now: number): void {
    this.leader = false;
    this.seen.clear();
    this.seenCounts.clear();
    this.nextLeaseTry = now + this.deps.pollMs;
  }

  private async round(): Promise<void> {
    const now = Date.now();
    if (!this.leader && now < this.nextLeaseTry) return;
    const { state } = this.deps;
    if (!this.leader || now - this.leasedAt >= renewEvery(this.deps.pollMs)) {
      const leased = await state.lease(this.holder, leaseMs(this.deps.pollMs));
      if (leased === undefined) {
        // Another process dispatches; try again when its lease could have run out.
        this.stepDown(now);
        return;
      }
      this.leasedAt = now;
      this.position = leased;
      if (!this.leader) {
        // New leader (or restart): what the previous one may have missed is in the overlap window.
        this.leader = true;
        this.lastLateScan = 0;
        this.lastRecover = 0;
        this.subsDirty = true;
      }
    }
    // Reloaded now and then too: end times pass without any write.
    if (this.subsDirty || now - this.lastLoad >= RELOAD_EVERY_MS) await this.loadSubscriptions();
    let position = this.position;
    for (let i = 0; i < MAX_BATCHES_PER_ROUND && !this.closed; i++) {
      // Without active Subscriptions only Subscription writes matter (one may activate).
      const keys = await state.historyAfter(position, BATCH, this.subs.length ? undefined : 'Subscription');
      if (keys.length === 0) {
        if (this.subs.length === 0) {
          const at = await state.now();
          if (!(await state.advance(this.holder, at))) return this.stepDown(now);
          position = this.position = at;
        }
        break;
      }
      this.busy = true;
      this.lastWorkAt = now;
      const fresh = keys.filter((k) => !this.seen.has(keyOf(k)));
      const last = keys[keys.length - 1]!.lastUpdated;
      // A full batch may end inside a group of versions with one timestamp (a big Bundle):
      // stop before that group so the next read takes all of it (what was seen is skipped).
      let before: string | undefined;
      if (keys.length === BATCH) for (let j = keys.length - 1; j >= 0 && before === undefined; j--) if (keys[j]!.lastUpdated < last) before = keys[j]!.lastUpdated;
      const next = before ?? last;
      // The deliveries and the cursor past them in one statement (or the cursor alone).
      const deliveries = fresh.length ? await this.dispatch(fresh) : [];
      const leading = deliveries.length ? await this.store(deliveries, next) : await state.advance(this.holder, next);
      if (!leading) return this.stepDown(now);
      this.markSeen(fresh);
      position = this.position = next;
      if (keys.length < BATCH) break;
      this.again = true;
    }
    if (now - this.lastLateScan >= LATE_SCAN_EVERY_MS) {
      this.lastLateScan = now;
      this.lastQuickScan = now;
      await this.lateScan(position, OVERLAP_MS);
    } else if (now - this.lastWorkAt <= QUICK_OVERLAP_MS && now - this.lastQuickScan >= QUICK_SCAN_EVERY_MS) {
      this.lastQuickScan = now;
      await this.lateScan(position, QUICK_OVERLAP_MS);
    }
    if (now - this.lastRecover >= RECOVER_EVERY_MS) {
      // At leader start every unclaimed pending delivery (a crash may have left them unqueued);
      // later only old ones. Queueing twice is harmless: a job id names its batch (or row), and runs claim the rows.
      const olderThan = this.lastRecover === 0 ? 0 : RECOVER_EVERY_MS;
      this.lastRecover = now;
      for (const jobId of recoveryJobIds(await state.unclaimed(olderThan, this.deps.staleClaimMs, 1000))) await this.enqueue(jobId);
    }
    if (now - this.lastHeartbeat >= HEARTBEAT_CHECK_MS) {
      this.lastHeartbeat = now;
      await this.heartbeats();
    }
  }

  private async lateScan(position: string, overlapMs: number): Promise<void> {
    const from = minus(position, overlapMs);
    // Only the full scan forgets: what it covers must stay known as seen.
    if (overlapMs >= OVERLAP_MS) {
      for (const [key, lastUpdated] of this.seen) {
        if (lastUpdated > from) continue;
        this.seen.delete(key);
        this.countSeen(lastUpdated, -1);
      }
    }
    const only = this.subs.length ? undefined : 'Subscription';
    const quick = overlapMs < OVERLAP_MS;
    // Without Subscriptions only Subscription versions are read (few): the counts, which are
    // of every type, cannot tell whether those were seen.
    const ranges = only ? [{ after: from, to: position }] : await this.unseenRanges(from, position, quick ? QUICK_BUCKET_MS : FULL_BUCKET_MS);
    for (const range of ranges) {
      let after = range.after;
      // A quick scan reads one batch per range at most: its cost stays bounded however fast
      // writes come (what it cannot cover is found by the full scan). It reads the NEWEST batch
      // of the range, where commits late by milliseconds are: read oldest first, a window holding
      // more than a batch (over ~500 writes/s) was re-read from its already-seen start and late
      // versions waited for the full scan (bench: deliveries ~10 s late, 150/s until delivered).
      for (let reads = 0; !quick || reads < 1; reads++) {
        const keys = await this.deps.state.historyBetween(after, range.to, BATCH, only, quick);
        // Oldest first again: events are numbered in the order they are stored.
        if (quick) keys.reverse();
        const missed = keys.filter((k) => !this.seen.has(keyOf(k)));
        if (missed.length) {
          const deliveries = await this.dispatch(missed);
          if (deliveries.length && !(await this.store(deliveries))) return this.stepDown(Date.now());
          this.markSeen(missed);
        }
        if (keys.length < BATCH) break;
        after = keys[keys.length - 1]!.lastUpdated;
      }
    }
  }

  /**
   * The parts of (from, to] that may hold versions not seen yet: per time bucket, the versions
   * stored (one count per bucket, from the index) against those seen. A bucket whose counts are
   * equal was seen whole — every seen key is a stored version (resource_history rows are never
   * removed), so equal counts leave no room for an unseen one — and is not read again. The two
   * buckets cut by the window's ends are always read (their counts cover more than the window).
   * Reading every key of the window again instead cost ~5–12 history rows per write for about
   * one late version per hundred writes (bench: 300 writes/s, 10 Subscriptions).
   */
  private async unseenRanges(from: string, to: string, bucketMs: number): Promise<Array<{ after: string; to: string }>> {
    const stored = await this.deps.state.historyCounts(from, to, bucketMs);
    const fromMicros = microsOf(from);
    const toMicros = microsOf(to);
    const first = Math.floor(fromMicros / (1000 * bucketMs));
    const last = Math.floor(toMicros / (1000 * bucketMs));
    const seen = new Map<number, number>();
    const per = bucketMs / SEEN_BUCKET_MS;
    for (const [b, n] of this.seenCounts) {
      const bucket = Math.floor(b / per);
      if (bucket >= first && bucket <= last) seen.set(bucket, (seen.get(bucket) ?? 0) + n);
    }
    const unseen = [...stored].filter(([b, n]) => b === first || b === last || seen.get(b) !== n).map(([b]) => b).sort((x, y) => x - y);
    const ranges: Array<{ after: string; to: string }> = [];
    let start: number | undefined;
    for (let i = 0; i < unseen.length; i++) {
      const b = unseen[i]!;
      start ??= b;
      if (unseen[i + 1] === b + 1) continue;
      // Bucket b holds [b·size, (b+1)·size) ms; as (after, to]: one microsecond before each end.
      const after = Math.max(fromMicros, start * bucketMs * 1000 - 1);
      const end = Math.min(toMicros, (b + 1) * bucketMs * 1000 - 1);
      ranges.push({ after: isoOfMicros(after), to: isoOfMicros(end) });
      start = undefined;
    }
    return ranges;
  }

  /** Keeps the seen counts per SEEN_BUCKET_MS (see `unseenRanges`) in step with `seen`. */
  private countSeen(lastUpdated: string, delta: number): void {
    const b = Math.floor(microsOf(lastUpdated) / (1000 * SEEN_BUCKET_MS));
    const n = (this.seenCounts.get(b) ?? 0) + delta;
    if (n === 0) this.seenCounts.delete(b);
    else this.seenCounts.set(b, n);
  }

  /**
   * The deliveries `keys` make (stored by the caller). The keys become `seen` only once those
   * are stored (`markSeen`): a round that fails before reads them again instead of skipping them.
   */
  private async dispatch(changed: readonly HistoryKey[]): Promise<NewDelivery[]> {
    let keys = changed;
    if (keys.some((k) => k.resourceType === 'Subscription')) await this.loadSubscriptions();
    if (this.subs.length === 0) return [];
    // A version older than every activation of its type's Subscriptions makes no event (matches
    // and deletes both skip it): neither its content nor its earlier deliveries are read. Such are
    // the writes of a spell without Subscriptions, which the late scans find unseen once one is active.
    const since = new Map<string, string>();
    for (const s of this.subs) {
      const t = s.criteria.resourceType;
      const at = since.get(t);
      if (at === undefined || s.activatedAt < at) since.set(t, s.activatedAt);
    }
    keys = keys.filter((k) => k.resourceType === 'Subscription' || (since.has(k.resourceType) && k.lastUpdated >= since.get(k.resourceType)!));
    const t0 = performance.now();
    const deliveries = [...this.handshakes(keys), ...(await this.matches(keys.filter((k) => !k.deleted))), ...(await this.deletes(keys.filter((k) => k.deleted)))];
    this.matchMs += performance.now() - t0;
    return deliveries;
  }

  private markSeen(keys: readonly HistoryKey[]): void {
    for (const k of keys) {
      const key = keyOf(k);
      if (!this.seen.has(key)) this.countSeen(k.lastUpdated, 1);
      this.seen.set(key, k.lastUpdated);
    }
  }

  /** Stores deliveries (and moves the cursor to `advanceTo`, when given) and queues their jobs; false: not the leader any more. */
  private async store(deliveries: readonly NewDelivery[], advanceTo?: string): Promise<boolean> {
    const { batches, leading } = await this.deps.state.addDeliveries(deliveries, this.holder, advanceTo);
    await Promise.all(batches.map((b) => this.enqueue(batchJobId(b.batchId))));
    return leading;
  }

  /**
   * Topic-based rest-hook Subscriptions get a handshake when a version activating them is
   * dispatched (the API stores every Subscription write with status requested/active as a new
   * activation). Keyed by that version: dispatching it twice is one handshake.
   */
  private handshakes(keys: readonly HistoryKey[]): NewDelivery[] {
    const out: NewDelivery[] = [];
    for (const k of keys) {
      if (k.resourceType !== 'Subscription' || k.deleted) continue;
      const s = this.subs.find((x) => x.id === k.id && x.trigger !== undefined);
      if (!s || s.versionId !== k.versionId || s.channelType !== 'rest-hook') continue;
      out.push({ subscriptionId: s.id, resourceType: 'Subscription', resourceId: s.id, versionId: k.versionId, action: 'update', committedAt: k.lastUpdated, kind: 'handshake' });
    }
    return out;
  }

  /** Heartbeats for topic-based rest-hook Subscriptions that were sent nothing for their period. */
  private async heartbeats(): Promise<void> {
    const periods = new Map<string, number>();
    for (const s of this.subs) if (s.heartbeatSeconds !== undefined) periods.set(s.id, s.heartbeatSeconds);
    if (periods.size === 0) return;
    const due = await this.deps.state.dueHeartbeats(periods);
    if (due.length === 0) return;
    const at = new Date().toISOString();
    // Negative "versions" keep heartbeat rows apart from events and handshakes under the unique key.
    const stamp = String(-Date.now());
    if (!this.leader) return;
    await this.store(due.map((id) => ({ subscriptionId: id, resourceType: 'Subscription', resourceId: id, versionId: stamp, action: 'update', committedAt: at, kind: 'heartbeat' })));
  }

  private async enqueue(id: string): Promise<void> {
    try {
      await this.deps.enqueue(id);
    } catch (e) {
      // Stored: the recovery sweep queues it again.
      this.deps.log('queueing a subscription delivery failed', e);
    }
  }

  /** Current versions matching each active Subscription's criteria, as its subscriber may see them. */
  private async matches(keys: readonly HistoryKey[]): Promise<NewDelivery[]> {
    const out: NewDelivery[] = [];
    /** topic matches whose FHIRPath criteria still need checking on the version and the one before */
    const pending: Array<{ delivery: NewDelivery; fhirPath: string }> = [];
    const byType = new Map<string, Map<string, HistoryKey[]>>();
    for (const k of keys) {
      let ids = byType.get(k.resourceType);
      if (!ids) byType.set(k.resourceType, (ids = new Map()));
      ids.set(k.id, [...(ids.get(k.id) ?? []), k]);
    }
    for (const [type, versionsById] of byType) {
      const groups = new Map<string, ActiveSubscription[]>();
      for (const s of this.subs) {
        if (s.criteria.resourceType !== type) continue;
        groups.set(s.groupKey, [...(groups.get(s.groupKey) ?? []), s]);
      }
      if (groups.size === 0) continue;
      const allIds = [...versionsById.keys()];
      const emit = (group: ActiveSubscription[], matched: ReadonlyArray<{ id: string; versionId: string }>) => {
        for (const m of matched) {
          // The match is on the current version: an older version of the batch is superseded.
          const version = versionsById.get(m.id)?.find((k) => k.versionId === m.versionId);
          if (!version) continue;
          const action = version.versionId === '1' ? 'create' : 'update';
          for (const s of group) {
            if (version.lastUpdated < s.activatedAt) continue;
            if (s.trigger && !s.trigger.interactions.has(action)) continue;
            const delivery: NewDelivery = { subscriptionId: s.id, resourceType: type, resourceId: version.id, versionId: version.versionId, action, committedAt: version.lastUpdated };
            if (s.trigger?.fhirPath) pending.push({ delivery, fhirPath: s.trigger.fhirPath });
            else out.push(delivery);
          }
        }
      };
      // Current content, read once per type and batch when some criteria are judged in memory or pre-checked.
      const list = [...groups.values()];
      const json = list.some((g) => g[0]!.memory || g[0]!.needles.length > 0) ? await this.deps.state.contents(type, allIds) : undefined;
      let docs: Map<string, Resource> | undefined;
      let texts: Map<string, string> | undefined;
      const bySql: ActiveSubscription[][] = [];
      const candidates = new Set<string>();
      for (const group of list) {
        const { memory, needles } = group[0]!;
        if (memory && json) {
          docs ??= new Map([...json].map(([id, text]) => [id, JSON.parse(text) as Resource]));
          const matched: Array<{ id: string; versionId: string }> = [];
          for (const [id, doc] of docs) if (memory(doc)) matched.push({ id, versionId: doc.meta?.versionId ?? '' });
          emit(group, matched);
          continue;
        }
        if (needles.length && json) texts ??= new Map([...json].map(([id, text]) => [id, text.toLowerCase()]));
        const ids = needles.length && texts ? allIds.filter((id) => mayMatch(texts!.get(id) ?? '', needles)) : allIds;
        if (ids.length === 0) continue;
        bySql.push(group);
        for (const id of ids) candidates.add(id);
      }
      if (bySql.length === 0) continue;
      // The rest: every criteria of the type in one statement per chunk of ids (the search engine's SQL).
      const ids = [...candidates];
      const failed = new Set<number>();
      for (let i = 0; i < ids.length; i += ID_CHUNK) {
        const chunk = ids.slice(i, i + ID_CHUNK);
        const results = await this.deps.search.matchEach(
          type,
          chunk,
          bySql.map((g) => ({ params: g[0]!.criteria.params, accessFilter: g[0]!.access })),
          this.deps.fhirBase,
        );
        for (const [g, result] of results.entries()) {
          if (failed.has(g)) continue;
          if (Array.isArray(result)) {
            emit(bySql[g]!, result);
            continue;
          }
          // A search the engine refuses (a parameter removed since, a value it no longer
          // accepts) would fail every round for everyone: those Subscriptions go to error.
          // Anything else (the database) fails the round, which is retried.
          failed.add(g);
          for (const s of bySql[g]!) await this.deps.statusWriter.setError(s.id, `its criteria cannot be searched: ${result.message}`);
          this.subsDirty = true;
        }
      }
    }
    if (pending.length > 0) {
      // %current is the matched version, %previous the one before it (absent on create or after a delete).
      const jsons = await this.deps.state.versionPairs(pending.map((p) => ({ resourceType: p.delivery.resourceType, id: p.delivery.resourceId, versionId: p.delivery.versionId })));
      const parsed = new Map<string, unknown>();
      const get = (type: string, id: string, version: number): unknown => {
        const key = `${type}/${id}/${version}`;
        if (!parsed.has(key)) parsed.set(key, jsons.has(key) ? JSON.parse(jsons.get(key)!) : undefined);
        return parsed.get(key);
      };
      for (const p of pending) {
        const d = p.delivery;
        const current = get(d.resourceType, d.resourceId, Number(d.versionId));
        const previous = get(d.resourceType, d.resourceId, Number(d.versionId) - 1);
        try {
          if (current !== undefined && fhirPathPasses(p.fhirPath, current, previous)) out.push(d);
        } catch (e) {
          // A run-time FHIRPath error (a topic's expression meeting unexpected data): no event.
          this.deps.log(`subscription topic FHIRPath failed on ${d.resourceType}/${d.resourceId}`, e);
        }
      }
    }
    return out;
  }

  private async deletes(keys: readonly HistoryKey[]): Promise<NewDelivery[]> {
    if (keys.length === 0) return [];
    // A topic-based Subscription has one entry per trigger type: look them up by id and type.
    const active = new Map(this.subs.map((s) => [`${s.id} ${s.criteria.resourceType}`, s]));
    const notified = await this.deps.state.notifiedBefore(keys);
    const out: NewDelivery[] = [];
    for (const k of keys) {
      for (const subscriptionId of notified.get(`${k.resourceType}/${k.id}`) ?? []) {
        const s = active.get(`${subscriptionId} ${k.resourceType}`);
        if (!s || k.lastUpdated < s.activatedAt) continue;
        if (s.trigger && (!s.trigger.interactions.has('delete') || !s.trigger.deletePasses)) continue;
        out.push({ subscriptionId, resourceType: k.resourceType, resourceId: k.id, versionId: k.versionId, action: 'delete', committedAt: k.lastUpdated });
      }
    }
    return out;
  }

  private needles(criteria: Criteria): string[][] {
    try {
      return criteriaNeedles(this.deps.search.parse({ resourceType: criteria.resourceType, params: criteria.params, strict: true, baseUrl: this.deps.fhirBase }).filters);
    } catch {
      // Criteria that no longer parse (a SearchParameter removed) simply match nothing.
      return [];
    }
  }

  private memory(criteria: Criteria, access: AccessFilter | undefined): Pick<ActiveSubscription, 'memory'> {
    try {
      const memory = this.deps.search.memoryMatcher(criteria.resourceType, criteria.params, access, this.deps.fhirBase);
      return memory ? { memory } : {};
    } catch {
      // Criteria that no longer parse: the SQL path reports them (the Subscription goes to error).
      return {};
    }
  }

  private async loadSubscriptions(): Promise<void> {
    this.subsDirty = false;
    this.lastLoad = Date.now();
    const subs: ActiveSubscription[] = [];
    for (const row of await this.deps.state.active()) {
      const sub = JSON.parse(row.json) as Subscription;
      if (ended(sub)) {
        await this.deps.statusWriter.setOff(row.id, 'the Subscription reached its end time');
        continue;
      }
      if (!row.grant || !row.activatedAt || !sub.criteria) {
        // Not written through the API (an import, say): nobody's grant limits what it may carry.
        await this.deps.statusWriter.setError(row.id, 'no client grant recorded for this Subscription: write it again through the API with a token');
        continue;
      }
      const grant = row.grant;
      const access = accessFilterFor({ scopes: parseScopes(grant.scope), patient: grant.patient, kind: grant.kind, role: grant.role });
      const common = { id: row.id, access, activatedAt: row.activatedAt, channelType: sub.channel.type, versionId: sub.meta?.versionId ?? '' };
      if (isTopicCriteria(sub.criteria)) {
        // Checked again: the topic files may have changed since the Subscription was written.
        const checked = topicProblems(sub, this.deps.topics, { search: this.deps.search, isResourceType: () => true, baseUrl: this.deps.fhirBase });
        if (!checked.selection) {
          await this.deps.statusWriter.setError(row.id, `topic no longer offered as subscribed: ${checked.issues.map((i) => i.diagnostics).join('; ')}`);
          continue;
        }
        const { topic, filters } = checked.selection;
        const heartbeat = sub.channel.type === 'rest-hook' ? heartbeatSeconds(sub) : undefined;
        for (const trigger of topic.triggers) {
          const params: [string, string][] = [...trigger.current, ...(filters.get(trigger.resourceType) ?? [])];
          const criteria = splitCriteria(`${trigger.resourceType}?${new URLSearchParams(params).toString()}`);
          const entry: ActiveSubscription = { ...common, criteria, trigger, needles: this.needles(criteria), ...this.memory(criteria, access), groupKey: `${topic.url}\n${topic.triggers.indexOf(trigger)}\n${criteria.key}\n${JSON.stringify(access ?? null)}` };
          if (heartbeat !== undefined) entry.heartbeatSeconds = heartbeat;
          subs.push(entry);
        }
        continue;
      }
      const criteria = splitCriteria(sub.criteria);
      subs.push({ ...common, criteria, needles: this.needles(criteria), ...this.memory(criteria, access), groupKey: `${criteria.key}\n${JSON.stringify(access ?? null)}` });
    }
    this.subs = subs;
  }
}
