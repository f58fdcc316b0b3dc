import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { Redis } from 'ioredis';
import type { AuthContext, TokenService } from '../auth/token-service.js';
import { FhirError } from '../fhir/errors.js';

export interface ApiRateLimitOptions {
  /** Requests per minute per OAuth client (a valid bearer token), per user of a client for user tokens; 0: no limit. */
  perClient: number;
  /** Requests per minute per IP address for requests without a valid token; 0: no limit. */
  perIp: number;
  tokens: TokenService;
  /** Counters shared by every server process when set; in-process otherwise. */
  redisUrl?: string;
  /** Which deployment the Redis counters belong to (its database schema): processes of one share them. */
  deployment: string;
}

/** Paths the API limits apply to; /auth has its own (token and sign-in) limits. */
const LIMITED = /^\/(fhir|hl7v2)(\/|$|\?)/;

/**
 * Gateway duty (seeds 001/002): per-client and per-IP request limits on the API, answered 429
 * with Retry-After and an OperationOutcome. The key is the token's client (and user, for a
 * user's token) when the token verifies (so a forged token cannot pick its own bucket), the IP address otherwise. With
 * REDIS_URL the counters live in Redis and every process of a deployment shares them; a Redis
 * outage lets requests through rather than refusing the whole API.
 */
export async function registerApiRateLimits(http: FastifyInstance, options: ApiRateLimitOptions): Promise<void> {
  if (options.perClient === 0 && options.perIp === 0) return;
  const redis = options.redisUrl ? new Redis(options.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 2_000, lazyConnect: false }) : undefined;
  redis?.on('error', () => undefined);
  let limiter: onRequestAsyncHookHandler | undefined;
  // The plugin lives in a child context of its own: its decorators and route hooks stay out of
  // the /auth plugin, which registers its own limits; only the hook below reaches the API.
  await http.register(async (child) => {
    await child.register(rateLimit, {
      global: false,
      redis,
      nameSpace: `fhir-api-rate:${options.deployment}:`,
      skipOnError: true,
    });
    limiter = child.rateLimit({
      timeWindow: 60_000,
      keyGenerator: async (request: FastifyRequest) => {
        const caller = await verifiedCaller(options.tokens, request.headers.authorization);
        if (!caller) return `ip:${request.ip}`;
        // A user's token (the console, SMART apps) counts against that user's own bucket within
        // its client: one busy user of the console does not throttle every other user of it.
        return caller.kind === 'user' ? `c:${caller.clientId}|u:${caller.fhirUser ?? caller.subject}` : `c:${caller.clientId}`;
      },
      // 0 means "no limit" for that kind of caller.
      max: (_request: FastifyRequest, key: string) => {
        const max = key.startsWith('c:') ? options.perClient : options.perIp;
        return max === 0 ? Number.MAX_SAFE_INTEGER : max;
      },
      errorResponseBuilder: (_request: FastifyRequest, context: { after: string; ttl: number }) =>
        new FhirError('busy', `too many requests: limit reached, retry after ${context.after}`, { 'Retry-After': String(Math.max(1, Math.ceil(context.ttl / 1000))) }),
    }) as onRequestAsyncHookHandler;
  });
  http.addHook('onRequest', async function (request, reply) {
    if (!LIMITED.test(request.url)) return;
    await limiter!.call(this, request, reply);
  });
  if (redis) http.addHook('onClose', async () => void (await redis.quit().catch(() => undefined)));
}

/** The caller of a token that verifies; undefined for none or an invalid one. */
async function verifiedCaller(tokens: TokenService, authorization: string | undefined): Promise<AuthContext | undefined> {
  if (!authorization) return undefined;
  try {
    return await tokens.verify(authorization);
  } catch {
    return undefined;
  }
}
