import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { decodeJwt } from 'jose';
import { basicCredentials, fieldsOf } from '../auth/oauth-http.js';
import type { TokenService } from '../auth/token-service.js';
import { authServerAuditEvent, callerOf, type AuditCaller, type AuditSource, type AuthServerAuditRecord } from './audit-event.js';
import type { AuditLog } from './audit-log.js';
import { auditedRoute } from './http-audit.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** What an authorization-server answer said, read on its way out (for its AuditEvent). */
    auditAnswer?: AuthServerAnswer;
  }
}

interface AuthServerAnswer {
  error?: string;
  accessToken?: string;
  active?: boolean;
  jti?: string;
  clientId?: string;
  userId?: string;
}

export type AuthServerEndpoint = Pick<AuthServerAuditRecord, 'kind' | 'event' | 'dicom' | 'action'>;
type Endpoint = AuthServerEndpoint;

const RESTRICTED_FUNCTION = { code: '110132', display: 'Use of a restricted function' };
const USER_ATTRIBUTES = { code: '110137', display: 'User Security Attributes Changed' };
const OBJECT_ATTRIBUTES = { code: '110135', display: 'Object Security Attributes Changed' };

/** The audited authorization-server routes (method + route pattern). */
const ENDPOINTS: Record<string, Endpoint> = {
  'POST /auth/token': { kind: 'authentication', event: 'token', action: 'E' },
  'POST /auth/introspect': { kind: 'authentication', event: 'introspect', action: 'E' },
  'POST /auth/revoke': { kind: 'authentication', event: 'revoke', action: 'E' },
  'GET /auth/users': { kind: 'administration', event: 'user-list', dicom: RESTRICTED_FUNCTION, action: 'R' },
  'POST /auth/users': { kind: 'administration', event: 'user-create', dicom: USER_ATTRIBUTES, action: 'C' },
  'PATCH /auth/users/:id': { kind: 'administration', event: 'user-update', dicom: USER_ATTRIBUTES, action: 'U' },
  'POST /auth/launch': { kind: 'administration', event: 'launch-create', dicom: RESTRICTED_FUNCTION, action: 'C' },
  'POST /auth/keys/rotate': { kind: 'administration', event: 'keys-rotate', dicom: OBJECT_ATTRIBUTES, action: 'E' },
  'POST /auth/register': { kind: 'administration', event: 'client-register', dicom: OBJECT_ATTRIBUTES, action: 'C' },
  'GET /auth/register/:clientId': { kind: 'administration', event: 'client-read', dicom: RESTRICTED_FUNCTION, action: 'R' },
  'PUT /auth/register/:clientId': { kind: 'administration', event: 'client-update', dicom: OBJECT_ATTRIBUTES, action: 'U' },
  'DELETE /auth/register/:clientId': { kind: 'administration', event: 'client-delete', dicom: OBJECT_ATTRIBUTES, action: 'D' },
};

/** The audited endpoint of a route, if any. */
export function authServerEndpointOf(method: string, pattern: string): Endpoint | undefined {
  return ENDPOINTS[`${method} ${pattern.replace(/\/+$/, '')}`];
}

/** The audited endpoint a request is for, if any (decided once per route: see auditedRoute). */
function authServerEndpoint(request: FastifyRequest): Endpoint | undefined {
  return (request.auditRoute ?? auditedRoute(request)).authServer;
}

/** Claims of a JWT, not verified (our own tokens on their way out; client assertions only for the claimed client id). */
function claimsOf(token: string | undefined): Record<string, unknown> | undefined {
  if (!token) return undefined;
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}

const text = (value: unknown) => (typeof value === 'string' && value.length > 0 && value.length <= 256 ? value : undefined);

/** The client a token-endpoint request names (authenticated or not: a refused request is audited under the id it claimed). */
function claimedClient(request: FastifyRequest, body: Record<string, string>): string | undefined {
  return text(basicCredentials(request.headers.authorization)?.[0]) ?? text(body.client_id) ?? text(claimsOf(body.client_assertion)?.iss);
}

/** The answer's fields the event needs; tokens themselves are never kept. */
function answerOf(payload: unknown): AuthServerAnswer | undefined {
  if (typeof payload !== 'string' || payload.length > 100_000 || !payload.startsWith('{')) return undefined;
  try {
    const body = JSON.parse(payload) as Record<string, unknown>;
    return {
      error: text(body.error),
      accessToken: typeof body.access_token === 'string' ? body.access_token : undefined,
      active: typeof body.active === 'boolean' ? body.active : undefined,
      jti: text(body.jti),
      clientId: text(body.client_id),
      userId: text(body.id),
    };
  } catch {
    return undefined;
  }
}

