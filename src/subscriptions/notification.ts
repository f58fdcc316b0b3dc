import type { Bundle, BundleEntry, FhirResource, Parameters, ParametersParameter, Resource, Subscription } from 'fhir/r4.js';
import type { DeliveryRecord } from '../storage/subscription-store.js';
import type { Delivery } from './channels/types.js';
import { channelSettings } from './model.js';
import { isTopicCriteria } from './topics.js';

const STATUS_PROFILE = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4';
const NOTIFICATION_PROFILE = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4';

const METHOD_OF: Record<Delivery['action'], 'POST' | 'PUT' | 'DELETE'> = { create: 'POST', update: 'PUT', delete: 'DELETE' };

/** One notification-event part of a SubscriptionStatus. */
function eventPart(record: Pick<DeliveryRecord, 'eventNumber' | 'committedAt'>, focus?: string): ParametersParameter {
  const part: ParametersParameter[] = [
    { name: 'event-number', valueString: String(record.eventNumber) },
    { name: 'timestamp', valueInstant: record.committedAt },
  ];
  if (focus) part.push({ name: 'focus', valueReference: { reference: focus } });
  return { name: 'notification-event', part };
}

/** The R4 backport SubscriptionStatus (a Parameters resource). */
export function subscriptionStatus(
  sub: Subscription & { id: string },
  fhirBase: string,
  opts: { type: 'event-notification' | 'query-status' | 'query-event' | 'heartbeat' | 'handshake'; eventsSinceStart: number; events?: ReadonlyArray<{ record: Pick<DeliveryRecord, 'eventNumber' | 'committedAt'>; focus?: string }>; error?: string },
): Parameters {
  const parameter: ParametersParameter[] = [
    { name: 'subscription', valueReference: { reference: `${fhirBase}/Subscription/${sub.id}` } },
    // Topic-based: the topic's canonical (criteria holds it).
    ...(isTopicCriteria(sub.criteria) ? [{ name: 'topic', valueCanonical: sub.criteria.trim() }] : []),
    { name: 'status', valueCode: sub.status },
    { name: 'type', valueCode: opts.type },
    { name: 'events-since-subscription-start', valueString: String(opts.eventsSinceStart) },
  ];
  for (const e of opts.events ?? []) parameter.push(eventPart(e.record, e.focus));
  if (opts.error) parameter.push({ name: 'error', valueCodeableConcept: { text: opts.error } });
  return { resourceType: 'Parameters', id: `${sub.id}-status`, meta: { profile: [STATUS_PROFILE] }, parameter };
}

/**
 * The Delivery handed to a channel: focus, payload as the Subscription asked, and the backport
 * notification Bundle (type history: the SubscriptionStatus, then the focus entry for id-only
 * and full-resource). `resource` is the version that matched (already checked readable).
 */
export function buildDelivery(sub: Subscription & { id: string }, record: DeliveryRecord, fhirBase: string, resource: Resource | undefined): Delivery {
  const settings = channelSettings(sub);
  if (record.kind === 'handshake' || record.kind === 'heartbeat') {
    // No resource event: the SubscriptionStatus alone, with the events sent so far.
    const status = subscriptionStatus(sub, fhirBase, { type: record.kind, eventsSinceStart: record.eventNumber });
    const bundle: Bundle = { resourceType: 'Bundle', id: record.id, meta: { profile: [NOTIFICATION_PROFILE] }, type: 'history', timestamp: new Date().toISOString(), entry: [{ fullUrl: `urn:uuid:${record.id}`, resource: status }] };
    const focus = { reference: `${fhirBase}/Subscription/${sub.id}`, resourceType: 'Subscription', id: sub.id, versionId: sub.meta?.versionId ?? '' };
    return { subscription: sub, eventNumber: record.eventNumber, focus, action: 'update', payload: settings.payload, notificationBundle: bundle, kind: record.kind };
  }
  const reference = `${fhirBase}/${record.resourceType}/${record.resourceId}/_history/${record.versionId}`;
  const focus = { reference, resourceType: record.resourceType, id: record.resourceId, versionId: record.versionId };
  const status = subscriptionStatus(sub, fhirBase, {
    type: 'event-notification',
    eventsSinceStart: record.eventNumber,
    events: [{ record, focus: settings.payload === 'empty' ? undefined : reference }],
  });
  const entry: BundleEntry[] = [{ fullUrl: `urn:uuid:${record.id}`, resource: status }];
  const url = `${record.resourceType}/${record.resourceId}`;
  if (settings.payload === 'id-only') {
    entry.push({ fullUrl: `${fhirBase}/${url}`, request: { method: METHOD_OF[record.action], url } });
  } else if (settings.payload === 'full-resource') {
    const e: BundleEntry = { fullUrl: `${fhirBase}/${url}`, request: { method: METHOD_OF[record.action], url } };
    if (resource) e.resource = resource as FhirResource;
    entry.push(e);
  }
  const bundle: Bundle = { resourceType: 'Bundle', id: record.id, meta: { profile: [NOTIFICATION_PROFILE] }, type: 'history', timestamp: new Date().toISOString(), entry };
  const delivery: Delivery = { subscription: sub, eventNumber: record.eventNumber, focus, action: record.action, payload: settings.payload, notificationBundle: bundle };
  if (resource && settings.payload === 'full-resource') delivery.resource = resource;
  return delivery;
}
