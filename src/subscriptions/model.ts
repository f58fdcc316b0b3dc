import type { Subscription } from 'fhir/r4.js';
import { errors, type Issue } from '../fhir/errors.js';
import { isXmlMediaType } from '../fhir/xml/xml-common.js';
import type { PayloadContent } from './channels/types.js';
import { mailtoAddresses } from './channels/email.js';
import { isTopicCriteria } from './topics.js';

/** The R4 Subscriptions Backport IG marks its Subscriptions with this profile. */
export const BACKPORT_PROFILE = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription';
/** channel.payload extension carrying empty | id-only | full-resource (backport IG). */
export const PAYLOAD_CONTENT_EXTENSION = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content';

/** What the delivery layer reads from a Subscription's channel. */
export interface ChannelSettings {
  type: string;
  endpoint?: string;
  /** `Name: value` pairs from channel.header */
  headers: Array<[string, string]>;
  payload: PayloadContent;
  /** the payload's mime type (plain R4: present = the resource is sent) */
  mimeType?: string;
  /** Backport-style Subscription: notifications are Bundles */
  backport: boolean;
}

type PayloadElement = { extension?: Array<{ url?: string; valueCode?: string }> };

export function channelSettings(sub: Subscription): ChannelSettings {
  const channel = sub.channel;
  const backport = (sub.meta?.profile ?? []).includes(BACKPORT_PROFILE);
  const payloadExt = ((channel as { _payload?: PayloadElement })._payload?.extension ?? []).find((e) => e.url === PAYLOAD_CONTENT_EXTENSION)?.valueCode;
  let payload: PayloadContent;
  if (payloadExt === 'empty' || payloadExt === 'id-only' || payloadExt === 'full-resource') payload = payloadExt;
  else payload = channel.payload ? 'full-resource' : 'empty';
  const headers: Array<[string, string]> = (channel.header ?? []).map((h) => {
    const at = h.indexOf(':');
    return [h.slice(0, at).trim(), h.slice(at + 1).trim()];
  });
  // Topic-based Subscriptions exist only in the backport IG: their notifications are always Bundles.
  const out: ChannelSettings = { type: channel.type, headers, payload, backport: backport || payloadExt !== undefined || isTopicCriteria(sub.criteria) };
  if (channel.endpoint) out.endpoint = channel.endpoint;
  if (channel.payload) out.mimeType = channel.payload;
  return out;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the transport sets itself: a Subscription may not override them. */
const RESERVED_HEADERS = new Set(['host', 'content-length', 'content-type', 'transfer-encoding', 'connection']);

/** Structural checks of the channel (the endpoint's host is checked by the channel's allow-list). */
export function channelProblems(sub: Subscription, supported: readonly string[]): Issue[] {
  const issues: Issue[] = [];
  const problem = (diagnostics: string, expression: string) => issues.push({ severity: 'error', code: 'invalid', diagnostics, expression: [expression] });
  const channel = sub.channel;
  if (!supported.includes(channel.type)) problem(`channel type '${channel.type}' is not supported here (supported: ${supported.join(', ') || 'none'})`, 'Subscription.channel.type');
  for (const [i, h] of (channel.header ?? []).entries()) {
    const at = h.indexOf(':');
    const name = at > 0 ? h.slice(0, at).trim() : '';
    if (!HEADER_NAME.test(name) || /[\r\n]/.test(h)) problem(`channel.header[${i}] must be "Name: value" on one line`, `Subscription.channel.header[${i}]`);
    else if (RESERVED_HEADERS.has(name.toLowerCase())) problem(`channel.header[${i}] may not set ${name}`, `Subscription.channel.header[${i}]`);
  }
  if (channel.type === 'rest-hook') {
    let url: URL | undefined;
    try {
      url = channel.endpoint ? new URL(channel.endpoint) : undefined;
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) problem('a rest-hook channel needs an http or https endpoint', 'Subscription.channel.endpoint');
  }
  if (channel.type === 'email') {
    try {
      mailtoAddresses(channel.endpoint);
    } catch (error) {
      problem(`an email channel needs a mailto: endpoint with valid addresses (${(error as Error).message})`, 'Subscription.channel.endpoint');
    }
  }
  if (channel.payload && !/^application\/(fhir\+)?json\b/.test(channel.payload)) {
    // FHIR XML is written by the rest-hook sender; the other channels carry JSON.
    if (!isXmlMediaType(channel.payload)) problem(`channel.payload '${channel.payload}' is not supported (application/fhir+json, or application/fhir+xml on rest-hook)`, 'Subscription.channel.payload');
    else if (channel.type !== 'rest-hook') problem(`channel.payload '${channel.payload}' is supported on rest-hook channels only; ${channel.type} sends application/fhir+json`, 'Subscription.channel.payload');
  }
  const ext = ((channel as { _payload?: PayloadElement })._payload?.extension ?? []).find((e) => e.url === PAYLOAD_CONTENT_EXTENSION);
  if (ext && !['empty', 'id-only', 'full-resource'].includes(ext.valueCode ?? '')) problem('payload content must be empty, id-only or full-resource', 'Subscription.channel.payload');
  return issues;
}

/** A Subscription's end has passed: it is turned off. */
export function ended(sub: Subscription, now = Date.now()): boolean {
  return sub.end !== undefined && Date.parse(sub.end) <= now;
}

export function invalid(issues: Issue[]): never {
  throw errors.invalid(issues);
}
