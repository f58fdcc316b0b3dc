import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { authorizeQuery, exchangeCode, pkce, post, REDIRECT, registerClient, requestIdOf } from './smart-helpers.js';

const ADMIN = { user: 'root.admin', password: 'Bootstrap-Admin-2024!' };

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({
    FHIR_BOOTSTRAP_ADMIN_USER: ADMIN.user,
    FHIR_BOOTSTRAP_ADMIN_PASSWORD: ADMIN.password,
    AUTH_TOKEN_RATE_LIMIT: '4',
    AUTH_SIGNIN_RATE_LIMIT: '3',
  });
}, 120_000);
afterAll(async () => {
  await t?.close();
});

describe('the bootstrap ADMIN user', () => {
  it('signs in at the authorize page and administers with the token it gets', async () => {
    const app = await registerClient(t, { client_name: 'admin console', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', scope: 'openid fhirUser user/*.cruds' });
    const { verifier, challenge } = pkce();
    const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: app.client_id, scope: 'openid user/*.cruds', challenge })}` });
    const request = requestIdOf(page.body);
    const consent = await post(t, '/auth/authorize/signin', { request, username: ADMIN.user, password: ADMIN.password });
    expect(consent.body).toContain('Allow access?');
    const redirect = new URL(String((await post(t, '/auth/authorize/consent', { request, decision: 'approve' })).headers.location));
    const token = await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: app.client_id, code_verifier: verifier });
    expect(token.statusCode, token.body).toBe(200);
    const adminToken = token.json().access_token as string;
    const user = await t.server.http.inject({
      method: 'POST',
      url: '/auth/users',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ username: 'pharma', password: 'Pharmacist-Pass-1!', role: 'PHARMACIST', fhirUser: 'Practitioner/ph1' }),
    });
    expect(user.statusCode, user.body).toBe(201);
    expect(user.json()).toMatchObject({ username: 'pharma', role: 'PHARMACIST', fhirUser: 'Practitioner/ph1' });
    expect(JSON.stringify(user.json())).not.toContain('Pharmacist-Pass');
    const roleChange = await t.server.http.inject({
      method: 'PATCH',
      url: `/auth/users/${user.json().id}`,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ role: 'NURSE' }),
    });
    expect(roleChange.json().role).toBe('NURSE');
    const badRole = await t.server.http.inject({
      method: 'PATCH',
      url: `/auth/users/${user.json().id}`,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ role: 'SUPERUSER' }),
    });
    expect(badRole.statusCode).toBe(400);
    const registered = await t.server.http.inject({
      method: 'POST',
      url: '/auth/register',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ redirect_uris: ['https://other.example/cb'], token_endpoint_auth_method: 'none' }),
    });
    expect(registered.statusCode).toBe(201);
  });

  it('a weak bootstrap password stops start-up with a configuration error', () => {
    expect(() => loadConfig({ FHIR_BOOTSTRAP_ADMIN_USER: 'a', FHIR_BOOTSTRAP_ADMIN_PASSWORD: 'password' })).toThrow(ConfigError);
  });
});

describe('rate limits', () => {
  it('/auth/token answers 429 past its limit per minute', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await post(t, '/auth/token', { grant_type: 'client_credentials', client_id: TEST_CLIENT.id, client_secret: TEST_CLIENT.secret })).statusCode);
    }
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0);
    const limited = await post(t, '/auth/token', { grant_type: 'client_credentials' });
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error).toBe('too_many_requests');
  });

  it('sign-in answers 429 past its limit per minute', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(t, '/auth/authorize/signin', { request: 'x', username: 'nobody', password: 'x' })).statusCode);
    expect(statuses).toContain(429);
  });
});
