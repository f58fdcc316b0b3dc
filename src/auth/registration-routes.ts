import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthStore, ClientKind, ClientRecord } from '../storage/auth-store.js';
import { requireAdministrator } from './admin-auth.js';
import { digest, fetchableJwksUri, newSecret, secretMatches } from './clients.js';
import { noStore } from './oauth-http.js';
import { redirectUriProblem } from './redirect-uris.js';
import { NON_RESOURCE_SCOPES, parseScope, splitScopes } from './scopes.js';
import type { TokenService } from './token-service.js';

export interface RegistrationRouteDeps {
  store: AuthStore;
  tokens: TokenService;
  /** URL of /auth/register, for registration_client_uri. */
  registrationEndpoint: string;
}

const AUTH_METHOD_KIND: Record<string, ClientKind> = {
  none: 'public',
  client_secret_basic: 'confidential-symmetric',
  client_secret_post: 'confidential-symmetric',
  private_key_jwt: 'confidential-asymmetric',
};
const GRANTS = ['authorization_code', 'refresh_token', 'client_credentials'];
const DEFAULT_USER_SCOPE = 'openid fhirUser launch launch/patient launch/encounter offline_access online_access patient/*.cruds user/*.cruds';
const DEFAULT_SYSTEM_SCOPE = 'system/*.rs';

type Checked = { ok: Omit<ClientRecord, 'clientId' | 'secretDigest' | 'registrationTokenDigest'> } | { error: string; description: string };

function bad(error: string, description: string): Checked {
  return { error, description };
}

/** RFC 7591 §2 client metadata, checked; the stored form of a client. */
function checkMetadata(input: unknown): Checked {
  if (!input || typeof input !== 'object' || Array.isArray(input)) return bad('invalid_client_metadata', 'the body must be a JSON object');
  const m = input as Record<string, unknown>;
  const method = m.token_endpoint_auth_method ?? 'client_secret_basic';
  if (typeof method !== 'string' || !AUTH_METHOD_KIND[method]) return bad('invalid_client_metadata', `token_endpoint_auth_method must be one of ${Object.keys(AUTH_METHOD_KIND).join(', ')}`);
  const kind = AUTH_METHOD_KIND[method];
  const grantTypes = m.grant_types ?? ['authorization_code'];
  if (!Array.isArray(grantTypes) || grantTypes.length === 0 || !grantTypes.every((g) => typeof g === 'string' && GRANTS.includes(g))) {
    return bad('invalid_client_metadata', `grant_types must be a list of ${GRANTS.join(', ')}`);
  }
  if (kind === 'public' && grantTypes.includes('client_credentials')) return bad('invalid_client_metadata', 'a public client (none) cannot use client_credentials');
  const redirectUris = m.redirect_uris ?? [];
  if (!Array.isArray(redirectUris) || !redirectUris.every((u) => typeof u === 'string')) return bad('invalid_redirect_uri', 'redirect_uris must be a list of URIs');
  if (grantTypes.includes('authorization_code') && redirectUris.length === 0) return bad('invalid_redirect_uri', 'the authorization code grant needs redirect_uris');
  for (const uri of redirectUris as string[]) {
    const problem = redirectUriProblem(uri);
    if (problem) return bad('invalid_redirect_uri', problem);
  }
  const responseTypes = m.response_types ?? (grantTypes.includes('authorization_code') ? ['code'] : []);
  if (!Array.isArray(responseTypes) || !responseTypes.every((r) => r === 'code')) return bad('invalid_client_metadata', 'response_types may only be ["code"]');
  const scope = m.scope ?? (grantTypes.includes('client_credentials') ? DEFAULT_SYSTEM_SCOPE : DEFAULT_USER_SCOPE);
  if (typeof scope !== 'string') return bad('invalid_client_metadata', 'scope must be a space-separated string');
  const unknown = splitScopes(scope).filter((s) => !parseScope(s) && !(NON_RESOURCE_SCOPES as readonly string[]).includes(s));
  if (unknown.length > 0) return bad('invalid_client_metadata', `unknown scopes: ${unknown.join(' ').slice(0, 200)}`);
  let jwks: ClientRecord['jwks'];
  let jwksUri: string | undefined;
  if (m.jwks !== undefined && m.jwks_uri !== undefined) return bad('invalid_client_metadata', 'give jwks or jwks_uri, not both');
  if (m.jwks !== undefined) {
    const keys = (m.jwks as { keys?: unknown }).keys;
    if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => k && typeof k === 'object' && typeof (k as { kty?: unknown }).kty === 'string')) {
      return bad('invalid_client_metadata', 'jwks must be a JWK Set ({"keys": [...]})');
    }
    if (keys.some((k) => 'd' in (k as object))) return bad('invalid_client_metadata', 'jwks must hold public keys only');
    jwks = { keys: keys as Array<Record<string, unknown>> };
  }
  if (m.jwks_uri !== undefined) {
    if (typeof m.jwks_uri !== 'string' || !fetchableJwksUri(m.jwks_uri)) return bad('invalid_client_metadata', 'jwks_uri must be an https URL');
    jwksUri = m.jwks_uri;
  }
  if (kind === 'confidential-asymmetric' && !jwks && !jwksUri) return bad('invalid_client_metadata', 'private_key_jwt needs jwks or jwks_uri');
  const name = m.client_name === undefined ? undefined : String(m.client_name).slice(0, 200);
  const metadata: Record<string, unknown> = { token_endpoint_auth_method: method, response_types: responseTypes };
  for (const key of ['client_uri', 'logo_uri', 'contacts', 'software_id', 'software_version', 'tos_uri', 'policy_uri']) if (m[key] !== undefined) metadata[key] = m[key];
  return { ok: { kind, jwks, jwksUri, redirectUris: redirectUris as string[], grantTypes: grantTypes as string[], scope: splitScopes(scope).join(' '), name, metadata } };
}

