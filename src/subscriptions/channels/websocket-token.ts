import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuthContext } from '../../auth/token-service.js';

/**
 * Binding tokens of `$get-ws-binding-token` (R4 Subscriptions Backport IG): short-lived, signed
 * with a key every server process shares (stored in the database), so a token issued by one
 * process binds a socket connected to another. The token carries the caller's grant: what a
 * bound socket receives is limited by the scopes of the access token that asked for it, for as
 * long as that access token would have lived.
 */

/** How long a binding token may be used to bind (the binding itself lasts as long as the access token). */
export const BINDING_TOKEN_TTL_SECONDS = 60;

/** What of an access token a socket binding keeps (serialisable: it travels in the token). */
export interface BindingGrant {
  clientId: string;
  subject: string;
  scope: string;
  kind: AuthContext['kind'];
  patient?: string;
  fhirUser?: string;
  role?: string;
  /** Expiry of the access token (epoch seconds): the binding ends then. */
  expiresAt: number;
}

export interface BindingTokenClaims {
  subscriptions: string[];
  /** Epoch seconds. */
  expiresAt: number;
  grant: BindingGrant;
}

export function grantOf(auth: AuthContext): BindingGrant {
  const { clientId, subject, scope, kind, patient, fhirUser, role, expiresAt } = auth;
  return { clientId, subject, scope, kind, patient, fhirUser, role, expiresAt };
}

/** A fresh signing key (stored once per database with loadOrCreateKey). */
export async function generateBindingKey(): Promise<string> {
  return randomBytes(32).toString('base64url');
}

export class BindingTokens {
  private readonly key: Buffer;

  constructor(key: string) {
    this.key = Buffer.from(key, 'base64url');
  }

  issue(claims: BindingTokenClaims): string {
    const body = Buffer.from(JSON.stringify({ s: claims.subscriptions, e: claims.expiresAt, g: claims.grant })).toString('base64url');
    return `${body}.${this.mac(body)}`;
  }

  /** The claims of an unexpired token of ours, else undefined (forged, altered, expired, garbage). */
  verify(token: string, nowSeconds = Date.now() / 1000): BindingTokenClaims | undefined {
    const match = /^([A-Za-z0-9_-]{1,16384})\.([A-Za-z0-9_-]{43})$/.exec(token);
    if (!match) return undefined;
    const [, body, mac] = match;
    const expected = Buffer.from(this.mac(body!), 'base64url');
    const given = Buffer.from(mac!, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let parsed: { s?: unknown; e?: unknown; g?: unknown };
    try {
      parsed = JSON.parse(Buffer.from(body!, 'base64url').toString('utf8')) as typeof parsed;
    } catch {
      return undefined;
    }
    if (!Array.isArray(parsed.s) || typeof parsed.e !== 'number' || typeof parsed.g !== 'object' || parsed.g === null) return undefined;
    if (parsed.e <= nowSeconds) return undefined;
    return { subscriptions: parsed.s.filter((s): s is string => typeof s === 'string'), expiresAt: parsed.e, grant: parsed.g as BindingGrant };
  }

  private mac(body: string): string {
    return createHmac('sha256', this.key).update(body).digest('base64url');
  }
}
