import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { PermanentJobError } from '../../jobs/types.js';
import type { Resource } from 'fhir/r4.js';
import { resourceToXml } from '../../fhir/xml/to-xml.js';
import { isXmlMediaType, XmlConversionError } from '../../fhir/xml/xml-common.js';
import { channelSettings } from '../model.js';
import { timeoutSeconds } from '../topics.js';
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

/** A payload as FHIR XML; what XML cannot say is a permanent failure (retrying would not change it). */
function xmlBody(content: Resource): string {
  try {
    return resourceToXml(content as unknown as Record<string, unknown>);
  } catch (e) {
    if (e instanceof XmlConversionError) throw new PermanentJobError(`the payload cannot be written as FHIR XML: ${e.message}`);
    throw e;
  }
}

/**
 * rest-hook: one HTTP request per notification, with the Subscription's own headers.
 *  - Backport-style Subscriptions (profile or payload-content extension): POST the notification
 *    Bundle to the endpoint (its content follows empty / id-only / full-resource).
 *  - Plain R4 without payload: POST with no body (a ping: "go and search").
 *  - Plain R4 with payload: PUT the resource to [endpoint]/[type]/[id] (R4 §Subscription rest-hook);
 *    a delete is sent as DELETE [endpoint]/[type]/[id].
 * Any status but 2xx, a timeout or a network error is a failed delivery (thrown; retried).
 * Bodies are FHIR JSON, or FHIR XML when channel.payload names it (`application/fhir+xml`).
 *
 * Connections are kept alive and reused per endpoint host (node:http agents: measured 2-5×
 * less time per notification than `fetch` on Node 20, which matters at hundreds per second).
 */
export class RestHookSender implements ChannelSender {
  readonly type = 'rest-hook' as const;
  // Per host at most this many connections at once; idle ones are closed after a while.
  private readonly http = new HttpAgent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 16, timeout: 60_000 });
  private readonly https = new HttpsAgent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 16, timeout: 60_000 });

  constructor(private readonly options: RestHookOptions) {}

  async close(): Promise<void> {
    this.http.destroy();
    this.https.destroy();
  }

  /** One request; resolves with the status once the answer was read (a total time limit, like fetch's AbortSignal.timeout). */
  private send(url: string, method: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const target = new URL(url);
      const secure = target.protocol === 'https:';
      const payload = body === undefined ? undefined : Buffer.from(body, 'utf8');
      const all: Record<string, string | number> = { ...headers, 'content-length': payload?.length ?? 0 };
      const req = (secure ? httpsRequest : httpRequest)(target, { method, headers: all, agent: secure ? this.https : this.http }, (res: IncomingMessage) => {
        // Drain so the connection can be reused; the body is not ours to keep.
        res.resume();
        res.on('end', () => {
          clearTimeout(timer);
          resolve(res.statusCode ?? 0);
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
      const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { name: 'TimeoutError' })), timeoutMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end(payload);
    });
  }

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
    let content: Resource | undefined;
    if (settings.backport || (delivery.kind !== undefined && delivery.kind !== 'event')) {
      content = delivery.notificationBundle;
    } else if (settings.payload === 'full-resource') {
      url = `${endpoint.replace(/\/+$/, '')}/${delivery.focus.resourceType}/${delivery.focus.id}`;
      if (delivery.action === 'delete') method = 'DELETE';
      else if (delivery.resource) {
        method = 'PUT';
        content = delivery.resource;
      }
    }
    // The payload in the format the Subscription names (channel.payload): FHIR JSON, or FHIR XML.
    const xml = isXmlMediaType(settings.mimeType);
    const body = content === undefined ? undefined : xml ? xmlBody(content) : JSON.stringify(content);
    if (body !== undefined) headers['content-type'] = xml ? 'application/fhir+xml' : 'application/fhir+json';
    // The Subscription's own timeout (backport-timeout) may shorten the server's, never lengthen it.
    const own = timeoutSeconds(delivery.subscription);
    const timeoutMs = own !== undefined ? Math.min(own * 1000, this.options.timeoutMs) : this.options.timeoutMs;
    let status: number;
    try {
      // Redirects are not followed: a 3xx is a failed delivery like any other non-2xx.
      status = await this.send(url, method, headers, body, timeoutMs);
    } catch (e) {
      const reason = e instanceof Error && e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : e instanceof Error ? e.message : String(e);
      throw new Error(`rest-hook ${method} failed: ${reason}`, { cause: e });
    }
    if (status < 200 || status > 299) throw new Error(`rest-hook ${method} answered ${status}`);
  }
}
