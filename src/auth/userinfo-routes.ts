import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { noStore } from './oauth-http.js';
import { splitScopes } from './scopes.js';
import type { AuthContext, TokenService } from './token-service.js';

export interface UserinfoRouteDeps {
  tokens: TokenService;
  /** FHIR base URL: `fhirUser` is answered absolute, as in the id_token. */
  fhirBase: string;
}

/**
 * OpenID Connect UserInfo (Core §5.3), advertised as `userinfo_endpoint`: the signed-in user of
 * an access token granted `openid` — `sub` (the id_token's), and `fhirUser` when `fhirUser` was
 * granted too. Every other caller (no token, a bad one, a client's own token, no `openid`) is 401
 * with the RFC 6750 error in `WWW-Authenticate`.
 */
export function registerUserinfoRoutes(app: FastifyInstance, deps: UserinfoRouteDeps): void {
  const refuse = (reply: FastifyReply, error: 'invalid_token' | 'insufficient_scope', description: string) =>
    noStore(reply).code(401).header('WWW-Authenticate', `Bearer realm="fhir-auth", error="${error}"`).send({ error, error_description: description });

  const userinfo = async (request: FastifyRequest, reply: FastifyReply) => {
    let auth: AuthContext;
    try {
      auth = await deps.tokens.verify(request.headers.authorization);
    } catch {
      return refuse(reply, 'invalid_token', 'a valid access token is required (Authorization: Bearer …)');
    }
    const scopes = splitScopes(auth.scope);
    if (auth.kind !== 'user' || !scopes.includes('openid')) return refuse(reply, 'insufficient_scope', 'the access token was not granted openid for a signed-in user');
    const claims: Record<string, string> = { sub: auth.subject };
    if (scopes.includes('fhirUser') && auth.fhirUser) claims.fhirUser = `${deps.fhirBase}/${auth.fhirUser}`;
    return noStore(reply).send(claims);
  };
  app.get('/auth/userinfo', userinfo);
  app.post('/auth/userinfo', userinfo);
}
