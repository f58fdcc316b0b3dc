import type { Communication, ContactPoint, Resource } from 'fhir/r4.js';
import { asSystem } from '../../subscriptions/write-context.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import type { StoredVersion } from '../../storage/types.js';
import { buildCommunication, type NotificationDraft } from './communications.js';
import type { NotificationChannel, NotificationConfig } from './config.js';
import { channelsFor, preferencesOf, type Person } from './preferences.js';
import { audienceOf, nameOf, readResource, type RecipientDeps } from './recipients.js';
import { renderTemplate, type NotificationCatalog, type NotificationEvent } from './rules.js';

export interface PlannerDeps extends Omit<RecipientDeps, 'rules' | 'timeZone'> {
  store: ResourceStore;
  catalog: NotificationCatalog;
  config: NotificationConfig;
  /** Why a channel cannot send in this deployment (SMTP not configured…); undefined: it can. */
  channelUnavailable(channel: NotificationChannel): string | undefined;
}

export interface PlannedSend {
  id: string;
  urgent: boolean;
}

export interface EventOccurrence {
  event: NotificationEvent;
  /** the version that raised it */
  focus: Resource & { id: string };
  /** `Type/id/_history/v` */
  focusReference: string;
  /** the reminder's CommunicationRequest */
  basedOn?: string;
  /** the event key (default `<focusReference>#<event>`): one set of Communications per key */
  key?: string;
}

/**
 * Turns one event into its Communications (one per recipient and channel, see
 * communications.ts), written in one transaction, and returns those that still need a send.
 * Running it again for the same event makes nothing new: ids come from the event key.
 */
export class NotificationPlanner {
  constructor(private readonly deps: PlannerDeps) {}

  async plan(occurrence: EventOccurrence): Promise<PlannedSend[]> {
    const { catalog, config } = this.deps;
    const { rules } = catalog;
    const { event, focus, focusReference } = occurrence;
    const codes = rules.events[event];
    // One event reads the same people more than once (the patient for its name, then as a
    // recipient; a practitioner behind several orders): each is read once per plan.
    const reads = new Map<string, Promise<StoredVersion | undefined>>();
    const store: Pick<ResourceStore, 'read' | 'readMany'> = {
      read: (type, id) => {
        const key = `${type}/${id}`;
        let found = reads.get(key);
        if (!found) reads.set(key, (found = this.deps.store.read(type, id)));
        return found;
      },
      readMany: (type, ids) => this.deps.store.readMany(type, ids),
    };
    const audience = await audienceOf(event, focus, { ...this.deps, store, rules, timeZone: config.timeZone });
    const key = occurrence.key ?? `${focusReference}#${event}`;
    const urgent = rules.urgentEvents.includes(event);
    const drafts: NotificationDraft[] = [];
    const common = { key, about: focusReference, urgent, ...(audience.patient ? { patient: audience.patient } : {}), ...(occurrence.basedOn ? { basedOn: occurrence.basedOn } : {}) };
    for (const recipient of audience.recipients) {
      const type = codes[recipient.audience];
      if (!type) continue;
      const [rtype, rid] = recipient.reference.split('/') as [string, string];
      const person = await readResource<Person>(store, rtype, rid);
      if (!person) continue;
      const prefs = preferencesOf(person, rules, config);
      const explicit = (person.extension ?? []).some((e) => e.url === rules.preferencesExtension && (e.extension ?? []).some((x) => x.url === 'channel'));
      const values = { ...audience.values, recipient_name: nameOf(person), hospital_name: config.hospitalName };
      for (const channel of channelsFor(prefs, event, recipient.audience, rules, type)) {
        const template = catalog.templates.get(type)!.templates[channel];
        const text = template[prefs.language] ?? template[config.defaultLanguage] ?? template.en!;
        const address: ContactPoint | undefined = channel === 'email' && prefs.email ? { system: 'email', value: prefs.email } : channel === 'sms' && prefs.sms ? { system: 'sms', value: prefs.sms } : undefined;
        let impossible = this.deps.channelUnavailable(channel);
        if (!impossible && channel !== 'in-app' && !address) impossible = `${recipient.reference} has no ${channel === 'email' ? 'email address' : 'SMS number'} in telecom`;
        // A default channel the person cannot use is left out; a channel they chose (or a
        // mandatory one) that fails is recorded, so admins see why nothing arrived.
        if (impossible && !explicit && !urgent) continue;
        drafts.push({
          ...common,
          type,
          channel,
          recipient: recipient.reference,
          body: renderTemplate(text.body, values),
          ...(text.subject ? { subject: renderTemplate(text.subject, values) } : {}),
          ...(address ? { address } : {}),
          ...(impossible ? { impossible } : {}),
        });
      }
    }
    if (urgent && drafts.length === 0) {
      // A critical result nobody can be told of is itself visible as a failed notification.
      drafts.push({ ...common, type: codes.practitioner ?? event, channel: 'in-app', recipient: '', body: `${event} for ${focusReference}: no clinician to notify (no ordering ServiceRequest.requester, no generalPractitioner)`, impossible: 'no clinician to notify' });
    }
    return this.write(drafts);
  }

  private async write(drafts: NotificationDraft[]): Promise<PlannedSend[]> {
    if (drafts.length === 0) return [];
    const now = new Date().toISOString();
    const resources = drafts.map((d) => {
      const { recipient, ...c } = buildCommunication(d, this.deps.catalog.rules, now);
      return d.recipient ? { ...c, recipient } : c;
    });
    // Without locks: the ids come from the event key, so when another run of the same event
    // (a retried job) writes one of these Communications first, this run's insert fails on the
    // key and the store runs it again, which then finds it written. Two statements (read, one
    // write statement as its own transaction) instead of four (BEGIN, SELECT … FOR UPDATE,
    // write, COMMIT); a run finding everything written (a repeated event) sends one.
    return asSystem(() =>
      this.deps.store.transaction(async (tx) => {
        // Through the transaction's connection (no BEGIN while nothing is pending): the embedded
        // database has one connection, which this transaction holds.
        const found = new Map((await this.deps.store.readMany('Communication', resources.map((r) => r.id), await tx.reader())).map((v) => [v.id, v]));
        const sends: PlannedSend[] = [];
        for (const resource of resources) {
          const existing = found.get(resource.id);
          let status = resource.status;
          if (existing?.json && !existing.deleted) status = (JSON.parse(existing.json) as Communication).status;
          else await tx.create(resource, 'PUT', resource.id, existing);
          if (status === 'in-progress') sends.push({ id: resource.id, urgent: resource.priority === 'stat' });
        }
        return sends;
      }),
    );
  }
}
