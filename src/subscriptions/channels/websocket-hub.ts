import type { Bundle, Resource, Subscription } from 'fhir/r4.js';
import type { WebSocket } from 'ws';
import { parseScopes, scopesAllow, type ResourceScope } from '../../auth/scopes.js';
import { compartmentParams } from '../../search/compartment.js';
import type { SearchService } from '../../search/search-service.js';
import { relativeReference } from '../../workflows/messaging-policy.js';
import { maskBody, maskedFields } from '../../workflows/patient-masking.js';
import { accessFilterFor, rowRestricted, type AccessFilter } from '../../search/sql/access.js';
import type { Delivery } from './types.js';
import type { BindingGrant } from './websocket-token.js';

/**
 * The sockets bound to Subscriptions in THIS process, and what each may receive. Every push is
 * checked against the grant of the socket's own access token (besides the subscriber's grant
 * the delivery layer already applied): a socket whose token may not read the focus resource
 * gets nothing for that event, not even a `ping`.
 *
 * Two protocols share one endpoint:
 *  - R4 (`bind <id>`, authorised by the upgrade request's bearer token): `bound <id>`, then
 *    `ping <id>` per event; the client fetches what changed with its own token.
 *  - Backport IG (`bind-with-token <token>` from `$get-ws-binding-token`): `bound <id>` per
 *    Subscription of the token, then the notification Bundle (JSON) per event.
 */

export type BindingMode = 'ping' | 'bundle';

/** At most this many Subscriptions on one socket. */
export const MAX_BINDINGS_PER_SOCKET = 64;

interface Binding {
  socket: WebSocket;
  subscriptionId: string;
  grant: BindingGrant;
  scopes: ResourceScope[];
  mode: BindingMode;
  /** Pushes to one binding go out in the order the deliveries arrive (jobs may finish out of event order; Bundles carry the event number). */
  queue: Promise<void>;
}

export interface HubDeps {
  search: SearchService;
  fhirBase: string;
  log: (message: string, error?: unknown) => void;
}

/** Whether `scopes` grant reading `type` (a whole-type or a granular scope). */
function mayRead(scopes: readonly ResourceScope[], type: string): boolean {
  return scopesAllow(scopes, type, 'r') || scopes.some((s) => s.filter !== undefined && s.resourceType === type && s.permissions.has('r'));
}

export class WebSocketHub {
  private readonly bySubscription = new Map<string, Set<Binding>>();
  private readonly bySocket = new Map<WebSocket, Map<string, Binding>>();

  constructor(private readonly deps: HubDeps) {}

  /**
   * The Subscription if the grant may bind to it and it is a websocket Subscription that is not
   * off; else why not (`forbidden`: the token may not see it; `not-found`; `incorrect`: not a
   * websocket Subscription, or off). A grant may bind to a Subscription it may read; a grant
   * confined to one patient (patient/ scopes, which never cover Subscription) may also bind to
   * one whose criteria keeps every match inside that patient's compartment
   * (`Communication?recipient=Patient/<own id>`): it learns nothing it could not read anyway,
   * and each push is checked against its own access besides.
   */
  async bindable(grant: BindingGrant, subscriptionId: string): Promise<{ subscription: Subscription } | { problem: string; category: 'forbidden' | 'not-found' | 'incorrect' }> {
    if (!/^[A-Za-z0-9\-.]{1,64}$/.test(subscriptionId)) return { problem: 'not a Subscription id', category: 'incorrect' };
    const scopes = parseScopes(grant.scope);
    const lookup = async (accessFilter?: AccessFilter) =>
      (await this.deps.search.search({ resourceType: 'Subscription', params: [['_id', subscriptionId]], baseUrl: this.deps.fhirBase, accessFilter })).entry?.[0]?.resource as
        | Subscription
        | undefined;
    let subscription = mayRead(scopes, 'Subscription') ? await lookup(accessFilterFor({ ...grant, scopes })) : undefined;
    if (!subscription) {
      const stored = await lookup();
      if (!stored) return { problem: 'unknown Subscription', category: 'not-found' };
      if (grant.patient && criteriaConfinedTo(stored.criteria, grant.patient)) subscription = stored;
      else if (!mayRead(scopes, 'Subscription')) return { problem: "the access token's scopes do not allow reading Subscription", category: 'forbidden' };
      else return { problem: 'the Subscription is outside what the access token may see', category: 'forbidden' };
    }
    if (subscription.channel?.type !== 'websocket') return { problem: 'the Subscription does not use the websocket channel', category: 'incorrect' };
    if (subscription.status === 'off') return { problem: 'the Subscription is off', category: 'incorrect' };
    return { subscription };
  }

  bind(socket: WebSocket, subscriptionId: string, grant: BindingGrant, mode: BindingMode): { problem?: string } {
    let own = this.bySocket.get(socket);
    if (!own) {
      own = new Map();
      this.bySocket.set(socket, own);
    }
    const previous = own.get(subscriptionId);
    if (!previous && own.size >= MAX_BINDINGS_PER_SOCKET) return { problem: `at most ${MAX_BINDINGS_PER_SOCKET} Subscriptions per socket` };
    if (previous) this.bySubscription.get(subscriptionId)?.delete(previous);
    const binding: Binding = { socket, subscriptionId, grant, scopes: parseScopes(grant.scope), mode, queue: previous?.queue ?? Promise.resolve() };
    own.set(subscriptionId, binding);
    let set = this.bySubscription.get(subscriptionId);
    if (!set) {
      set = new Set();
      this.bySubscription.set(subscriptionId, set);
    }
    set.add(binding);
    return {};
  }

