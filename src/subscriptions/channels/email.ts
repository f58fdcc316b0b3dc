import { createTransport, type Transporter } from 'nodemailer';
import { PermanentJobError } from '../../jobs/types.js';
import type { SmtpConfig } from './email-config.js';
import type { ChannelSender, Delivery } from './types.js';

/**
 * The `email` channel: `Subscription.channel.endpoint` is `mailto:` one or more addresses.
 * What a message says follows the payload the delivery layer settled on, so that mail (which
 * leaves the hospital's systems and sits in mailboxes) carries no more than needed:
 *  - empty: a notice that the Subscription has a new event, nothing about the resource;
 *  - id-only: the notice plus the reference of the resource (`Observation/123/_history/2`);
 *  - full-resource: also the resource as JSON (the delivery layer sets `resource` only when the
 *    subscriber may read it).
 * The subject line never names the resource.
 */
export interface EmailSenderOptions {
  smtp: SmtpConfig;
  /** Time limit of one SMTP conversation. */
  timeoutMs?: number;
}

/** At most this many recipients in one endpoint. */
const MAX_RECIPIENTS = 20;
const ADDRESS = /^[^\s@<>,;"()\\[\]]+@[A-Za-z0-9.-]+$/;

/** The addresses of a `mailto:` endpoint (RFC 6068: comma-separated, percent-encoded; query ignored). */
export function mailtoAddresses(endpoint: string | undefined): string[] {
  if (!endpoint?.toLowerCase().startsWith('mailto:')) throw new PermanentJobError('the email channel needs a mailto: endpoint');
  const list = endpoint.slice('mailto:'.length).split('?')[0]!;
  let decoded: string;
  try {
    decoded = decodeURIComponent(list);
  } catch {
    throw new PermanentJobError('the mailto: endpoint is not well formed');
  }
  const addresses = decoded.split(',').map((a) => a.trim()).filter(Boolean);
  if (addresses.length === 0 || addresses.length > MAX_RECIPIENTS || !addresses.every((a) => ADDRESS.test(a))) {
    throw new PermanentJobError(`the mailto: endpoint must name 1 to ${MAX_RECIPIENTS} addresses`);
  }
  return addresses;
}

export interface EmailMessage {
  subject: string;
  text: string;
  attachment?: { filename: string; content: string; contentType: string };
}

/** The message for one delivery (pure: what is in it is decided here only). */
export function emailMessage(delivery: Delivery): EmailMessage {
  const { subscription, eventNumber, payload } = delivery;
  const subject = `FHIR notification: Subscription ${subscription.id}, event ${eventNumber}`;
  const lines = [`Subscription ${subscription.id} has a new event (number ${eventNumber}).`];
  if (payload === 'empty') {
    lines.push('', 'Sign in to see what changed.');
    return { subject, text: lines.join('\n') };
  }
  lines.push(`Resource: ${delivery.focus.reference} (${delivery.action}).`);
  if (payload === 'full-resource' && delivery.resource) {
    const json = JSON.stringify(delivery.resource, null, 2);
    lines.push('', 'The resource is attached as FHIR JSON.');
    return { subject, text: lines.join('\n'), attachment: { filename: `${delivery.focus.resourceType}-${delivery.focus.id}.json`, content: json, contentType: 'application/fhir+json' } };
  }
  lines.push('', 'Sign in to see it.');
  return { subject, text: lines.join('\n') };
}

export class EmailSender implements ChannelSender {
  readonly type = 'email' as const;
  private readonly transport: Transporter;

  constructor(private readonly options: EmailSenderOptions) {
    const { smtp } = options;
    const timeout = options.timeoutMs ?? 30_000;
    const common = { connectionTimeout: timeout, greetingTimeout: timeout, socketTimeout: timeout };
    this.transport = createTransport(smtp.url ? { url: smtp.url, ...common } : { host: smtp.host, port: smtp.port, secure: smtp.secure, auth: smtp.auth, ...common });
  }

  async deliver(delivery: Delivery): Promise<void> {
    const to = mailtoAddresses(delivery.subscription.channel?.endpoint);
    const message = emailMessage(delivery);
    await this.transport.sendMail({
      from: this.options.smtp.from,
      to,
      subject: message.subject,
      text: message.text,
      attachments: message.attachment ? [message.attachment] : [],
      // One notification per event: a receiver can drop a repeated delivery by this id.
      messageId: `<subscription-${delivery.subscription.id}-event-${delivery.eventNumber}@fhir-server>`,
    });
  }

  /**
   * Sends a message composed elsewhere (hospital notifications, src/workflows/notifications/:
   * templates whose subjects carry no PHI), over the same SMTP transport.
   */
  async sendMessage(to: readonly string[], message: EmailMessage, messageId: string): Promise<void> {
    await this.transport.sendMail({ from: this.options.smtp.from, to: [...to], subject: message.subject, text: message.text, attachments: message.attachment ? [message.attachment] : [], messageId });
  }

  async close(): Promise<void> {
    this.transport.close();
  }
}
