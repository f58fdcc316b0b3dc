import type { Subscription } from 'fhir/r4.js';
import type { Issue } from '../fhir/errors.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import type { SubscriptionGrant, SubscriptionStore } from '../storage/subscription-store.js';
import type { ResourceChange } from '../storage/types.js';
import type { AuthContext } from '../auth/token-service.js';
import type { SearchService } from '../search/search-service.js';
import type { ChannelRegistry } from './channels/registry.js';
import { endpointAllowed } from './channels/rest-hook.js';
import { parseCriteria } from './criteria.js';
import { channelProblems, ended, invalid } from './model.js';
import { currentWriter, isSystemWrite } from './write-context.js';
import { isTopicCriteria, topicProblems, type TopicRegistry } from './topics.js';

export interface WriteHookDeps {
  search: Pick<SearchService, 'parse'>;
  isResourceType: (type: string) => boolean;
  fhirBase: string;
  channels: ChannelRegistry;
  state: SubscriptionStore;
  allowList: readonly string[];
  /** subscription topics (conformance/subscription-topics) */
  topics: TopicRegistry;
}

export function grantOf(auth: AuthContext): SubscriptionGrant {
  const grant: SubscriptionGrant = { clientId: auth.clientId, subject: auth.subject, kind: auth.kind, scope: auth.scope };
  if (auth.role) grant.role = auth.role;
  if (auth.patient) grant.patient = auth.patient;
  return grant;
}

/**
 * Subscriptions written through the API: criteria and channel checked (400 / 422), status
 * requested → active (the server is ready as soon as the write commits), an `end` in the past
 * → off, and the writer's grant recorded in the same transaction: notifications carry only what
 * that token could read. Server-side writes (status changes by the delivery layer) pass as they are.
 */
export function subscriptionWriteHook(deps: WriteHookDeps): BeforeWriteHook {
  return (tx, change) => {
    // Synchronous for every other type: this hook costs the hot write path one comparison.
    if (change.resourceType !== 'Subscription' || !change.resource || isSystemWrite()) return;
    return checkAndRecord(deps, tx, change);
  };
}

async function checkAndRecord(deps: WriteHookDeps, tx: StoreTransaction, change: ResourceChange): Promise<void> {
  const sub = change.resource as Subscription;
  const issues: Issue[] = [];
  // Topic-based (backport IG): criteria is the topic's canonical URL, filters in extensions.
  if (isTopicCriteria(sub.criteria)) issues.push(...topicProblems(sub, deps.topics, { search: deps.search, isResourceType: deps.isResourceType, baseUrl: deps.fhirBase }).issues);
  else parseCriteria(sub.criteria, deps.search, deps.isResourceType, deps.fhirBase);
  issues.push(...channelProblems(sub, deps.channels.types()));
  if (sub.channel.type === 'rest-hook' && sub.channel.endpoint && issues.length === 0 && !endpointAllowed(sub.channel.endpoint, deps.allowList)) {
    issues.push({ severity: 'error', code: 'security', diagnostics: 'the endpoint host is not in SUBSCRIPTION_ENDPOINT_ALLOWLIST', expression: ['Subscription.channel.endpoint'] });
  }
  if (issues.length > 0) invalid(issues);
  let status = sub.status;
  if (status === 'requested' || status === 'active') status = 'active';
  if (ended(sub)) status = 'off';
  const stored: Subscription = { ...sub, status };
  if (status === 'active') delete stored.error;
  change.resource = stored;
  const writer = currentWriter();
  await deps.state.saveState(await tx.executor(), change.id, writer ? grantOf(writer) : undefined, status === 'active');
}