  unbind(socket: WebSocket, subscriptionId: string): boolean {
    const binding = this.bySocket.get(socket)?.get(subscriptionId);
    if (!binding) return false;
    this.remove(binding);
    return true;
  }

  /** Forgets every binding of a closed socket. */
  dropSocket(socket: WebSocket): void {
    for (const binding of [...(this.bySocket.get(socket)?.values() ?? [])]) this.remove(binding);
    this.bySocket.delete(socket);
  }

  /** Sockets bound to a Subscription in this process (tests, metrics). */
  boundCount(subscriptionId?: string): number {
    if (subscriptionId) return this.bySubscription.get(subscriptionId)?.size ?? 0;
    let n = 0;
    for (const set of this.bySubscription.values()) n += set.size;
    return n;
  }

  /** Pushes one event to this process's sockets bound to its Subscription; resolves when sent. */
  async push(delivery: Delivery): Promise<void> {
    const bindings = [...(this.bySubscription.get(delivery.subscription.id) ?? [])];
    await Promise.all(
      bindings.map((b) => {
        b.queue = b.queue.then(() => this.pushOne(b, delivery)).catch((e: unknown) => this.deps.log('websocket push failed', e));
        return b.queue;
      }),
    );
  }

  private async pushOne(binding: Binding, delivery: Delivery): Promise<void> {
    if (binding.socket.readyState !== binding.socket.OPEN) return;
    if (binding.grant.expiresAt <= Date.now() / 1000) {
      // The access token behind the binding has expired: nothing more under its grant.
      this.remove(binding);
      binding.socket.send(`error ${binding.subscriptionId} access token expired; bind again`);
      return;
    }
    if (!(await this.visible(binding, delivery))) return;
    if (binding.mode === 'ping') {
      binding.socket.send(`ping ${binding.subscriptionId}`);
      return;
    }
    const bundle: Resource | undefined = delivery.notificationBundle;
    if (!bundle) throw new Error('the delivery carries no notification Bundle');
    // Masked for the socket's own token too (its role may see less than the subscriber's).
    const masked = maskedFields(binding.grant);
    const shown = withoutUnreadable(bundle as Bundle, delivery);
    binding.socket.send(JSON.stringify(masked ? maskBody(shown, masked) : shown));
  }

  /**
   * The socket's own token may read the focus resource: the very version sent when the Bundle
   * carries it (judged in memory on its content), else the current version (what the client
   * will fetch); a deleted one only where the whole type is open to the token.
   */
  private async visible(binding: Binding, delivery: Delivery): Promise<boolean> {
    const { resourceType, id } = delivery.focus;
    if (!mayRead(binding.scopes, resourceType)) return false;
    const filter = accessFilterFor({ ...binding.grant, scopes: binding.scopes });
    if (!rowRestricted(filter, resourceType)) return true;
    if (binding.mode === 'bundle' && delivery.resource) return this.deps.search.versionJudge(filter!, this.deps.fhirBase)(delivery.resource);
    const found = await this.deps.search.search({
      resourceType,
      params: [['_id', id], ['_summary', 'count']],
      baseUrl: this.deps.fhirBase,
      accessFilter: filter,
    });
    return (found.total ?? 0) > 0;
  }

  private remove(binding: Binding): void {
    this.bySocket.get(binding.socket)?.delete(binding.subscriptionId);
    const set = this.bySubscription.get(binding.subscriptionId);
    set?.delete(binding);
    if (set?.size === 0) this.bySubscription.delete(binding.subscriptionId);
  }
}

/**
 * Whether every resource `criteria` matches is in the compartment of Patient/`patient`: it
 * names that patient (and only that one) in a compartment param of its type, without modifier.
 */
export function criteriaConfinedTo(criteria: string | undefined, patient: string): boolean {
  const [type = '', query = ''] = (criteria ?? '').split('?', 2);
  const params = compartmentParams('Patient', type);
  for (const [name, value] of new URLSearchParams(query)) {
    if (params.includes(name) && !value.includes(',') && relativeReference(value) === `Patient/${patient}`) return true;
  }
  return type === 'Patient' && new URLSearchParams(query).getAll('_id').some((v) => v === patient);
}

/**
 * The notification Bundle as the socket may see it: the status entry and the focus (checked
 * visible above); any other resource (a later Bundle with `additionalContext`, say) is cut
 * down to its fullUrl rather than sent unchecked.
 */
function withoutUnreadable(bundle: Bundle, delivery: Delivery): Bundle {
  const { resourceType, id } = delivery.focus;
  return {
    ...bundle,
    entry: (bundle.entry ?? []).map((e, i) => {
      if (i === 0 || !e.resource || (e.resource.resourceType === resourceType && e.resource.id === id)) return e;
      return { fullUrl: e.fullUrl };
    }),
  };
}
