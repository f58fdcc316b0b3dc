import { join, resolve } from 'node:path';
import type { Bundle, Resource } from 'fhir/r4.js';
import type { Config } from '../../config/config.js';
import type { JobRunner, QueueDefinition } from '../../jobs/types.js';
import type { SearchInput } from '../../search/search-service.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import type { ResourceChange } from '../../storage/types.js';
import type { ChannelRegistry } from '../../subscriptions/channels/registry.js';
import { asSystem, detached } from '../../subscriptions/write-context.js';
import { COMMUNICATION_CATEGORY } from './communications.js';
import type { NotificationChannel } from './config.js';
import { detectEvents, mayNotify, WATCHED_TYPES } from './events.js';
import { NotificationPlanner, type PlannedSend } from './planner.js';
import { REMINDER_CATEGORY, ReminderScheduler } from './reminders.js';
import { loadNotificationCatalog, type NotificationCatalog } from './rules.js';
import { NotificationSender } from './sender.js';

/** Queues of hospital notifications (job data: ids only, as every queue). */
export const EVENT_QUEUE = 'notification-event';
export const SEND_QUEUE = 'notification-send';
/** Urgent sends (CRITICAL_LAB_RESULT) have a queue of their own: never behind a backlog of reminders. */
export const URGENT_QUEUE = 'notification-urgent';
export const REMINDER_QUEUE = 'notification-reminder';
/** Event job id suffix: the result is critical whatever its interpretation says. */
const CRITICAL_SUFFIX = 'critical';
/** Unfinished work the in-process runner picks up again per sweep (BullMQ keeps its own). */
const RECOVERY_BATCH = 1000;
/** New critical Observations remembered for `criticalResult` (announced right after their commit). */
const MAX_REMEMBERED_CRITICAL = 10_000;

export interface NotificationDeps {
  store: ResourceStore;
  search: { search(input: SearchInput): Promise<Bundle> };
  fhirBase: string;
  config: Config;
  /** the subscription channel senders of this process (email, rest-hook) */
  channels: ChannelRegistry;
  /** the repository root (conformance/notifications/ is read from it); default: found from this file */
  root?: string;
  log: (message: string, error?: unknown) => void;
}

export interface NotificationComponents {
  catalog: NotificationCatalog;
  queues: QueueDefinition[];
  /** Derives notifications from the store's committed writes into `runner`'s queues. */
  start(runner: JobRunner): void;
  /**
   * A critical result found outside the Observation's interpretation (HL7 v2: a value crossing
   * conformance/hl7v2/critical-limits.json, Hl7Ingest.onCriticalResult): `Observation/id/_history/v`.
   */
  criticalResult(observation: string): Promise<void>;
  close(): void;
}

/**
 * Hospital notifications (issue 11 §4; docs in the README "Notifications"): committed writes →
 * events (events.ts) → Communications per recipient and channel (planner.ts) → sends
 * (sender.ts), reminders as delayed jobs (reminders.ts). Built before the job runner (which
 * needs the queues), started after it; the same in `npm start` and `npm run worker`.
 */
