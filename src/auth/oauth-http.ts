import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ClientCredentials } from './clients.js';

/** OAuth 2 error response (RFC 6749 §5.2): not an OperationOutcome, as OAuth clients expect. */
export function oauthError(reply: FastifyReply, status: number, error: string, description: string): FastifyReply {
  if (status === 401) reply.header('WWW-Authenticate', 'Basic realm="fhir-auth"');
  return reply.code(status).header('Cache-Control', 'no-store').header('Pragma', 'no-cache').send({ error, error_description: description });
}

/** Token-bearing answers must not be cached (RFC 6749 §5.1). */
export function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');
}

/** The fields of a form (or JSON) body or query as single strings; repeated or non-string fields are dropped. */
export function fieldsOf(source: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!source || typeof source !== 'object') return out;
  for (const [key, value] of Object.entries(source as Record<string, unknown>)) {
    if (typeof value === 'string') out[key] = value;
  }
  return out;
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded inside the Basic credentials. */
export function basicCredentials(header: string | undefined): [string, string] | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  // Clients are meant to percent-encode (RFC 6749 §2.3.1) but many send the raw secret (curl -u).
  const unescape = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  return [unescape(decoded.slice(0, colon)), unescape(decoded.slice(colon + 1))];
}

/** What a request offers to authenticate its client. */
export function clientCredentialsOf(request: FastifyRequest, body: Record<string, string>): ClientCredentials {
  const basic = basicCredentials(request.headers.authorization);
  return {
    basic,
    clientId: body.client_id,
    clientSecret: body.client_secret,
    assertionType: body.client_assertion_type,
    assertion: body.client_assertion,
  };
}

/** Appends query parameters to a redirect URI, keeping the query it already has (RFC 6749 §3.1.2). */
export function withQuery(uri: string, params: Record<string, string | undefined>): string {
  const url = new URL(uri);
  for (const [key, value] of Object.entries(params)) if (value !== undefined) url.searchParams.append(key, value);
  return url.toString();
}
