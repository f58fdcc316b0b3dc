import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { AuthStore, ClientRecord, GrantContext } from '../storage/auth-store.js';
import { digest } from './clients.js';
import { grantScopes, splitScopes } from './scopes.js';
import type { TokenService } from './token-service.js';

const CODE_TTL_SECONDS = 120;
const OFFLINE_REFRESH_TTL_SECONDS = 30 * 24 * 3600;
const ONLINE_REFRESH_TTL_SECONDS = 12 * 3600;
/** RFC 7636 §4.1: 43 to 128 unreserved characters. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

/** The JSON body of a successful token response (RFC 6749 §5.1 + SMART launch context). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  refresh_token?: string;
  id_token?: string;
  patient?: string;
  encounter?: string;
  need_patient_banner?: boolean;
  smart_style_url?: string;
}

export type GrantResult = { ok: TokenResponse } | { error: string; description: string };

export function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

function pkceMatches(verifier: string, challenge: string): boolean {
  const a = Buffer.from(pkceChallenge(verifier));
  const b = Buffer.from(challenge);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What a user grant carries besides its scopes. */
export interface UserGrant {
  client: ClientRecord;
  userId: string;
  username?: string;
  scope: string;
  context: GrantContext;
}

/** Authorization codes, refresh tokens with rotation, and the token responses of each grant. */
export class GrantService {
  constructor(
    private readonly store: AuthStore,
    private readonly tokens: TokenService,
    private readonly smartStyleUrl: string,
    /** The FHIR base: the id_token's fhirUser is the absolute URL of the user's resource. */
    private readonly fhirBase: string,
    private readonly userName: (userId: string) => Promise<string | undefined>,
  ) {}

  /** `redirectUri` is '' when the authorize request did not name one. */
  async createCode(grant: UserGrant & { redirectUri: string; codeChallenge: string }): Promise<string> {
    const code = randomBytes(32).toString('base64url');
    await this.store.putCode(digest(code), {
      clientId: grant.client.clientId,
      userId: grant.userId,
      redirectUri: grant.redirectUri,
      codeChallenge: grant.codeChallenge,
      scope: grant.scope,
      context: grant.context,
      familyId: randomUUID(),
      expiresAt: new Date(Date.now() + CODE_TTL_SECONDS * 1000),
    });
    return code;
  }

  /**
   * Redeems a code: single use (a second use revokes the refresh tokens the first one
   * yielded), bound to its client, redirect_uri and PKCE verifier.
   */
  async redeemCode(input: { code: string; client: ClientRecord; redirectUri?: string; verifier?: string }): Promise<GrantResult> {
    const bad = (description: string): GrantResult => ({ error: 'invalid_grant', description });
    const taken = await this.store.takeCode(digest(input.code));
    if (!taken) return bad('unknown authorization code');
    const { code, reused } = taken;
    if (reused) {
      await this.store.revokeFamily(code.familyId);
      return bad('the authorization code was already used');
    }
    if (code.expiresAt.getTime() < Date.now()) return bad('the authorization code has expired');
    if (code.clientId !== input.client.clientId) return bad('the authorization code was issued to another client');
    // An empty stored redirect_uri: the authorize request named none (the client's only one was used).
    if (code.redirectUri !== '' && input.redirectUri !== code.redirectUri) return bad('redirect_uri does not match the authorization request');
    if (!input.verifier) return bad('code_verifier is required (PKCE)');
    if (!VERIFIER.test(input.verifier) || !pkceMatches(input.verifier, code.codeChallenge)) return bad('code_verifier does not match the code_challenge');
    return { ok: await this.userTokens({ client: input.client, userId: code.userId, scope: code.scope, context: code.context }, code.familyId) };
  }

