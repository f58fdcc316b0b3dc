/**
 * SMART standalone launch with PKCE (S256), written here rather than taken from `fhirclient`:
 * the console needs only discovery, the authorize redirect and the code exchange (about a
 * hundred lines), and stays a few kilobytes. Tokens live in sessionStorage (this tab only,
 * gone when it closes); nothing but the one-time code and state ever appears in a URL.
 */

export interface ConsoleConfig {
  fhirBase: string;
  clientId: string;
  scope: string;
  consoleUrl: string;
}

export interface Session {
  accessToken: string;
  expiresAt: number;
  scope: string;
  role: string;
  /** e.g. Practitioner/123 or Patient/456 */
  fhirUser?: string;
  /** The launch patient (PATIENT users: their own record). */
  patient?: string;
  username?: string;
}

export type SignInKind = 'staff' | 'patient';

const PENDING_KEY = 'console.pending';
const SESSION_KEY = 'console.session';

/** What each kind of sign-in asks for; the server cuts it down to what the user's role allows. */
const SCOPES: Record<SignInKind, string> = {
  staff: 'openid fhirUser user/*.cruds',
  patient: 'openid fhirUser launch/patient patient/*.cruds',
};

interface SmartConfiguration {
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint?: string;
}

function base64url(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** The claims of a JWT, unverified: the server verifies its own tokens; we only read role and fhirUser. */
export function jwtClaims(token: string): Record<string, unknown> {
  const part = token.split('.')[1] ?? '';
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = Uint8Array.from(json, (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

async function discover(config: ConsoleConfig): Promise<SmartConfiguration> {
  const res = await fetch(`${config.fhirBase}/.well-known/smart-configuration`, { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`SMART discovery failed (${res.status})`);
  return (await res.json()) as SmartConfiguration;
}

/** Goes to the server's sign-in page. */
export async function startSignIn(config: ConsoleConfig, kind: SignInKind): Promise<void> {
  const smart = await discover(config);
  const verifier = randomText(32);
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  const state = randomText(16);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state, kind, tokenEndpoint: smart.token_endpoint }));
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: config.clientId,
    redirect_uri: config.consoleUrl,
    scope: SCOPES[kind],
    state,
    aud: config.fhirBase,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  location.assign(`${smart.authorization_endpoint}?${query}`);
}

interface TokenResponse {
  access_token: string;
  expires_in: number;
  scope: string;
  patient?: string;
  id_token?: string;
}

/**
 * Back from the authorization server: exchanges the code (once), removes code and state from
 * the address bar, and keeps the session for this tab. Returns the session, or undefined when
 * this page load is not a sign-in return; throws a readable error when the sign-in failed.
 */
export async function completeSignIn(config: ConsoleConfig): Promise<Session | undefined> {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  const error = params.get('error');
  if (!code && !error) return undefined;
  history.replaceState(null, '', location.pathname + location.hash);
  const pendingText = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  if (error) throw new Error(`Sign-in did not complete: ${params.get('error_description') ?? error}`);
  const pending = pendingText ? (JSON.parse(pendingText) as { verifier: string; state: string; tokenEndpoint: string }) : undefined;
  if (!pending || pending.state !== params.get('state')) throw new Error('This sign-in was not started here (state mismatch). Sign in again.');
  const res = await fetch(pending.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: code ?? '', redirect_uri: config.consoleUrl, client_id: config.clientId, code_verifier: pending.verifier }),
  });
  const body = (await res.json()) as TokenResponse & { error_description?: string };
  if (!res.ok) throw new Error(`Sign-in failed: ${body.error_description ?? res.status}`);
  // The access token carries role and fhirUser (docs/auth.md); the id_token the user name.
  const claims = jwtClaims(body.access_token);
  const id = body.id_token ? jwtClaims(body.id_token) : {};
  const session: Session = {
    accessToken: body.access_token,
    expiresAt: Date.now() + body.expires_in * 1000,
    scope: body.scope,
    role: typeof claims.role === 'string' ? claims.role : 'UNKNOWN',
    fhirUser: typeof claims.fhirUser === 'string' ? claims.fhirUser : undefined,
    patient: body.patient,
    username: typeof id.preferred_username === 'string' ? id.preferred_username : undefined,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

export function storedSession(): Session | undefined {
  const text = sessionStorage.getItem(SESSION_KEY);
  if (!text) return undefined;
  const session = JSON.parse(text) as Session;
  if (session.expiresAt <= Date.now() + 5_000) {
    sessionStorage.removeItem(SESSION_KEY);
    return undefined;
  }
  return session;
}

export async function signOut(config: ConsoleConfig, session: Session | undefined): Promise<void> {
  sessionStorage.removeItem(SESSION_KEY);
  if (!session) return;
  try {
    const smart = await discover(config);
    if (smart.revocation_endpoint) {
      await fetch(smart.revocation_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: session.accessToken, client_id: config.clientId }),
      });
    }
  } catch {
    // Signing out here never depends on the server: the token is gone from this tab.
  }
}