function clientInformation(client: ClientRecord, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    client_id: client.clientId,
    client_id_issued_at: client.metadata.client_id_issued_at,
    redirect_uris: client.redirectUris,
    grant_types: client.grantTypes,
    scope: client.scope,
    ...(client.name ? { client_name: client.name } : {}),
    ...(client.jwks ? { jwks: client.jwks } : {}),
    ...(client.jwksUri ? { jwks_uri: client.jwksUri } : {}),
    ...client.metadata,
    ...(client.kind === 'confidential-symmetric' ? { client_secret_expires_at: 0 } : {}),
    ...extra,
  };
}

/** OAuth 2 Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592). */
export function registerRegistrationRoutes(app: FastifyInstance, deps: RegistrationRouteDeps): void {
  const { store } = deps;
  const error = (reply: FastifyReply, status: number, code: string, description: string) => noStore(reply).code(status).send({ error: code, error_description: description });

  app.post('/auth/register', async (request, reply) => {
    if (!(await requireAdministrator(deps.tokens, request, reply))) return reply;
    const checked = checkMetadata(request.body);
    if ('error' in checked) return error(reply, 400, checked.error, checked.description);
    const clientId = randomUUID();
    const secret = checked.ok.kind === 'confidential-symmetric' ? newSecret() : undefined;
    const registrationToken = randomBytes(32).toString('base64url');
    const client: ClientRecord = {
      ...checked.ok,
      clientId,
      secretDigest: secret ? digest(secret) : undefined,
      registrationTokenDigest: digest(registrationToken),
      metadata: { ...checked.ok.metadata, client_id_issued_at: Math.floor(Date.now() / 1000) },
    };
    await store.putClient(client);
    return noStore(reply)
      .code(201)
      .send(
        clientInformation(client, {
          ...(secret ? { client_secret: secret } : {}),
          registration_access_token: registrationToken,
          registration_client_uri: `${deps.registrationEndpoint}/${clientId}`,
        }),
      );
  });

  /** RFC 7592 §2: the registration access token of that client (or an administrator). */
  const managed = async (request: FastifyRequest<{ Params: { clientId: string } }>, reply: FastifyReply) => {
    const client = await store.getClient(request.params.clientId);
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
    if (match && client && secretMatches(match[1], client.registrationTokenDigest)) return { client, token: match[1] };
    if (match && !/^[^.]+\.[^.]+\.[^.]+$/.test(match[1])) {
      error(reply.header('WWW-Authenticate', 'Bearer error="invalid_token"'), 401, 'invalid_token', 'unknown registration access token');
      return undefined;
    }
    if (!(await requireAdministrator(deps.tokens, request, reply))) return undefined;
    if (!client) {
      error(reply, 404, 'invalid_client_id', 'no such client');
      return undefined;
    }
    return { client, token: undefined };
  };

  app.get<{ Params: { clientId: string } }>('/auth/register/:clientId', async (request, reply) => {
    const found = await managed(request, reply);
    if (!found) return reply;
    return noStore(reply).send(clientInformation(found.client, { registration_client_uri: `${deps.registrationEndpoint}/${found.client.clientId}`, ...(found.token ? { registration_access_token: found.token } : {}) }));
  });

  app.put<{ Params: { clientId: string } }>('/auth/register/:clientId', async (request, reply) => {
    const found = await managed(request, reply);
    if (!found) return reply;
    const body = request.body as Record<string, unknown> | undefined;
    if (body?.client_id !== found.client.clientId) return error(reply, 400, 'invalid_client_metadata', 'client_id in the body must be the client being updated');
    const checked = checkMetadata(body);
    if ('error' in checked) return error(reply, 400, checked.error, checked.description);
    let secret: string | undefined;
    let secretDigest = found.client.secretDigest;
    if (checked.ok.kind === 'confidential-symmetric' && !secretDigest) {
      secret = newSecret();
      secretDigest = digest(secret);
    }
    if (checked.ok.kind !== 'confidential-symmetric') secretDigest = undefined;
    const client: ClientRecord = {
      ...checked.ok,
      clientId: found.client.clientId,
      secretDigest,
      registrationTokenDigest: found.client.registrationTokenDigest,
      metadata: { ...checked.ok.metadata, client_id_issued_at: found.client.metadata.client_id_issued_at },
    };
    await store.putClient(client);
    return noStore(reply).send(
      clientInformation(client, {
        ...(secret ? { client_secret: secret } : {}),
        registration_client_uri: `${deps.registrationEndpoint}/${client.clientId}`,
        ...(found.token ? { registration_access_token: found.token } : {}),
      }),
    );
  });

  app.delete<{ Params: { clientId: string } }>('/auth/register/:clientId', async (request, reply) => {
    const found = await managed(request, reply);
    if (!found) return reply;
    await store.deleteClient(found.client.clientId);
    return reply.code(204).send();
  });
}
