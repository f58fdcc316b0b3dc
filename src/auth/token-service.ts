import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose';
import { errors } from '../fhir/errors.js';
import type { KeyRing } from './keys.js';
import { parseScopes, type ResourceScope } from './scopes.js';

export { generateSigningKey, type SigningKeyPair } from './keys.js';

/** Verified tokens are remembered briefly so a busy client does not pay a signature check per request. */
const VERIFIED_CACHE_LIMIT = 10_000;
/** A cached token is checked against the revocation list again after this long (other processes may revoke). */
const REVOCATION_RECHECK_MS = 30_000;

export interface AccessTokenClaims {
  /** The user id for user tokens, the client id for client_credentials. */
  sub: string;
  clientId: string;
  scope: string;
  /** Launch context: the patient of `patient/` scopes, the encounter of an EHR launch. */
  patient?: string;
  encounter?: string;
  /** The signed-in user's FHIR resource (e.g. Practitioner/123) and hospital role. */
  fhirUser?: string;
  role?: string;
}

/**
 * Who is calling and what they may do, for every path that enforces scopes. `patient` is the
 * compartment `patient/` scopes are confined to; `scopes` carry granular `filter`s.
 */
export interface AuthContext {
  clientId: string;
  subject: string;
  scope: string;
  scopes: ResourceScope[];
  expiresAt: number;
  /** Token id (for revocation and audit). */
  jti?: string;
  /** 'user' for tokens from a sign-in (authorization code / refresh), 'client' for client_credentials. */
  kind: 'user' | 'client';
  patient?: string;
  encounter?: string;
  fhirUser?: string;
  role?: string;
}

export interface TokenServiceOptions {
  keys: KeyRing;
  /** `iss` of every token and the access tokens' `aud` (BASE_URL). */
  issuer: string;
  ttlSeconds: number;
  isRevoked: (jti: string) => Promise<boolean>;
  revoke: (jti: string, expiresAt: Date) => Promise<void>;
}

interface CachedContext {
  context: AuthContext;
  checkedAt: number;
}

const BEARER = /^Bearer\s+([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+)\s*$/i;
const JWT = /^[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+$/;

/** Issues and verifies short-lived access tokens (JWT, ES256) and OpenID Connect id_tokens (RS256). */
export class TokenService {
  private readonly verified = new Map<string, CachedContext>();
  readonly ttlSeconds: number;
  readonly issuer: string;

  constructor(private readonly options: TokenServiceOptions) {
    this.ttlSeconds = options.ttlSeconds;
    this.issuer = options.issuer;
  }

  get keys(): KeyRing {
    return this.options.keys;
  }

  jwks(): { keys: JWK[] } {
    return this.options.keys.jwks();
  }

  async issue(claims: AccessTokenClaims): Promise<string> {
    const { kid, alg, key } = await this.options.keys.signing('access-token');
    const extra: Record<string, string> = {};
    if (claims.patient) extra.patient = claims.patient;
    if (claims.encounter) extra.encounter = claims.encounter;
    if (claims.fhirUser) extra.fhirUser = claims.fhirUser;
    if (claims.role) extra.role = claims.role;
    return new SignJWT({ scope: claims.scope, client_id: claims.clientId, ...extra })
      .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setSubject(claims.sub)
      .setAudience(this.issuer)
      .setIssuedAt()
      .setJti(randomUUID())
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(key);
  }

  /** An OpenID Connect id_token for the client (`aud`), RS256 as SMART requires. */
  async issueIdToken(claims: { sub: string; clientId: string; fhirUser?: string; nonce?: string; authTime?: number; name?: string }): Promise<string> {
    const { kid, alg, key } = await this.options.keys.signing('id-token');
    const payload: JWTPayload = {};
    if (claims.fhirUser) payload.fhirUser = claims.fhirUser;
    if (claims.nonce) payload.nonce = claims.nonce;
    if (claims.authTime) payload.auth_time = claims.authTime;
    if (claims.name) payload.preferred_username = claims.name;
    return new SignJWT(payload)
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setSubject(claims.sub)
      .setAudience(claims.clientId)
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(key);
  }

  /** The claims of a live access token of ours (signature, expiry, revocation), else undefined. */
  async inspect(token: string): Promise<JWTPayload | undefined> {
    if (!JWT.test(token)) return undefined;
    // Only a bad token is "no token" (401). A database that cannot answer the key or revocation
    // lookup is the server's problem: that error goes on (503), it must not read as forged.
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      return undefined;
    }
    const key = await this.options.keys.verifying('access-token', kid);
    if (!key) return undefined;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, key, { issuer: this.issuer, audience: this.issuer, algorithms: ['ES256'] }));
    } catch {
      return undefined;
    }
    if (payload.jti && (await this.options.isRevoked(payload.jti))) return undefined;
    return payload;
  }

  /** Revokes a live access token of ours (RFC 7009); unknown tokens are ignored. */
  async revoke(token: string): Promise<boolean> {
    const payload = await this.inspect(token);
    if (!payload?.jti) return false;
    await this.options.revoke(payload.jti, new Date((payload.exp ?? Date.now() / 1000) * 1000));
    this.verified.delete(token);
    return true;
  }

  /** The caller of a request, or a 401 for a missing, malformed, forged, expired or revoked token. */
  async verify(authorization: string | undefined): Promise<AuthContext> {
    if (!authorization) throw errors.unauthorized('this request needs an access token (Authorization: Bearer …)');
    const match = BEARER.exec(authorization);
    if (!match) throw errors.unauthorized('the Authorization header is not a Bearer token');
    const token = match[1];
    const now = Date.now();
    const cached = this.verified.get(token);
    if (cached) {
      if (cached.context.expiresAt > now / 1000 && now - cached.checkedAt < REVOCATION_RECHECK_MS) return cached.context;
      this.verified.delete(token);
    }
    const payload = await this.inspect(token);
    if (!payload) throw errors.unauthorized('the access token is invalid, expired or revoked');
    const scope = typeof payload.scope === 'string' ? payload.scope : '';
    const text = (name: string) => (typeof payload[name] === 'string' ? (payload[name] as string) : undefined);
    const clientId = text('client_id') ?? '';
    const context: AuthContext = {
      clientId,
      subject: payload.sub ?? '',
      scope,
      scopes: parseScopes(scope),
      expiresAt: payload.exp ?? now / 1000,
      jti: payload.jti,
      kind: payload.sub && payload.sub !== clientId ? 'user' : 'client',
      patient: text('patient'),
      encounter: text('encounter'),
      fhirUser: text('fhirUser'),
      role: text('role'),
    };
    if (this.verified.size >= VERIFIED_CACHE_LIMIT) this.verified.clear();
    this.verified.set(token, { context, checkedAt: now });
    return context;
  }
}
