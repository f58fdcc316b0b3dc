import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK, type CryptoKey } from 'jose';
import { errors } from '../fhir/errors.js';
import { parseScopes, type ResourceScope } from './scopes.js';

const ALGORITHM = 'ES256';
/** Verified tokens are remembered briefly so a busy client does not pay a signature check per request. */
const VERIFIED_CACHE_LIMIT = 10_000;

export interface AccessTokenClaims {
  sub: string;
  clientId: string;
  scope: string;
}

export interface AuthContext {
  clientId: string;
  subject: string;
  scope: string;
  scopes: ResourceScope[];
  expiresAt: number;
}

export interface SigningKeyPair {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

export async function generateSigningKey(): Promise<SigningKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(ALGORITHM, { extractable: true });
  const kid = randomUUID();
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: ALGORITHM },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: ALGORITHM, use: 'sig' },
  };
}

/** Issues and verifies short-lived access tokens (JWT, ES256). */
export class TokenService {
  private readonly verified = new Map<string, AuthContext>();

  private constructor(
    private readonly key: SigningKeyPair,
    private readonly privateKey: CryptoKey,
    private readonly publicKey: CryptoKey,
    private readonly issuer: string,
    readonly ttlSeconds: number,
  ) {}

  static async create(key: SigningKeyPair, issuer: string, ttlSeconds: number): Promise<TokenService> {
    const privateKey = (await importJWK(key.privateJwk, ALGORITHM)) as CryptoKey;
    const publicKey = (await importJWK(key.publicJwk, ALGORITHM)) as CryptoKey;
    return new TokenService(key, privateKey, publicKey, issuer, ttlSeconds);
  }

  jwks(): { keys: JWK[] } {
    return { keys: [this.key.publicJwk] };
  }

  async issue(claims: AccessTokenClaims): Promise<string> {
    return new SignJWT({ scope: claims.scope, client_id: claims.clientId })
      .setProtectedHeader({ alg: ALGORITHM, kid: this.key.kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setSubject(claims.sub)
      .setAudience(this.issuer)
      .setIssuedAt()
      .setJti(randomUUID())
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.privateKey);
  }

  /** The caller of a request, or a 401 for a missing, malformed, forged or expired token. */
  async verify(authorization: string | undefined): Promise<AuthContext> {
    if (!authorization) throw errors.unauthorized('this request needs an access token (Authorization: Bearer …)');
    const match = /^Bearer\s+([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+)\s*$/i.exec(authorization);
    if (!match) throw errors.unauthorized('the Authorization header is not a Bearer token');
    const token = match[1];
    const now = Date.now() / 1000;
    const cached = this.verified.get(token);
    if (cached) {
      if (cached.expiresAt > now) return cached;
      this.verified.delete(token);
    }
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.publicKey, { issuer: this.issuer, audience: this.issuer, algorithms: [ALGORITHM] }));
    } catch {
      throw errors.unauthorized('the access token is invalid or expired');
    }
    const scope = typeof payload.scope === 'string' ? payload.scope : '';
    const context: AuthContext = {
      clientId: typeof payload.client_id === 'string' ? payload.client_id : '',
      subject: payload.sub ?? '',
      scope,
      scopes: parseScopes(scope),
      expiresAt: payload.exp ?? now,
    };
    if (this.verified.size >= VERIFIED_CACHE_LIMIT) this.verified.clear();
    this.verified.set(token, context);
    return context;
  }
}
