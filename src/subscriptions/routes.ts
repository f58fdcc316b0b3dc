import type { Bundle, BundleEntry, Subscription } from 'fhir/r4.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { scopesAllow } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { FHIR_JSON } from '../http/respond.js';
import type { ResourceStore } from '../storage/resource-store.js';
import type { DeliveryRecord, SubscriptionStore } from '../storage/subscription-store.js';
import { subscriptionStatus } from './notification.js';
import type { TopicRegistry } from './topics.js';
import { isAdministrator } from '../auth/admin-auth.js';
import type { Parameters, ParametersParameter } from 'fhir/r4.js';

export interface SubscriptionRouteDeps {
  tokens: TokenService;
  store: ResourceStore;
  state: SubscriptionStore;
  fhirBase: string;
  /** topics offered ($topics); none when absent */
  topics?: TopicRegistry;
}

/** Subscription operations for the CapabilityStatement (R4 Subscriptions Backport IG). */
export const SUBSCRIPTION_OPERATIONS = [
  { name: 'status', definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status' },
  { name: 'events', definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events' },
  // Ours (no OperationDefinition in the IG): topic details, and the dead letters for administrators.
  { name: 'topics', definition: 'https://fhir.hospital.example.org/OperationDefinition/Subscription-topics' },
  { name: 'dead-letters', definition: 'https://fhir.hospital.example.org/OperationDefinition/Subscription-dead-letters' },
];

/** What the CapabilityStatement says of Subscription: the channel types really registered. */
export function subscriptionCapability(channels: readonly string[]): string {
  return (
    `R4 criteria-based Subscriptions (criteria = a FHIR search, evaluated after commit for every create, update and delete), ` +
    `and topic-based Subscriptions of the R4 Subscriptions Backport IG (criteria = a topic canonical listed in the capabilitystatement-subscriptiontopic-canonical extensions, ` +
    `filters in backport-filter-criteria; handshake and heartbeat for rest-hook; Subscription/$topics describes each topic and its filters). ` +
    `Channels: ${channels.join(', ') || 'none'}. rest-hook payloads: none (empty POST), application/fhir+json (PUT [endpoint]/[type]/[id]), ` +
    `or backport notification Bundles (backport-subscription profile; payload content empty, id-only, full-resource). ` +
    `Deliveries are retried with exponential backoff, then dead-lettered (Subscription.status error); $status and $events show them.`
  );
}

/** Events listed by one $events call at most. */
const MAX_EVENTS = 1000;

function delivered(r: DeliveryRecord): Array<{ name: string; valueCode?: string; valueString?: string }> {
  const parts: Array<{ name: string; valueCode?: string; valueString?: string }> = [{ name: 'delivery-status', valueCode: r.status }];
  if (r.error && r.status !== 'delivered') parts.push({ name: 'delivery-error', valueString: r.error });
  return parts;
}

/**
 * Subscription status operations (R4 Subscriptions Backport IG):
 *  - GET Subscription/{id}/$status: a SubscriptionStatus (status, eventsSinceSubscriptionStart,
 *    the Subscription's error) plus, per delivery outcome, the number of events — dead letters
 *    included — as `delivery-<status>` parameters.
 *  - GET Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=: the events kept, as a
 *    history Bundle (status first, then one entry per event's focus); every notification-event
 *    also carries its delivery-status (pending, delivered, dead-letter, cancelled) and error.
 * Both need read access to Subscription.
 */
export async function subscriptionRoutes(app: FastifyInstance, deps: SubscriptionRouteDeps): Promise<void> {
  app.addHook('onRequest', async (request) => {
    request.auth = await deps.tokens.verify(request.headers.authorization);
  });

  const load = async (request: FastifyRequest<{ Params: { id: string } }>): Promise<Subscription & { id: string }> => {
    if (!request.auth || !scopesAllow(request.auth.scopes, 'Subscription', 'r')) throw errors.forbidden('reading Subscription status needs read access to Subscription');
    const stored = await deps.store.read('Subscription', request.params.id);
    if (!stored) throw errors.notFound(`Subscription/${request.params.id} is not known`);
    if (stored.deleted || !stored.json) throw errors.gone(`Subscription/${request.params.id} was deleted`);
    return JSON.parse(stored.json) as Subscription & { id: string };
  };

  // Topics with their triggers and allowed filters (the metadata lists only their canonical URLs).
  app.get('/Subscription/$topics', async (request, reply) => {
    if (!request.auth || !scopesAllow(request.auth.scopes, 'Subscription', 'r')) throw errors.forbidden('listing subscription topics needs read access to Subscription');
    const parameter: ParametersParameter[] = (deps.topics?.list() ?? []).map((t) => ({
      name: 'topic',
      part: [
        { name: 'url', valueCanonical: t.url },
        { name: 'title', valueString: t.title },
        ...(t.description ? [{ name: 'description', valueString: t.description }] : []),
        ...t.triggers.map((tr) => ({
          name: 'resource-trigger',
          part: [
            { name: 'resource', valueCode: tr.resourceType },
            ...[...tr.interactions].map((i) => ({ name: 'supported-interaction', valueCode: i })),
            ...(tr.current.length ? [{ name: 'query-criteria', valueString: new URLSearchParams(tr.current).toString() }] : []),
            ...(tr.fhirPath ? [{ name: 'fhirpath-criteria', valueString: tr.fhirPath }] : []),
          ],
        })),
        ...t.filters.map((f) => ({
          name: 'can-filter-by',
          part: [
            ...(f.resourceType ? [{ name: 'resource', valueCode: f.resourceType }] : []),
            { name: 'filter-parameter', valueString: f.parameter },
            ...f.modifiers.map((m) => ({ name: 'modifier', valueCode: m })),
          ],
        })),
      ],
    }));
    const out: Parameters = { resourceType: 'Parameters', parameter };
    return reply.type(FHIR_JSON).send(JSON.stringify(out));
  });

  // Dead letters of every Subscription, newest first: administrators only (they name other clients' Subscriptions).
  app.get<{ Querystring: { _count?: string } }>('/Subscription/$dead-letters', async (request, reply) => {
    if (!request.auth) throw errors.unauthorized('an administrator access token is required');
    if (!isAdministrator(request.auth)) throw errors.forbidden('listing dead letters needs an ADMIN user or a client with system write rights');
    const raw = request.query._count;
    if (raw !== undefined && !/^[0-9]{1,4}$/.test(raw)) throw errors.incorrect('_count must be an integer from 1 to 1000', ['_count']);
    const count = Math.min(1000, Math.max(1, raw === undefined ? 100 : Number(raw)));
    const rows = await deps.state.deadLetters(count);
    const parameter: ParametersParameter[] = rows.map((r) => ({
      name: 'dead-letter',
      part: [
        { name: 'subscription', valueReference: { reference: `${deps.fhirBase}/Subscription/${r.subscriptionId}` } },
        { name: 'kind', valueCode: r.kind },
        { name: 'event-number', valueString: String(r.eventNumber) },
        ...(r.kind === 'event' ? [{ name: 'focus', valueReference: { reference: `${deps.fhirBase}/${r.resourceType}/${r.resourceId}/_history/${r.versionId}` } }] : []),
        { name: 'timestamp', valueInstant: r.committedAt },
        { name: 'attempts', valueInteger: r.attempts },
        ...(r.error ? [{ name: 'error', valueString: r.error }] : []),
      ],
    }));
    const out: Parameters = { resourceType: 'Parameters', parameter };
    return reply.type(FHIR_JSON).send(JSON.stringify(out));
  });

  app.get<{ Params: { id: string } }>('/Subscription/:id/$status', async (request, reply) => {
    const sub = await load(request);
    const status = await deps.state.status(sub.id);
    const parameters = subscriptionStatus(sub, deps.fhirBase, { type: 'query-status', eventsSinceStart: status.events, error: sub.error });
    for (const [name, n] of Object.entries(status.counts)) parameters.parameter!.push({ name: `delivery-${name}`, valueInteger: n });
    if (status.lastError) parameters.parameter!.push({ name: 'last-delivery-error', valueString: status.lastError });
    const bundle: Bundle = { resourceType: 'Bundle', type: 'searchset', total: 1, entry: [{ fullUrl: `urn:uuid:${sub.id}-status`, resource: parameters, search: { mode: 'match' } }] };
    return reply.type(FHIR_JSON).send(JSON.stringify(bundle));
  });

  app.get<{ Params: { id: string }; Querystring: { eventsSinceNumber?: string; eventsUntilNumber?: string } }>('/Subscription/:id/$events', async (request, reply) => {
    const sub = await load(request);
    const number = (raw: string | undefined, name: string, fallback: number) => {
      if (raw === undefined || raw === '') return fallback;
      if (!/^[0-9]{1,15}$/.test(raw)) throw errors.incorrect(`${name} must be a non-negative integer`, [name]);
      return Number(raw);
    };
    const from = number(request.query.eventsSinceNumber, 'eventsSinceNumber', 1);
    const to = number(request.query.eventsUntilNumber, 'eventsUntilNumber', Number.MAX_SAFE_INTEGER);
    const status = await deps.state.status(sub.id);
    const events = await deps.state.events(sub.id, from, to, MAX_EVENTS);
    const parameters = subscriptionStatus(sub, deps.fhirBase, {
      type: 'query-event',
      eventsSinceStart: status.events,
      events: events.map((record) => ({ record, focus: `${deps.fhirBase}/${record.resourceType}/${record.resourceId}/_history/${record.versionId}` })),
    });
    // Each notification-event part also tells how its delivery went.
    const eventParams = parameters.parameter!.filter((p) => p.name === 'notification-event');
    eventParams.forEach((p, i) => p.part!.push(...delivered(events[i]!)));
    const entry: BundleEntry[] = [{ fullUrl: `urn:uuid:${sub.id}-events`, resource: parameters }];
    for (const e of events) entry.push({ fullUrl: `${deps.fhirBase}/${e.resourceType}/${e.resourceId}`, request: { method: e.action === 'delete' ? 'DELETE' : e.action === 'create' ? 'POST' : 'PUT', url: `${e.resourceType}/${e.resourceId}` } });
    const bundle: Bundle = { resourceType: 'Bundle', type: 'history', entry };
    return reply.type(FHIR_JSON).send(JSON.stringify(bundle));
  });
}