export function createNotifications(deps: NotificationDeps): NotificationComponents {
  const settings = deps.config.notifications;
  const root = deps.root ?? resolve(import.meta.dirname, import.meta.dirname.includes(join('dist', 'src')) ? '../../../..' : '../../..');
  const catalog = loadNotificationCatalog(join(root, 'conformance', 'notifications'));
  const { rules } = catalog;
  const unavailable = (channel: NotificationChannel): string | undefined => {
    if (channel === 'email' && !deps.channels.get('email')) return 'email is not configured (SMTP_URL or SMTP_HOST)';
    if (channel === 'sms' && !settings.smsWebhookUrl) return 'SMS is not configured (NOTIFICATION_SMS_WEBHOOK_URL)';
    return undefined;
  };
  const planner = new NotificationPlanner({ store: deps.store, search: deps.search, fhirBase: deps.fhirBase, catalog, config: settings, channelUnavailable: unavailable });
  const reminders = new ReminderScheduler({ store: deps.store, config: settings, rules, planner });
  const sender = new NotificationSender({ store: deps.store, channels: deps.channels, config: settings, rules });
  let runner: JobRunner | undefined;
  let closed = false;
  /**
   * `Observation/id/_history/1` → its plain event job queued (true) or not (false). A new
   * Observation whose interpretation is critical already makes CRITICAL_LAB_RESULT through its
   * plain job (no earlier version: the transition holds), the same event with the same key as
   * the forced job `criticalResult` would queue: that second job read the version, the people
   * and opened a transaction only to find the Communications written (HL7 v2: about one per
   * message). So it is left out when the plain job is known to be queued.
   */
  const queuedCritical = new Map<string, Promise<boolean>>();

  const enqueueSends = async (sends: PlannedSend[]) => {
    for (const s of sends) await runner!.enqueue(s.urgent ? URGENT_QUEUE : SEND_QUEUE, { jobId: s.id });
  };
  const ids = async (resourceType: string, params: [string, string][]) => {
    const bundle = await deps.search.search({ resourceType, params: [...params, ['_count', String(RECOVERY_BATCH)]], baseUrl: deps.fhirBase });
    return (bundle.entry ?? []).flatMap((e) => (e.resource?.id ? [{ id: e.resource.id, versionId: e.resource.meta?.versionId ?? '1' }] : []));
  };
  const inProgress = async () => (!settings.enabled ? [] : await ids('Communication', [['category', `${COMMUNICATION_CATEGORY}|notification`], ['status', 'in-progress']])).map((r) => ({ jobId: r.id }));

  /** One committed version: its events, their notifications, the appointment's reminder. */
  const processChange = (jobId: string) =>
    asSystem(async () => {
      const [type, id, version, forced] = jobId.split('_') as [string, string, string, string?];
      const now = await deps.store.vread(type, id, version);
      const before = Number(version) > 1 ? await deps.store.vread(type, id, String(Number(version) - 1)) : undefined;
      const current = now?.json && !now.deleted ? (JSON.parse(now.json) as Resource & { id: string }) : undefined;
      const previous = before?.json && !before.deleted ? (JSON.parse(before.json) as Resource) : undefined;
      const detected = forced === CRITICAL_SUFFIX && current ? { events: ['CRITICAL_LAB_RESULT' as const] } : detectEvents(current, previous, rules);
      for (const event of detected.events) {
        await enqueueSends(await planner.plan({ event, focus: current!, focusReference: `${type}/${id}/_history/${version}` }));
      }
      if (detected.reminder) {
        const job = await reminders.sync(id);
        if (job) await runner!.enqueue(REMINDER_QUEUE, { jobId: job });
      }
    });

  const queues: QueueDefinition[] = [
    {
      name: EVENT_QUEUE,
      // Queued after commit, with nothing to recover it from: held in the database while Redis is away.
      outbox: true,
      attempts: 3,
      backoffMs: settings.backoffMs,
      concurrency: 4,
      handler: (payload) => processChange(payload.jobId),
      onGiveUp: async (payload, error) => deps.log(`notification event ${payload.jobId} given up`, error),
    },
    ...[SEND_QUEUE, URGENT_QUEUE].map(
      (name): QueueDefinition => ({
        name,
        attempts: settings.attempts,
        backoffMs: settings.backoffMs,
        // Sends wait on SMTP servers and gateways, not on this machine.
        concurrency: name === URGENT_QUEUE ? 4 : 8,
        handler: (payload, ctx) => sender.send(payload.jobId, ctx),
        onGiveUp: (payload, error) => sender.giveUp(payload.jobId, error),
        // Urgent and routine sends are told apart by priority; either queue may recover either.
        ...(name === SEND_QUEUE ? { recoverable: inProgress } : {}),
      }),
    ),
    {
      name: REMINDER_QUEUE,
      attempts: 3,
      backoffMs: settings.backoffMs,
      concurrency: 4,
      handler: async (payload) => enqueueSends(await reminders.fire(payload.jobId)),
      onGiveUp: async (payload, error) => deps.log(`appointment reminder ${payload.jobId} given up`, error),
      recoverable: async () =>
        (!settings.enabled ? [] : await ids('CommunicationRequest', [['category', `${COMMUNICATION_CATEGORY}|${REMINDER_CATEGORY}`], ['status', 'active']])).map((r) => ({ jobId: `${r.id}_${r.versionId}` })),
    },
  ];

  return {
    catalog,
    queues,
    start(r) {
      runner = r;
      if (!settings.enabled) return;
      deps.store.onAfterCommit((changes: readonly ResourceChange[]) => {
        if (closed) return;
        for (const c of changes) {
          if (!WATCHED_TYPES.includes(c.resourceType) || !mayNotify(c.resourceType, c.resource, rules)) continue;
          // Not awaited: the client's write is done; the job carries the version, not the content.
          // Detached: the job must not run as the request that wrote (its token, its context).
          const queued = detached(() => r.enqueue(EVENT_QUEUE, { jobId: `${c.resourceType}_${c.id}_${c.versionId}` })).then(
            () => true,
            (e: unknown) => {
              deps.log(`notification event for ${c.resourceType}/${c.id} not queued`, e);
              return false;
            },
          );
          if (c.resourceType === 'Observation' && c.versionId === '1') {
            queuedCritical.set(`Observation/${c.id}/_history/1`, queued);
            if (queuedCritical.size > MAX_REMEMBERED_CRITICAL) queuedCritical.delete(queuedCritical.keys().next().value!);
          }
        }
      });
    },
    async criticalResult(observation) {
      const m = /^Observation\/([A-Za-z0-9\-.]{1,64})\/_history\/([0-9]{1,18})$/.exec(observation);
      if (!m || !runner || !settings.enabled || closed) return;
      const plain = queuedCritical.get(observation);
      if (plain) {
        queuedCritical.delete(observation);
        // Its plain job makes this very event (see queuedCritical); only if that job could not be queued is this one.
        if (await plain) return;
      }
      // Same event key as an interpretation-flagged one: a result both flagged and announced is notified once.
      await detached(() => runner!.enqueue(EVENT_QUEUE, { jobId: `Observation_${m[1]}_${m[2]}_${CRITICAL_SUFFIX}` }));
    },
    close() {
      closed = true;
    },
  };
}