  /** Refresh with rotation: the presented token is spent; presenting a spent one revokes its family. */
  async refresh(input: { token: string; client: ClientRecord; scope?: string }): Promise<GrantResult> {
    const bad = (description: string): GrantResult => ({ error: 'invalid_grant', description });
    const key = digest(input.token);
    const record = await this.store.getRefresh(key);
    if (!record || record.clientId !== input.client.clientId) return bad('unknown refresh token');
    if (record.revoked) return bad('the refresh token was revoked');
    if (record.spent) {
      await this.store.revokeFamily(record.familyId);
      return bad('the refresh token was already used; its grant is revoked');
    }
    if (record.expiresAt.getTime() < Date.now()) return bad('the refresh token has expired');
    let scope = record.scope;
    if (input.scope !== undefined) {
      const original = splitScopes(record.scope);
      const wanted = splitScopes(input.scope);
      const granted = grantScopes(wanted, [original]);
      if (wanted.some((s) => !granted.includes(s))) return { error: 'invalid_scope', description: 'a refresh may only narrow the scopes of the grant' };
      scope = wanted.join(' ');
    }
    if (!(await this.store.spendRefresh(key))) {
      await this.store.revokeFamily(record.familyId);
      return bad('the refresh token was already used; its grant is revoked');
    }
    if (!(await this.userName(record.userId))) return bad('the user of this grant no longer exists');
    // RFC 6749 §6: a narrower scope applies to the new access token; the grant (and so the
    // rotated refresh token) keeps its scope.
    return { ok: await this.userTokens({ client: input.client, userId: record.userId, scope, context: record.context }, record.familyId, record.scope) };
  }

  /** `grantScope` is set on refresh: the scope of the whole grant, kept by the rotated refresh token. */
  private async userTokens(grant: UserGrant, familyId: string, grantScope?: string): Promise<TokenResponse> {
    const scopes = splitScopes(grant.scope);
    const refreshed = grantScope !== undefined;
    const grantScopeList = splitScopes(grantScope ?? grant.scope);
    const { context } = grant;
    const response: TokenResponse = {
      access_token: await this.tokens.issue({
        sub: grant.userId,
        clientId: grant.client.clientId,
        scope: grant.scope,
        patient: context.patient,
        encounter: context.encounter,
        fhirUser: scopes.includes('fhirUser') || context.fhirUser ? context.fhirUser : undefined,
        role: context.role,
      }),
      token_type: 'Bearer',
      expires_in: this.tokens.ttlSeconds,
      scope: grant.scope,
    };
    if (context.patient) response.patient = context.patient;
    if (context.encounter) response.encounter = context.encounter;
    if (context.patient || context.encounter) response.need_patient_banner = context.needPatientBanner ?? true;
    response.smart_style_url = this.smartStyleUrl;
    if (scopes.includes('openid') && !refreshed) {
      response.id_token = await this.tokens.issueIdToken({
        sub: grant.userId,
        clientId: grant.client.clientId,
        fhirUser: scopes.includes('fhirUser') && context.fhirUser ? `${this.fhirBase}/${context.fhirUser}` : undefined,
        authTime: context.authTime,
        nonce: context.nonce,
        name: await this.userName(grant.userId),
      });
    }
    if (grantScopeList.includes('offline_access') || grantScopeList.includes('online_access')) {
      const refreshToken = randomBytes(32).toString('base64url');
      const ttl = grantScopeList.includes('offline_access') ? OFFLINE_REFRESH_TTL_SECONDS : ONLINE_REFRESH_TTL_SECONDS;
      await this.store.putRefresh(digest(refreshToken), {
        familyId,
        clientId: grant.client.clientId,
        userId: grant.userId,
        scope: grantScope ?? grant.scope,
        context,
        expiresAt: new Date(Date.now() + ttl * 1000),
      });
      response.refresh_token = refreshToken;
    }
    return response;
  }

  /** Backend Services: system scopes for the client itself. */
  async clientCredentials(client: ClientRecord, requestedScope: string | undefined): Promise<GrantResult> {
    const allowed = splitScopes(client.scope);
    const requested = splitScopes(requestedScope);
    const wanted = requested.length > 0 ? requested : allowed.slice(0, 1);
    const granted = grantScopes(wanted, [allowed]);
    const refused = wanted.filter((s) => !granted.includes(s) || !s.startsWith('system/'));
    if (refused.length > 0) return { error: 'invalid_scope', description: `scope not allowed for this client: ${refused.join(' ').slice(0, 200)}` };
    const scope = wanted.join(' ');
    const accessToken = await this.tokens.issue({ sub: client.clientId, clientId: client.clientId, scope });
    return { ok: { access_token: accessToken, token_type: 'Bearer', expires_in: this.tokens.ttlSeconds, scope } };
  }
}
