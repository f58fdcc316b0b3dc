import type { Communication, Subscription } from 'fhir/r4.js';
import { PermanentJobError, type JobContext } from '../../jobs/types.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import { EmailSender } from '../../subscriptions/channels/email.js';
import type { ChannelRegistry } from '../../subscriptions/channels/registry.js';
import { asSystem } from '../../subscriptions/write-context.js';
import { channelOf, failureReason } from './communications.js';
import type { NotificationConfig } from './config.js';
import { readResource } from './recipients.js';
import type { NotificationRules } from './rules.js';

export interface SenderDeps {
  store: ResourceStore;
  channels: ChannelRegistry;
  config: NotificationConfig;
  rules: NotificationRules;
}

const EMAIL = /^[^\s@<>,;"()\\[\]]+@[A-Za-z0-9.-]+$/;

/** What failed, without content: SMTP and HTTP errors name codes and hosts, not messages. */
function reason(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').slice(0, 500);
}

/**
 * One send of one notification Communication, through the subscription channel senders
 * (email: the SMTP EmailSender; sms: the rest-hook sender to NOTIFICATION_SMS_WEBHOOK_URL). The
 * Communication is the state: only an in-progress one is sent, so a repeated job sends nothing.
 * A failed attempt is noted on the Communication (note, with time) before the job runner
 * retries it with backoff; the last failure sets not-done with statusReason (`giveUp`).
 */
export class NotificationSender {
  constructor(private readonly deps: SenderDeps) {}

  send(id: string, ctx: JobContext): Promise<void> {
    return asSystem(async () => {
      const c = await readResource<Communication>(this.deps.store, 'Communication', id);
      if (!c || c.status !== 'in-progress') return;
      try {
        await this.deliver(c);
      } catch (e) {
        if (!(e instanceof PermanentJobError) && ctx.attempt < ctx.maxAttempts) await this.change(id, (x) => ({ ...x, note: [...(x.note ?? []), { time: new Date().toISOString(), text: `attempt ${ctx.attempt} of ${ctx.maxAttempts} failed: ${reason(e)}` }] }));
        throw e;
      }
      await this.change(id, (x) => ({ ...x, status: 'completed', sent: new Date().toISOString() }));
    });
  }

  /** The job was given up (retries exhausted or a permanent failure): not-done, with why. */
  giveUp(id: string, error: unknown): Promise<void> {
    return asSystem(async () => {
      const text = error instanceof PermanentJobError ? reason(error) : `delivery failed after ${this.deps.config.attempts} attempts: ${reason(error)}`;
      await this.change(id, (x) => ({ ...x, status: 'not-done', statusReason: failureReason('delivery-failed', text) }));
    });
  }

  private async deliver(c: Communication & { id?: string }): Promise<void> {
    const channel = channelOf(c);
    const address = c.extension?.find((e) => e.url === this.deps.rules.addressExtension)?.valueContactPoint?.value;
    const body = c.payload?.find((p) => p.contentString !== undefined)?.contentString ?? '';
    if (!address) throw new PermanentJobError(`no ${channel ?? ''} address recorded`);
    if (channel === 'email') {
      if (!EMAIL.test(address)) throw new PermanentJobError('the recorded email address is not an address');
      const sender = this.deps.channels.get('email');
      if (!(sender instanceof EmailSender)) throw new PermanentJobError('email is not configured (SMTP_URL or SMTP_HOST)');
      // The message id lets a mail system drop a repeat (a send whose completion write failed).
      await sender.sendMessage([address], { subject: c.topic?.text ?? this.deps.config.hospitalName, text: body }, `<notification-${c.id}@fhir-server>`);
      return;
    }
    if (channel === 'sms') {
      const url = this.deps.config.smsWebhookUrl;
      const sender = this.deps.channels.get('rest-hook');
      if (!url || !sender) throw new PermanentJobError('SMS is not configured (NOTIFICATION_SMS_WEBHOOK_URL)');
      // The gateway receives the Communication (payload text, address extension) as
      // PUT [url]/Communication/[id], like a plain R4 rest-hook with payload.
      const subscription: Subscription & { id: string } = {
        resourceType: 'Subscription',
        id: 'notification-sms',
        status: 'active',
        reason: 'SMS gateway of hospital notifications',
        criteria: 'Communication',
        channel: { type: 'rest-hook', endpoint: url, payload: 'application/fhir+json', ...(this.deps.config.smsWebhookHeader ? { header: [this.deps.config.smsWebhookHeader] } : {}) },
      };
      const id = c.id!;
      await sender.deliver({ subscription, eventNumber: 0, focus: { reference: `Communication/${id}`, resourceType: 'Communication', id, versionId: c.meta?.versionId ?? '1' }, action: 'update', payload: 'full-resource', resource: c });
      return;
    }
    throw new PermanentJobError(`channel ${channel ?? '(none)'} is not sent by a job`);
  }

  /** Changes the Communication while it is still in-progress (never undoes a final state). */
  private async change(id: string, edit: (c: Communication) => Communication): Promise<void> {
    await this.deps.store.transaction(async (tx) => {
      const current = await tx.readForUpdate('Communication', id);
      if (!current?.json || current.deleted) return;
      const c = JSON.parse(current.json) as Communication;
      if (c.status !== 'in-progress') return;
      await tx.update(edit(c), current);
    });
  }
}
