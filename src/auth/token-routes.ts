import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ClientRegistry, OAuthClient } from './clients.js';
import { parseScope } from './scopes.js';
import type { TokenService } from './token-service.js';

/** OAuth 2 error response (RFC 6749 §5.2): not an OperationOutcome, as OAuth clients expect. */
function oauthError(reply: FastifyReply, status: number, error: string, description: string): FastifyReply {
  if (status === 401) reply.header('WWW-Authenticate', 'Basic realm="fhir-auth"');
  return reply.code(status).header('Cache-Control', 'no-store').send({ error, error_description: description });
}

function basicCredentials(header: string | undefined): [string, string] | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return [decodeURIComponent(decoded.slice(0, colon)), decodeURIComponent(decoded.slice(colon + 1))];
}

/** A requested scope is granted when an allowed scope covers its type and permissions. */
function grantable(client: OAuthClient, requested: string): boolean {
  const wanted = parseScope(requested);
  if (!wanted) return false;
  return client.allowedScopes.some((allowedText) => {
    const allowed = parseScope(allowedText);
    if (!allowed || allowed.context !== wanted.context) return false;
    if (allowed.resourceType !== '*' && allowed.resourceType !== wanted.resourceType) return false;
    return [...wanted.permissions].every((p) => allowed.permissions.has(p));
  });
}

export function registerTokenRoutes(app: FastifyInstance, deps: { clients: ClientRegistry; tokens: TokenService }): void {
  app.post('/auth/token', async (request, reply) => {
    const body = (request.body ?? {}) as Record<string, unknown>;
    const field = (name: string) => (typeof body[name] === 'string' ? (body[name] as string) : undefined);
    let credentials: [string, string] | undefined;
    try {
      credentials = basicCredentials(request.headers.authorization);
    } catch {
      return oauthError(reply, 401, 'invalid_client', 'malformed Basic credentials');
    }
    const clientId = credentials?.[0] ?? field('client_id');
    const secret = credentials?.[1] ?? field('client_secret');
    const grantType = field('grant_type');
    if (!grantType) return oauthError(reply, 400, 'invalid_request', 'grant_type is required');
    if (grantType !== 'client_credentials') {
      return oauthError(reply, 400, 'unsupported_grant_type', `grant_type ${grantType.slice(0, 40)} is not supported here`);
    }
    if (!clientId || !secret) return oauthError(reply, 401, 'invalid_client', 'client authentication is required');
    const client = deps.clients.authenticate(clientId, secret);
    if (!client || !client.grantTypes.includes(grantType)) {
      return oauthError(reply, 401, 'invalid_client', 'unknown client or wrong secret');
    }
    const requested = (field('scope') ?? '').split(/\s+/).filter(Boolean);
    const scopes = requested.length > 0 ? requested : client.allowedScopes.slice(0, 1);
    const refused = scopes.filter((s) => !grantable(client, s));
    if (refused.length > 0) {
      return oauthError(reply, 400, 'invalid_scope', `scope not allowed for this client: ${refused.join(' ').slice(0, 200)}`);
    }
    const scope = scopes.join(' ');
    const accessToken = await deps.tokens.issue({ sub: client.id, clientId: client.id, scope });
    return reply
      .header('Cache-Control', 'no-store')
      .header('Pragma', 'no-cache')
      .send({ access_token: accessToken, token_type: 'Bearer', expires_in: deps.tokens.ttlSeconds, scope });
  });

  app.get('/auth/jwks', async () => deps.tokens.jwks());
}
