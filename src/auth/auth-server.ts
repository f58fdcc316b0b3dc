import rateLimit from '@fastify/rate-limit';
import type { FastifyError, FastifyInstance } from 'fastify';
import type { Patient } from 'fhir/r4.js';
import { AuthStore } from '../storage/auth-store.js';
import type { Db } from '../storage/db.js';
import { registerAdminRoutes } from './admin-routes.js';
import { registerAuthorizeRoutes, type PatientDirectory, type SignInAttempt } from './authorize-routes.js';
import { ClientService } from './clients.js';
import { GrantService } from './grants.js';
import { KeyRing, type SigningKeyPair } from './keys.js';
import { registerRegistrationRoutes } from './registration-routes.js';
import { authEndpoints, registerDiscoveryRoutes, type AuthEndpoints } from './smart-discovery.js';
import { registerTokenRoutes } from './token-routes.js';
import { registerUserinfoRoutes } from './userinfo-routes.js';
import { TokenService } from './token-service.js';
import { loadRoleTable, UserService } from './users.js';

export interface AuthServerOptions {
  db: Db;
  baseUrl: string;
  accessTokenTtlSeconds: number;
  /** conformance/smart-roles.json */
  rolesPath: string;
  /** The ES256 key of earlier versions (server_key), adopted at first start so its tokens stay valid. */
  legacyAccessKey: () => Promise<SigningKeyPair>;
  tokenRateLimitPerMinute: number;
  signInRateLimitPerMinute: number;
  /** Told of every sign-in attempt (the audit trail). */
  onSignIn?: (attempt: SignInAttempt) => void;
}

/** The authorization server's parts; `register` mounts its routes on the HTTP server. */
export interface AuthServer {
  store: AuthStore;
  tokens: TokenService;
  clients: ClientService;
  users: UserService;
  endpoints: AuthEndpoints;
  register(http: FastifyInstance, patients: PatientDirectory): Promise<void>;
}

const SWEEP_INTERVAL_MS = 10 * 60_000;
/** Refresh and id tokens live longer than access tokens; retired keys are kept a day. */
const RETIRED_KEY_RETENTION_SECONDS = 24 * 3600;

export async function createAuthServer(options: AuthServerOptions): Promise<AuthServer> {
  const store = new AuthStore(options.db);
  const endpoints = authEndpoints(options.baseUrl);
  const keys = await KeyRing.open(store, Math.max(RETIRED_KEY_RETENTION_SECONDS, options.accessTokenTtlSeconds * 2), options.legacyAccessKey);
  const tokens = new TokenService({
    keys,
    issuer: endpoints.issuer,
    ttlSeconds: options.accessTokenTtlSeconds,
    isRevoked: (jti) => store.isAccessTokenRevoked(jti),
    revoke: (jti, expiresAt) => store.revokeAccessToken(jti, expiresAt),
  });
  const clients = new ClientService(store, endpoints.token);
  const users = new UserService(store, loadRoleTable(options.rolesPath));
  await store.sweep();

  return {
    store,
    tokens,
    clients,
    users,
    endpoints,
    async register(http, patients) {
      // Expired codes, launches, pending sign-ins and revocations are removed now and then.
      const sweeper = setInterval(() => void store.sweep().catch((e: unknown) => http.log.warn({ err: e }, 'auth sweep failed')), SWEEP_INTERVAL_MS);
      sweeper.unref();
      http.addHook('onClose', async () => clearInterval(sweeper));
      registerDiscoveryRoutes(http, endpoints);
      const grants = new GrantService(store, tokens, endpoints.style, endpoints.fhirBase, async (id) => (await store.getUser(id))?.username);
      // One plugin so rate limits and the OAuth-style 429 stay on the /auth routes.
      await http.register(async (auth) => {
        await auth.register(rateLimit, { global: false });
        auth.setErrorHandler((error: FastifyError, _request, reply) => {
          if (error.statusCode === 429) {
            return reply.code(429).header('Cache-Control', 'no-store').send({ error: 'too_many_requests', error_description: error.message });
          }
          throw error;
        });
        registerTokenRoutes(auth, { clients, tokens, grants, store, rateLimitPerMinute: options.tokenRateLimitPerMinute });
        registerAuthorizeRoutes(auth, { store, clients, users, grants, endpoints, patients, signInRateLimitPerMinute: options.signInRateLimitPerMinute, onSignIn: options.onSignIn });
        registerRegistrationRoutes(auth, { store, tokens, registrationEndpoint: endpoints.register });
        registerUserinfoRoutes(auth, { tokens, fhirBase: endpoints.fhirBase });
        registerAdminRoutes(auth, { store, tokens, users, patients, issuer: endpoints.issuer });
      });
    },
  };
}

/** A display label for the patient picker. */
export function patientLabel(patient: Patient): string {
  const name = patient.name?.[0];
  const text = name?.text ?? [...(name?.given ?? []), name?.family].filter(Boolean).join(' ');
  return [text || 'unnamed', patient.birthDate].filter(Boolean).join(', ');
}
