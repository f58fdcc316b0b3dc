import { createHash, randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { TestApp } from '../support/test-app.js';

/** Drives the SMART authorization server through HTTP as a browser and an app would. */

export const FHIR_BASE = 'http://localhost:8080/fhir';
export const REDIRECT = 'https://app.example.org/callback';
export const PASSWORD = 'Correct-Horse-42!';

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export function form(fields: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) params.set(k, v);
  return params.toString();
}

export const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

/** The hidden `request` id of an authorize page. */
export function requestIdOf(html: string): string {
  const match = /name="request" value="([^"]+)"/.exec(html);
  expect(match, html.slice(0, 500)).toBeTruthy();
  return match![1];
}

/** Registers a client through RFC 7591 with the bootstrap (system) token. */
export async function registerClient(t: TestApp, metadata: Record<string, unknown>): Promise<Record<string, string> & { client_id: string }> {
  const res = await t.server.http.inject({
    method: 'POST',
    url: '/auth/register',
    headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
    payload: JSON.stringify(metadata),
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

export async function createUser(t: TestApp, user: { username: string; role: string; fhirUser?: string; totp?: boolean; password?: string }): Promise<{ id: string; totpSecret?: string }> {
  const res = await t.server.http.inject({
    method: 'POST',
    url: '/auth/users',
    headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ password: PASSWORD, ...user }),
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

export async function createPatient(t: TestApp, family: string): Promise<string> {
  const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family, given: ['Test'] }] } });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as { id: string }).id;
}

export interface AuthorizeParams {
  clientId: string;
  scope: string;
  state?: string;
  challenge?: string;
  method?: string;
  aud?: string;
  redirectUri?: string;
  launch?: string;
}

export function authorizeQuery(p: AuthorizeParams): string {
  return form({
    response_type: 'code',
    client_id: p.clientId,
    redirect_uri: p.redirectUri ?? REDIRECT,
    scope: p.scope,
    state: p.state ?? 'st-' + randomBytes(6).toString('hex'),
    aud: p.aud ?? FHIR_BASE,
    code_challenge: p.challenge,
    code_challenge_method: p.method ?? (p.challenge ? 'S256' : undefined),
    launch: p.launch,
  });
}

export async function post(t: TestApp, url: string, fields: Record<string, string | undefined>, headers: Record<string, string> = {}) {
  return t.server.http.inject({ method: 'POST', url, headers: { ...FORM, ...headers }, payload: form(fields) });
}

/**
 * The whole browser part for a user who needs no patient picker (or whose patient is given):
 * authorize → sign-in → (picker) → consent; returns the redirect URL.
 */
export async function approve(t: TestApp, p: AuthorizeParams, user: string, options: { patient?: string } = {}): Promise<URL> {
  const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery(p)}` });
  expect(page.statusCode, page.body).toBe(200);
  const request = requestIdOf(page.body);
  let next = await post(t, '/auth/authorize/signin', { request, username: user, password: PASSWORD });
  expect(next.statusCode, next.body).toBe(200);
  if (next.body.includes('Choose a patient')) {
    expect(options.patient, 'the picker was shown but no patient given').toBeDefined();
    next = await post(t, '/auth/authorize/patient', { request, patient: options.patient });
    expect(next.statusCode, next.body).toBe(200);
  }
  expect(next.body).toContain('Allow access?');
  const done = await post(t, '/auth/authorize/consent', { request, decision: 'approve' });
  expect(done.statusCode, done.body).toBe(302);
  return new URL(String(done.headers.location));
}

export async function exchangeCode(t: TestApp, fields: Record<string, string | undefined>, headers: Record<string, string> = {}) {
  return post(t, '/auth/token', { grant_type: 'authorization_code', redirect_uri: REDIRECT, ...fields }, headers);
}

let signInCounter = 0;

/**
 * A signed-in user's access token, through the real authorization-code flow with PKCE: creates
 * the user (role, fhirUser), registers a public client for it and signs in. For workflow tests that
 * need "who wrote this" (signatures, dual verification, overrides). `scope` defaults to the
 * role's whole table entry (`user/*.cruds`, or `patient/*.cruds` for PATIENT, is cut down to what
 * the role may have).
 */
export async function signInAs(t: TestApp, role: string, fhirUser?: string, scope = role === 'PATIENT' ? 'openid fhirUser launch/patient patient/*.cruds' : 'openid fhirUser user/*.cruds'): Promise<{ token: string; username: string }> {
  const username = `${role.toLowerCase()}-${++signInCounter}-${randomBytes(3).toString('hex')}`;
  await createUser(t, { username, role, fhirUser });
  const client = await registerClient(t, { client_name: `tests ${username}`, redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope });
  const { verifier, challenge } = pkce();
  const patient = fhirUser?.startsWith('Patient/') ? fhirUser.slice('Patient/'.length) : undefined;
  const redirect = await approve(t, { clientId: client.client_id, scope, challenge }, username, { patient });
  const code = redirect.searchParams.get('code') ?? undefined;
  const res = await exchangeCode(t, { code, client_id: client.client_id, code_verifier: verifier });
  expect(res.statusCode, res.body).toBe(200);
  return { token: (res.json() as { access_token: string }).access_token, username };
}
