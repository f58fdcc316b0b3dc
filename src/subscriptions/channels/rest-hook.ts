import { PermanentJobError } from '../../jobs/types.js';
import { channelSettings } from '../model.js';
import type { ChannelSender, Delivery } from './types.js';

export interface RestHookOptions {
  /** Hosts endpoints may name: `host` or `*.domain`; empty = any host. */
  allowList: readonly string[];
  timeoutMs: number;
}

/** Whether `endpoint`'s host is allowed (the list is lower case; `*.x.org` covers subdomains of x.org). */
export function endpointAllowed(endpoint: string, allowList: readonly string[]): boolean {
  if (allowList.length === 0) return true;
  let host: string;
  try {
    host = new URL(endpoint).hostname.toLowerCase();
  } catch {
    return false;
  }
  return allowList.some((entry) => (entry.startsWith('*.') ? host.endsWith(entry.slice(1)) : host === entry));
}

/**
 * rest-hook: one HTTP request per notification, with the Subscription's own headers.
 *  - Backport-style Subscriptions (profile or payload-content extension): POST the notification
 *    Bundle to the endpoint (its content follows empty / id-only / full-resource).
 *  - Plain R4 without payload: POST with no body (a ping: "go and search").
 *  - Plain R4 with payload: PUT the resource to [endpoint]/[type]/[id] (R4 §Subscription rest-hook);
 *    a delete is sent as DELETE [endpoint]/[type]/[id].
 * Any status but 2xx, a timeout or a network error is a failed delivery (thrown; retried).
 */
export class RestHookSender implements ChannelSender {
  readonly type = 'rest-hook' as const;

  constructor(private readonly options: RestHookOptions) {}

  async deliver(delivery: Delivery): Promise<void> {
    const settings = channelSettings(delivery.subscription);
    const endpoint = settings.endpoint;
    if (!endpoint) throw new PermanentJobError('the Subscription has no endpoint');
    // Checked again at delivery: the allow-list may have been narrowed since the Subscription was stored.
    if (!endpointAllowed(endpoint, this.options.allowList)) throw new PermanentJobError('the endpoint host is not in SUBSCRIPTION_ENDPOINT_ALLOWLIST');
    const headers: Record<string, string> = {};
    for (const [name, value] of settings.headers) headers[name] = value;
    let method = 'POST';
    let url = endpoint;
    let body: string | undefined;
    if (settings.backport) {
      body = JSON.stringify(delivery.notificationBundle);
    } else if (settings.payload === 'full-resource') {
      url = `${endpoint.replace(/\/+$/, '')}/${delivery.focus.resourceType}/${delivery.focus.id}`;
      if (delivery.action === 'delete') method = 'DELETE';
      else if (delivery.resource) {
        method = 'PUT';
        body = JSON.stringify(delivery.resource);
      }
    }
    if (body !== undefined) headers['content-type'] = 'application/fhir+json';
    let response: Response;
    try {
      response = await fetch(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(this.options.timeoutMs) });
    } catch (e) {
      const reason = e instanceof Error && e.name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e);
      throw new Error(`rest-hook ${method} failed: ${reason}`, { cause: e });
    }
    // Drain so the connection can be reused; the body is not ours to keep.
    await response.arrayBuffer().catch(() => undefined);
    if (response.status < 200 || response.status > 299) throw new Error(`rest-hook ${method} answered ${response.status}`);
  }
}