/**
 * Audits the authorization server: every token request (issued or refused, with the grant
 * type and the OAuth error code), introspection and revocation, and every call of the
 * administration API (users and roles, client registration, launch contexts, key rotation).
 * Sign-ins are audited by the sign-in pages themselves (app.ts, onSignIn). Like FHIR
 * requests, the event is built after the answer is sent and queued; secrets (client secrets,
 * tokens, passwords) never go into it — a token is named by its `jti`.
 */
export function registerAuthServerAudit(http: FastifyInstance, deps: { audit: AuditLog; source: AuditSource; tokens: TokenService }): void {
  if (!deps.audit.enabled) return;
  const base = deps.source.baseUrl;

  // Callback style: these run on every request, and most are not authorization-server calls
  // (no promise for those).
  http.addHook('onSend', (request, _reply, payload, done) => {
    if (authServerEndpoint(request)) request.auditAnswer = answerOf(payload);
    done(null, payload);
  });

  http.addHook('onResponse', (request, reply, done) => {
    const endpoint = authServerEndpoint(request);
    if (!endpoint) return done();
    recordCall(request, reply, endpoint).then(
      () => done(),
      (e: unknown) => {
        request.log.error(e, 'audit: the AuditEvent of this call could not be built');
        done();
      },
    );
  });

  const recordCall = async (request: FastifyRequest, reply: FastifyReply, endpoint: NonNullable<ReturnType<typeof authServerEndpoint>>) => {
    const body = fieldsOf(request.body);
    const answer = request.auditAnswer ?? {};
    const status = reply.statusCode;
    const entities: AuthServerAuditRecord['entities'] = [];
    const tokenEntity = (jti: unknown, description: string) => {
      const value = text(jti);
      if (value) entities.push({ identifier: { system: `${base}/auth/tokens`, value }, description });
    };
    let caller: AuditCaller;
    let outcomeDesc: string;
    if (endpoint.event === 'token') {
      const grant = text(body.grant_type)?.slice(0, 40) ?? 'no grant_type';
      const issued = claimsOf(answer.accessToken);
      if (status < 400 && issued) {
        const clientId = text(issued.client_id);
        const subject = text(issued.sub);
        caller = { kind: subject && subject !== clientId ? 'user' : 'client', subject, clientId, fhirUser: text(issued.fhirUser), role: text(issued.role) };
        tokenEntity(issued.jti, 'access token issued');
        const patient = text(issued.patient);
        if (patient) entities.push({ patient });
        outcomeDesc = `${grant} token issued`;
      } else {
        const clientId = claimedClient(request, body);
        caller = clientId ? { kind: 'client', subject: clientId, clientId } : { kind: 'anonymous' };
        outcomeDesc = `${grant} refused${answer.error ? `: ${answer.error}` : ''}`;
      }
    } else if (endpoint.event === 'introspect' || endpoint.event === 'revoke') {
      const bearer = /^Bearer\s/i.test(request.headers.authorization ?? '') ? await deps.tokens.verify(request.headers.authorization).catch(() => undefined) : undefined;
      const clientId = claimedClient(request, body);
      caller = bearer ? callerOf(bearer) : clientId ? { kind: 'client', subject: clientId, clientId } : { kind: 'anonymous' };
      if (endpoint.event === 'introspect') {
        tokenEntity(answer.jti, 'token introspected');
        outcomeDesc = status < 400 ? `introspection: token ${answer.active ? 'active' : 'inactive'}` : `introspection refused${answer.error ? `: ${answer.error}` : ''}`;
      } else {
        tokenEntity(claimsOf(body.token)?.jti, 'token revoked');
        outcomeDesc = status < 400 ? 'revocation accepted' : `revocation refused${answer.error ? `: ${answer.error}` : ''}`;
      }
    } else {
      caller = callerOf(await deps.tokens.verify(request.headers.authorization).catch(() => undefined));
      const params = (request.params ?? {}) as Record<string, string | undefined>;
      const userId = text(params.id) ?? (endpoint.event === 'user-create' && status < 400 ? answer.userId : undefined);
      if (userId) entities.push({ identifier: { system: `${base}/auth/users`, value: userId } });
      const clientId = text(params.clientId) ?? (endpoint.event === 'client-register' && status < 400 ? answer.clientId : undefined);
      if (clientId) entities.push({ identifier: { system: `${base}/auth/clients`, value: clientId } });
      const patient = endpoint.event === 'launch-create' ? text((request.body as Record<string, unknown> | undefined)?.patient) : undefined;
      if (patient && /^[A-Za-z0-9\-.]{1,64}$/.test(patient)) entities.push({ patient });
      outcomeDesc = `${endpoint.event} HTTP ${status}${answer.error ? ` ${answer.error}` : ''}`;
    }
    const record: AuthServerAuditRecord = { ...endpoint, status, caller, address: request.ip, outcomeDesc, entities, requestId: request.id, recorded: new Date().toISOString() };
    deps.audit.record(authServerAuditEvent(record, deps.source));
  };
}
