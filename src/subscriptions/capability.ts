import type { CapabilityStatement, Extension } from 'fhir/r4.js';
import { BACKPORT_PROFILE } from './model.js';
import type { TopicRegistry } from './topics.js';

/** Backport IG: the topics a server offers, on the Subscription entry of its CapabilityStatement (R4 has no SubscriptionTopic). */
export const TOPIC_CANONICAL_EXTENSION = 'http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical';
/** R4 core: where the server's websocket endpoint is (CapabilityStatement.rest). */
export const WEBSOCKET_EXTENSION = 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket';
const BACKPORT_SERVER_R4 = 'http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4';
const BACKPORT_IG = 'http://hl7.org/fhir/uv/subscriptions-backport/ImplementationGuide/hl7.fhir.uv.subscriptions-backport';

/**
 * Adds what the Subscriptions Backport IG asks of an R4 server's CapabilityStatement: the
 * backport Subscription profile, one topic-canonical extension per topic offered, the websocket
 * URL (when the websocket channel is offered), and the IG's server CapabilityStatement in
 * `instantiates`. Returns a new object.
 */
export function withSubscriptionConformance(cs: CapabilityStatement, topics: TopicRegistry, websocketUrl: string | undefined): CapabilityStatement {
  const rest = (cs.rest ?? []).map((r) => {
    const resource = (r.resource ?? []).map((res) => {
      if (res.type !== 'Subscription') return res;
      const topicExtensions: Extension[] = topics.list().map((t) => ({ url: TOPIC_CANONICAL_EXTENSION, valueCanonical: t.url }));
      return { ...res, supportedProfile: [...(res.supportedProfile ?? []), BACKPORT_PROFILE], extension: [...(res.extension ?? []), ...topicExtensions] };
    });
    const extension = websocketUrl ? [...(r.extension ?? []), { url: WEBSOCKET_EXTENSION, valueUri: websocketUrl }] : r.extension;
    return { ...r, resource, ...(extension ? { extension } : {}) };
  });
  return {
    ...cs,
    instantiates: [...(cs.instantiates ?? []), BACKPORT_SERVER_R4],
    implementationGuide: [...(cs.implementationGuide ?? []), BACKPORT_IG],
    rest,
  };
}
