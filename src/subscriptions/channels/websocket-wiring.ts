import type { FastifyInstance } from 'fastify';
import type { TokenService } from '../../auth/token-service.js';
import type { Config } from '../../config/config.js';
import { queuePrefix } from '../../jobs/registry.js';
import type { SearchService } from '../../search/search-service.js';
import type { Db } from '../../storage/db.js';
import { loadOrCreateKey } from '../../storage/key-store.js';
import type { ChannelSender, Delivery } from './types.js';
import { WebsocketSender } from './websocket.js';
import { WebSocketHub } from './websocket-hub.js';
import { websocketRoutes } from './websocket-routes.js';
import { BindingTokens, generateBindingKey } from './websocket-token.js';

export interface WebsocketChannelDeps {
  config: Config;
  db: Db;
  log: (message: string, error?: unknown) => void;
  /** The HTTP server, its token check and search: present in server processes (sockets live there). */
  http?: FastifyInstance;
  tokens?: TokenService;
  search?: SearchService;
  fhirBase?: string;
}

/**
 * The websocket sender of this process, and (in a server process) the socket endpoint and
 * `$get-ws-binding-token`. Returned at once (channel registration is synchronous); the keys are
 * loaded from the database and Redis subscribed before the first delivery and before the
 * server listens (the routes are a plugin fastify awaits).
 */
export function websocketChannel(deps: WebsocketChannelDeps): ChannelSender & { hub?: WebSocketHub } {
  const { http, tokens, search, fhirBase, config } = deps;
  const hub = http && tokens && search && fhirBase ? new WebSocketHub({ search, fhirBase, log: deps.log }) : undefined;
  const made: Promise<WebsocketSender> = (async () => {
    const redis = config.redisUrl
      ? {
          url: config.redisUrl,
          channel: `${queuePrefix({ databaseUrl: config.databaseUrl, schema: config.databaseSchema, dataDir: config.dataDir })}:subscription-websocket`,
          key: await loadOrCreateKey(deps.db, 'subscription-websocket-fanout', generateBindingKey),
        }
      : undefined;
    return WebsocketSender.create({ hub, redis, log: deps.log });
  })();
  // Not awaited here: a failure surfaces at the first delivery and in the plugin below.
  made.catch(() => undefined);
  if (hub && http && tokens) {
    void http.register(async (app) => {
      await made;
      const bindingTokens = new BindingTokens(await loadOrCreateKey(deps.db, 'subscription-websocket-binding', generateBindingKey));
      await websocketRoutes(app, { hub, tokens, bindingTokens, baseUrl: config.baseUrl, log: deps.log });
    });
  }
  return {
    type: 'websocket',
    hub,
    async deliver(delivery: Delivery) {
      await (await made).deliver(delivery);
    },
    async close() {
      await (await made.catch(() => undefined))?.close();
    },
  };
}
