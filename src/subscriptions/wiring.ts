import type { Config } from '../config/config.js';
import type { JobRunner, QueueDefinition } from '../jobs/types.js';
import type { SearchService } from '../search/search-service.js';
import type { Db } from '../storage/db.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { SubscriptionStore } from '../storage/subscription-store.js';
import { ChannelRegistry } from './channels/registry.js';
import { deliveryQueue, DELIVERY_QUEUE, staleClaimMs } from './delivery-job.js';
import { SubscriptionDispatcher } from './dispatcher.js';
import { SubscriptionStatusWriter } from './status.js';
import { subscriptionWriteHook } from './write-hook.js';
import { TopicRegistry, TOPICS_DIR } from './topics.js';

export interface SubscriptionDeps {
  store: ResourceStore;
  search: Pick<SearchService, 'parse' | 'search' | 'matchEach' | 'memoryMatcher'>;
  db: Db;
  fhirBase: string;
  config: Pick<Config, 'subscriptionEndpointAllowList' | 'subscriptionAttempts' | 'subscriptionBackoffMs' | 'subscriptionPollMs' | 'subscriptionTimeoutMs'>;
  isResourceType: (type: string) => boolean;
  log: (message: string, error?: unknown) => void;
  /** where the subscription topics are defined (default conformance/subscription-topics) */
  topicsDir?: string;
}

export interface SubscriptionComponents {
  /** channel senders of this process (see channels/index.ts#registerChannels) */
  channels: ChannelRegistry;
  state: SubscriptionStore;
  /** subscription topics offered (topic-based Subscriptions, CapabilityStatement) */
  topics: TopicRegistry;
  /** the delivery queue, to be served by the process's job runner */
  queue: QueueDefinition;
  /** set by `start` */
  dispatcher?: SubscriptionDispatcher;
  /** Starts dispatching committed writes into `runner`'s delivery queue. */
  start(runner: JobRunner): void;
  /** Stops dispatching (call before closing the runner), then the channels. */
  close(): Promise<void>;
  closeChannels(): Promise<void>;
}

/**
 * Subscriptions: the Subscription write hook (checks, status, grant), the delivery queue and
 * the dispatcher. Built before the job runner (which needs the queue), started after it.
 */
export function createSubscriptions(deps: SubscriptionDeps): SubscriptionComponents {
  const state = new SubscriptionStore(deps.db);
  const channels = new ChannelRegistry();
  const statusWriter = new SubscriptionStatusWriter(deps.store);
  // A topic file the server cannot evaluate stops the start (named in the error).
  const topics = TopicRegistry.load(deps.topicsDir ?? TOPICS_DIR, { search: deps.search, isResourceType: deps.isResourceType, baseUrl: deps.fhirBase });
  deps.store.onBeforeWrite(
    subscriptionWriteHook({ search: deps.search, isResourceType: deps.isResourceType, fhirBase: deps.fhirBase, channels, state, allowList: deps.config.subscriptionEndpointAllowList, topics }),
  );
  const queue = deliveryQueue({
    deliveries: state,
    store: deps.store,
    channels,
    statusWriter,
    fhirBase: deps.fhirBase,
    attempts: deps.config.subscriptionAttempts,
    backoffMs: deps.config.subscriptionBackoffMs,
    // Deliveries wait on remote endpoints, not on this machine: more at once than CPU-bound queues.
    concurrency: 16,
    timeoutMs: deps.config.subscriptionTimeoutMs,
    log: deps.log,
  });
  const components: SubscriptionComponents = {
    channels,
    state,
    topics,
    queue,
    start(runner) {
      const dispatcher = new SubscriptionDispatcher({
        state,
        search: deps.search,
        enqueue: (id) => runner.enqueue(DELIVERY_QUEUE, { jobId: id }),
        topics,
        statusWriter,
        fhirBase: deps.fhirBase,
        pollMs: deps.config.subscriptionPollMs,
        staleClaimMs: staleClaimMs(deps.config.subscriptionTimeoutMs),
        log: deps.log,
      });
      components.dispatcher = dispatcher;
      deps.store.onAfterCommit((changes) => dispatcher.notify(changes));
      dispatcher.start();
    },
    async close() {
      await components.dispatcher?.close();
    },
    closeChannels: () => channels.close(),
  };
  return components;
}
