import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { AuthStore, ClientRecord } from '../storage/auth-store.js';

export type { ClientRecord } from '../storage/auth-store.js';

/** System scopes over everything, in v1 and v2 syntax. */
export const SYSTEM_ALL_SCOPES = ['system/*.*', 'system/*.cruds', 'system/*.read', 'system/*.write', 'system/*.rs'];

export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Client assertion algorithms SMART Backend Services names. */
export const ASSERTION_ALGORITHMS = ['RS384', 'ES384'];
/** A client assertion may live at most this long (SMART Backend Services: 5 minutes). */
const MAX_ASSERTION_LIFETIME_SECONDS = 300;
/** Clock skew tolerated on assertion times. */
const CLOCK_SKEW_SECONDS = 10;

/** SHA-256 hex digest: secrets, codes and tokens are random and long, so a fast digest is enough. */
export function digest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of a presented secret with a stored digest. */
export function secretMatches(presented: string, storedDigest: string | undefined): boolean {
  const a = Buffer.from(digest(presented), 'hex');
  const b = Buffer.from(storedDigest ?? digest(randomBytes(16).toString('hex')), 'hex');
  return a.length === b.length && timingSafeEqual(a, b) && storedDigest !== undefined;
}

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export type ClientAuthResult = { client: ClientRecord; method: 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' } | { error: string; status: 400 | 401 };

export interface ClientCredentials {
  basic?: [string, string];
  clientId?: string;
  clientSecret?: string;
  assertionType?: string;
  assertion?: string;
}

/** jwks_uri is fetched over https, or plain http only from this machine (tests, local tools). */
export function fetchableJwksUri(uri: string): boolean {
  try {
    const url = new URL(uri);
    return url.protocol === 'https:' || (url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname));
  } catch {
    return false;
  }
}

export class ClientService {
  private readonly remoteKeySets = new Map<string, JWTVerifyGetKey>();

  constructor(
    private readonly store: AuthStore,
    /** The token endpoint's URL: the `aud` client assertions must carry. */
    private readonly tokenEndpoint: string,
  ) {}

  get(clientId: string): Promise<ClientRecord | undefined> {
    return this.store.getClient(clientId);
  }

  /**
   * The bootstrap (or development) client: confidential, client_credentials, system scopes.
   * A development client replaces those of earlier runs.
   */
  async ensureSystemClient(clientId: string, secret: string, development = false): Promise<void> {
    if (development) await this.store.deleteDevelopmentClients();
    await this.store.putClient({
      clientId,
      kind: 'confidential-symmetric',
      secretDigest: digest(secret),
      redirectUris: [],
      grantTypes: ['client_credentials'],
      scope: SYSTEM_ALL_SCOPES.join(' '),
      name: development ? 'development client' : 'bootstrap client',
      metadata: development ? { development: true } : { bootstrap: true },
    });
  }

  /**
   * Authenticates the client of a token, introspection or revocation request: HTTP Basic or
   * form secret (confidential-symmetric), a private_key_jwt assertion (confidential-asymmetric,
   * identified by the assertion's `iss`), or a bare client_id (public clients).
   */
  async authenticate(c: ClientCredentials): Promise<ClientAuthResult> {
    const fail = (error: string): ClientAuthResult => ({ error, status: 401 });
    if (c.assertion !== undefined || c.assertionType !== undefined) {
      if (c.assertionType !== JWT_BEARER_ASSERTION || !c.assertion) return fail(`client_assertion_type must be ${JWT_BEARER_ASSERTION} with a client_assertion`);
      return this.authenticateAssertion(c.assertion, c.clientId);
    }
    if (c.basic) {
      const client = await this.store.getClient(c.basic[0]);
      const ok = secretMatches(c.basic[1], client?.secretDigest);
      if (!client || !ok || client.kind !== 'confidential-symmetric') return fail('unknown client or wrong secret');
      return { client, method: 'client_secret_basic' };
    }
    if (!c.clientId) return fail('client authentication is required');
    const client = await this.store.getClient(c.clientId);
    if (c.clientSecret !== undefined) {
      const ok = secretMatches(c.clientSecret, client?.secretDigest);
      if (!client || !ok || client.kind !== 'confidential-symmetric') return fail('unknown client or wrong secret');
      return { client, method: 'client_secret_post' };
    }
    if (!client) return fail('unknown client');
    if (client.kind !== 'public') return fail('this client must authenticate (client secret or private_key_jwt)');
    return { client, method: 'none' };
  }

  private async authenticateAssertion(assertion: string, clientIdParam: string | undefined): Promise<ClientAuthResult> {
    const fail = (error: string): ClientAuthResult => ({ error, status: 401 });
    let clientId: string | undefined;
    try {
      clientId = decodeJwt(assertion).iss;
    } catch {
      return fail('client_assertion is not a JWT');
    }
    if (!clientId) return fail('client_assertion has no iss');
    if (clientIdParam !== undefined && clientIdParam !== clientId) return fail('client_id does not match the assertion');
    const client = await this.store.getClient(clientId);
    if (!client || client.kind !== 'confidential-asymmetric') return fail('unknown client');
    const keys = this.keySet(client);
    if (!keys) return fail('the client has no usable keys');
    let payload;
    try {
      ({ payload } = await jwtVerify(assertion, keys, {
        algorithms: ASSERTION_ALGORITHMS,
        issuer: clientId,
        subject: clientId,
        audience: this.tokenEndpoint,
        requiredClaims: ['exp', 'jti'],
        clockTolerance: CLOCK_SKEW_SECONDS,
      }));
    } catch (e) {
      return fail(`client_assertion rejected: ${e instanceof Error ? e.message.slice(0, 120) : 'invalid'}`);
    }
    const now = Date.now() / 1000;
    if ((payload.exp ?? 0) > now + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS) return fail('client_assertion exp is more than 5 minutes ahead');
    const fresh = await this.store.rememberJti(clientId, String(payload.jti), new Date(((payload.exp ?? now) + CLOCK_SKEW_SECONDS) * 1000));
    if (!fresh) return fail('client_assertion jti was already used');
    return { client, method: 'private_key_jwt' };
  }

  private keySet(client: ClientRecord): JWTVerifyGetKey | undefined {
    if (client.jwks) return createLocalJWKSet(client.jwks as JSONWebKeySet);
    if (!client.jwksUri || !fetchableJwksUri(client.jwksUri)) return undefined;
    let set = this.remoteKeySets.get(client.jwksUri);
    if (!set) {
      set = createRemoteJWKSet(new URL(client.jwksUri), { timeoutDuration: 5_000, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 });
      this.remoteKeySets.set(client.jwksUri, set);
    }
    return set;
  }
}
