/**
 * The contract between subscription delivery (which decides who gets which event, runs the
 * jobs, retries and dead-letters) and the channels (which only know how to hand one
 * notification to one endpoint). A channel throws to signal a failed delivery; the job layer
 * retries it with backoff and records the outcome.
 */
import type { Resource, Subscription } from 'fhir/r4.js';

export type SubscriptionChannelType = 'rest-hook' | 'websocket' | 'email' | 'message';

/** Subscription.channel.payload as the delivery layer understood it. */
export type PayloadContent = 'empty' | 'id-only' | 'full-resource';

export interface Delivery {
  /** The stored Subscription (current version) that matched. */
  subscription: Subscription & { id: string };
  /** Monotonic per subscription, starting at 1 (the backport IG's eventsSinceSubscriptionStart). */
  eventNumber: number;
  /** Absolute reference to the resource that triggered the event, e.g. `Observation/123/_history/2`. */
  focus: { reference: string; resourceType: string; id: string; versionId: string };
  action: 'create' | 'update' | 'delete';
  payload: PayloadContent;
  /** Present only when payload is full-resource and the subscriber may read it. */
  resource?: Resource;
  /** The R4 backport notification Bundle (type history) for channels that send a body. */
  notificationBundle?: Resource;
  /**
   * Absent or `event`: a resource event as above. `handshake` / `heartbeat` (topic-based
   * rest-hook Subscriptions only): no resource event; `focus` names the Subscription itself and
   * `notificationBundle` holds a SubscriptionStatus of that type, to be POSTed as it is.
   */
  kind?: 'event' | 'handshake' | 'heartbeat';
}

export interface ChannelSender {
  readonly type: SubscriptionChannelType;
  /** Resolves when the endpoint accepted the notification; throws on failure. */
  deliver(delivery: Delivery): Promise<void>;
  /** Optional: release sockets/transports at shutdown. */
  close?(): Promise<void>;
}
