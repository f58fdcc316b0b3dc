import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuthContext, TokenService } from './token-service.js';

/**
 * Administration (client registration, users, launch contexts, key rotation) is for an ADMIN
 * user's token, or a backend client's token with system-level write rights over every type
 * (such as the bootstrap client), so deployments can automate it.
 */
export function isAdministrator(auth: AuthContext): boolean {
  if (auth.kind === 'user') return auth.role === 'ADMIN' && auth.scopes.some((s) => s.context === 'user' && s.resourceType === '*' && s.permissions.has('c'));
  return auth.scopes.some((s) => s.context === 'system' && s.resourceType === '*' && s.permissions.has('c') && s.permissions.has('u') && s.filter === undefined);
}

/** The administrator calling, or undefined after answering 401 / 403 (OAuth-style JSON). */
export async function requireAdministrator(tokens: TokenService, request: FastifyRequest, reply: FastifyReply): Promise<AuthContext | undefined> {
  let auth: AuthContext;
  try {
    auth = await tokens.verify(request.headers.authorization);
  } catch {
    reply.code(401).header('WWW-Authenticate', 'Bearer realm="fhir-auth", error="invalid_token"').send({ error: 'invalid_token', error_description: 'an administrator access token is required' });
    return undefined;
  }
  if (!isAdministrator(auth)) {
    reply.code(403).header('WWW-Authenticate', 'Bearer realm="fhir-auth", error="insufficient_scope"').send({ error: 'insufficient_scope', error_description: 'needs an ADMIN user or a client with system write rights' });
    return undefined;
  }
  return auth;
}
