import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthStore } from '../storage/auth-store.js';
import { digest, type ClientAuthResult, type ClientService } from './clients.js';
import type { GrantService } from './grants.js';
import { clientCredentialsOf, fieldsOf, noStore, oauthError } from './oauth-http.js';
import { scopesAllow } from './scopes.js';
import type { TokenService } from './token-service.js';

export interface TokenRouteDeps {
  clients: ClientService;
  tokens: TokenService;
  grants: GrantService;
  store: AuthStore;
  /** Requests per minute and client address on /auth/token, /auth/introspect and /auth/revoke. */
  rateLimitPerMinute: number;
}

const GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials'];

async function authenticateClient(deps: TokenRouteDeps, request: FastifyRequest, body: Record<string, string>): Promise<ClientAuthResult> {
  return deps.clients.authenticate(clientCredentialsOf(request, body));
}

/** POST /auth/token (RFC 6749 §3.2), /auth/introspect (RFC 7662), /auth/revoke (RFC 7009), GET /auth/jwks. */
export function registerTokenRoutes(app: FastifyInstance, deps: TokenRouteDeps): void {
  const rateLimit = { max: deps.rateLimitPerMinute, timeWindow: 60_000 };

  app.post('/auth/token', { config: { rateLimit } }, async (request, reply) => {
    const body = fieldsOf(request.body);
    const grantType = body.grant_type;
    if (!grantType) return oauthError(reply, 400, 'invalid_request', 'grant_type is required');
    if (!GRANT_TYPES.includes(grantType)) {
      return oauthError(reply, 400, 'unsupported_grant_type', `grant_type ${grantType.slice(0, 40)} is not supported`);
    }
    const auth = await authenticateClient(deps, request, body);
    if ('error' in auth) return oauthError(reply, auth.status, 'invalid_client', auth.error);
    const { client } = auth;
    if (!client.grantTypes.includes(grantType)) return oauthError(reply, 400, 'unauthorized_client', `this client may not use ${grantType}`);
    let result;
    if (grantType === 'client_credentials') {
      if (client.kind === 'public') return oauthError(reply, 400, 'unauthorized_client', 'public clients cannot use client_credentials');
      result = await deps.grants.clientCredentials(client, body.scope);
    } else if (grantType === 'authorization_code') {
      if (!body.code) return oauthError(reply, 400, 'invalid_request', 'code is required');
      result = await deps.grants.redeemCode({ code: body.code, client, redirectUri: body.redirect_uri, verifier: body.code_verifier });
    } else {
      if (!body.refresh_token) return oauthError(reply, 400, 'invalid_request', 'refresh_token is required');
      result = await deps.grants.refresh({ token: body.refresh_token, client, scope: body.scope });
    }
    if ('error' in result) return oauthError(reply, 400, result.error, result.description);
    return noStore(reply).send(result.ok);
  });

  /**
   * Who may introspect: an authenticated confidential client, or a bearer token with system
   * read rights or of an ADMIN user (resource servers, admin tools).
   */
  const introspector = async (request: FastifyRequest, reply: FastifyReply, body: Record<string, string>): Promise<boolean> => {
    if (/^Bearer\s/i.test(request.headers.authorization ?? '')) {
      const caller = await deps.tokens.verify(request.headers.authorization).catch(() => undefined);
      if (caller && ((caller.kind === 'client' && scopesAllow(caller.scopes, '*', 'r')) || caller.role === 'ADMIN')) return true;
      oauthError(reply, 401, 'invalid_token', 'introspection needs a token with system read rights or of an ADMIN user');
      return false;
    }
    const auth = await authenticateClient(deps, request, body);
    if ('error' in auth || auth.client.kind === 'public') {
      oauthError(reply, 401, 'invalid_client', 'error' in auth ? auth.error : 'public clients cannot introspect');
      return false;
    }
    return true;
  };

  app.post('/auth/introspect', { config: { rateLimit } }, async (request, reply) => {
    const body = fieldsOf(request.body);
    if (!(await introspector(request, reply, body))) return reply;
    if (!body.token) return oauthError(reply, 400, 'invalid_request', 'token is required');
    noStore(reply);
    const claims = await deps.tokens.inspect(body.token);
    if (claims) {
      const { scope, client_id, sub, exp, iat, iss, aud, patient, encounter, fhirUser, role, jti } = claims;
      return reply.send({ active: true, token_type: 'Bearer', scope, client_id, sub, exp, iat, iss, aud, jti, patient, encounter, fhirUser, role });
    }
    const refresh = await deps.store.getRefresh(digest(body.token));
    if (refresh && !refresh.spent && !refresh.revoked && refresh.expiresAt.getTime() > Date.now()) {
      return reply.send({
        active: true,
        token_type: 'refresh_token',
        scope: refresh.scope,
        client_id: refresh.clientId,
        sub: refresh.userId,
        exp: Math.floor(refresh.expiresAt.getTime() / 1000),
        patient: refresh.context.patient,
      });
    }
    return reply.send({ active: false });
  });

  app.post('/auth/revoke', { config: { rateLimit } }, async (request, reply) => {
    const body = fieldsOf(request.body);
    const auth = await authenticateClient(deps, request, body);
    if ('error' in auth) return oauthError(reply, auth.status, 'invalid_client', auth.error);
    if (!body.token) return oauthError(reply, 400, 'invalid_request', 'token is required');
    const claims = await deps.tokens.inspect(body.token);
    // RFC 7009 §2.2: a token that is unknown, or not the client's, is answered 200 all the same.
    if (claims?.client_id === auth.client.clientId) await deps.tokens.revoke(body.token);
    const refresh = await deps.store.getRefresh(digest(body.token));
    if (refresh && refresh.clientId === auth.client.clientId) await deps.store.revokeFamily(refresh.familyId);
    return noStore(reply).code(200).send();
  });

  app.get('/auth/jwks', async () => deps.tokens.jwks());
}
