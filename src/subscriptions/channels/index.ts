import type { FastifyInstance } from 'fastify';
import type { TokenService } from '../../auth/token-service.js';
import type { Config } from '../../config/config.js';
import type { Db } from '../../storage/db.js';
import type { SearchService } from '../../search/search-service.js';
import { EmailSender } from './email.js';
import type { ChannelRegistry } from './registry.js';
import { websocketChannel } from './websocket-wiring.js';
import { RestHookSender } from './rest-hook.js';

/** What channel senders may need; `http` and `tokens` only in the HTTP server, not in `npm run worker`. */
export interface ChannelDeps {
  config: Config;
  log: (message: string, error?: unknown) => void;
  db: Db;
  http?: FastifyInstance;
  tokens?: TokenService;
  /** HTTP server only: the websocket channel checks each push against the socket token's access (search). */
  search?: SearchService;
  /** The FHIR base URL (BASE_URL/fhir), with `search`. */
  fhirBase?: string;
}

/**
 * The one place channel senders are registered, shared by the HTTP server and the worker
 * process (see docs/subscriptions.md, "Channel senders").
 */
export function registerChannels(channels: ChannelRegistry, deps: ChannelDeps): void {
  channels.register(new RestHookSender({ allowList: deps.config.subscriptionEndpointAllowList, timeoutMs: deps.config.subscriptionTimeoutMs }));
  // websocket: sockets and `$get-ws-binding-token` in server processes; Redis fan-out when REDIS_URL is set.
  channels.register(websocketChannel(deps));
  // email: only when SMTP is configured (SMTP_URL or SMTP_HOST…); otherwise email Subscriptions are refused.
  if (deps.config.smtp) channels.register(new EmailSender({ smtp: deps.config.smtp, timeoutMs: deps.config.subscriptionTimeoutMs }));
}
