import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { generate as totpCode } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import {
  approve,
  authorizeQuery,
  createPatient,
  createUser,
  exchangeCode,
  FHIR_BASE,
  PASSWORD,
  pkce,
  post,
  REDIRECT,
  registerClient,
  requestIdOf,
} from './smart-helpers.js';

let t: TestApp;
let publicClient: string;
let confidential: { client_id: string; client_secret: string };
let patientA: string;
let patientB: string;
const USER_SCOPE = 'openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs user/Patient.cruds';

beforeAll(async () => {
  t = await startTestApp();
  patientA = await createPatient(t, 'Alpha');
  patientB = await createPatient(t, 'Beta');
  publicClient = (await registerClient(t, { client_name: 'Public app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], scope: USER_SCOPE })).client_id;
  confidential = (await registerClient(t, {
    client_name: 'Confidential app',
    redirect_uris: [REDIRECT],
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    scope: USER_SCOPE,
  })) as { client_id: string; client_secret: string };
  await createUser(t, { username: 'dr.house', role: 'DOCTOR', fhirUser: 'Practitioner/house' });
  await createUser(t, { username: 'alpha', role: 'PATIENT', fhirUser: `Patient/${patientA}` });
  await createUser(t, { username: 'nurse.locked', role: 'NURSE' });
}, 180_000);
afterAll(async () => {
  await t?.close();
});

const jwks = async () => createLocalJWKSet((await t.server.http.inject({ method: 'GET', url: '/auth/jwks' })).json() as JSONWebKeySet);
const basic = (id: string, secret: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` });

describe('standalone launch: authorization code with PKCE, driven through the HTML pages', () => {
  it('sign-in → patient picker → consent → code → tokens (id_token, refresh, patient context)', async () => {
    const { verifier, challenge } = pkce();
    const state = 'a state with spaces & symbols/=?';
    const authorize = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: publicClient, scope: USER_SCOPE, challenge, state })}` });
    expect(authorize.statusCode).toBe(200);
    expect(authorize.headers['content-type']).toMatch(/text\/html/);
    expect(authorize.body).toContain('<form method="post" action="/auth/authorize/signin">');
    const request = requestIdOf(authorize.body);

    const wrong = await post(t, '/auth/authorize/signin', { request, username: 'dr.house', password: 'Wrong-password-1!' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.body).toContain('Wrong user name or password');

    const picker = await post(t, '/auth/authorize/signin', { request, username: 'dr.house', password: PASSWORD });
    expect(picker.statusCode).toBe(200);
    expect(picker.body).toContain('Choose a patient');
    expect(picker.body).toContain(patientA);
    expect(picker.body).toContain(patientB);
    const byName = await t.server.http.inject({ method: 'GET', url: `/auth/authorize/patient?request=${request}&name=Beta` });
    expect(byName.body).toContain(patientB);
    expect(byName.body).not.toContain(patientA);

    const unknownPatient = await post(t, '/auth/authorize/patient', { request, patient: 'no-such-patient' });
    expect(unknownPatient.body).toContain('Choose a patient from the list');
    const consent = await post(t, '/auth/authorize/patient', { request, patient: patientB });
    expect(consent.body).toContain('Allow access?');
    for (const scope of ['patient/*.rs', 'user/*.rs', 'openid', 'offline_access']) expect(consent.body).toContain(scope);

    const redirect = await post(t, '/auth/authorize/consent', { request, decision: 'approve' });
    expect(redirect.statusCode).toBe(302);
    const location = new URL(String(redirect.headers.location));
    expect(`${location.origin}${location.pathname}`).toBe(REDIRECT);
    expect(location.searchParams.get('state')).toBe(state);
    const code = location.searchParams.get('code')!;
    expect(code).toBeTruthy();

    const token = await exchangeCode(t, { code, client_id: publicClient, code_verifier: verifier });
    expect(token.statusCode, token.body).toBe(200);
    expect(token.headers['cache-control']).toBe('no-store');
    expect(token.headers.pragma).toBe('no-cache');
    const body = token.json();
    expect(body.token_type).toBe('Bearer');
    expect(typeof body.expires_in).toBe('number');
    expect(body.expires_in).toBeGreaterThanOrEqual(900);
    expect(body.expires_in).toBeLessThanOrEqual(1800);
    expect(body.patient).toBe(patientB);
    expect(body.need_patient_banner).toBe(true);
    expect(body.smart_style_url).toBe('http://localhost:8080/auth/smart-style.json');
    expect(body.refresh_token).toBeTruthy();
    // DOCTOR may not write Patient: user/Patient.cruds narrows to what the role allows.
    expect(body.scope.split(' ')).toEqual(expect.arrayContaining(['openid', 'fhirUser', 'launch/patient', 'offline_access', 'patient/*.rs', 'user/*.rs']));
    expect(body.scope.split(' ')).not.toContain('user/Patient.cruds');

    expect(decodeProtectedHeader(body.id_token).alg).toBe('RS256');
    const { payload } = await jwtVerify(body.id_token, await jwks(), { issuer: 'http://localhost:8080', audience: publicClient });
    expect(payload.fhirUser).toBe('http://localhost:8080/fhir/Practitioner/house');
    expect(payload.sub).toBeTruthy();
    expect(payload.iat).toBeTypeOf('number');
    expect(payload.exp).toBeTypeOf('number');

    const read = await t.server.http.inject({ method: 'GET', url: `/fhir/Patient/${patientB}`, headers: { authorization: `Bearer ${body.access_token}` } });
    expect(read.statusCode).toBe(200);
    const introspect = await post(t, '/auth/introspect', { token: body.access_token }, basic(confidential.client_id, confidential.client_secret));
    expect(introspect.json()).toMatchObject({ active: true, patient: patientB, fhirUser: 'Practitioner/house', role: 'DOCTOR', client_id: publicClient });

    // single use: a second redemption fails and revokes what the first one yielded
    const again = await exchangeCode(t, { code, client_id: publicClient, code_verifier: verifier });
    expect(again.statusCode).toBe(400);
    expect(again.json().error).toBe('invalid_grant');
    const refresh = await post(t, '/auth/token', { grant_type: 'refresh_token', refresh_token: body.refresh_token, client_id: publicClient });
    expect(refresh.statusCode).toBe(400);
    expect(refresh.json().error).toBe('invalid_grant');
  });

  it('authorize by POST works too; a PATIENT gets their own record without a picker and no user/ scopes', async () => {
    const { verifier, challenge } = pkce();
    const page = await t.server.http.inject({ method: 'POST', url: '/auth/authorize', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: authorizeQuery({ clientId: publicClient, scope: USER_SCOPE, challenge, state: 'p1' }) });
    expect(page.statusCode).toBe(200);
    const request = requestIdOf(page.body);
    const consent = await post(t, '/auth/authorize/signin', { request, username: 'alpha', password: PASSWORD });
    expect(consent.body).toContain('Allow access?');
    expect(consent.body).not.toContain('user/*.rs');
    const redirect = new URL(String((await post(t, '/auth/authorize/consent', { request, decision: 'approve' })).headers.location));
    const body = (await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: publicClient, code_verifier: verifier })).json();
    expect(body.patient).toBe(patientA);
    expect(body.scope.split(' ').filter((s: string) => s.startsWith('user/'))).toEqual([]);
    expect(body.scope.split(' ')).toContain('patient/*.rs');
  });

  it('a PATIENT-role proxy (RelatedPerson) gets the Patient their RelatedPerson is linked to', async () => {
    const related = await t.request({ method: 'POST', url: '/fhir/RelatedPerson', payload: { resourceType: 'RelatedPerson', patient: { reference: `Patient/${patientA}` }, name: [{ family: 'Parent' }] } });
    expect(related.statusCode, related.body).toBe(201);
    await createUser(t, { username: 'parent', role: 'PATIENT', fhirUser: `RelatedPerson/${related.json().id}` });
    const { verifier, challenge } = pkce();
    const redirect = await approve(t, { clientId: publicClient, scope: 'openid fhirUser launch/patient patient/*.rs', challenge }, 'parent');
    const body = (await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: publicClient, code_verifier: verifier })).json();
    expect(body.patient).toBe(patientA);
  });

  it('without redirect_uri the client’s only registered one is used, and the token request may omit it', async () => {
    const { verifier, challenge } = pkce();
    const query = new URLSearchParams(authorizeQuery({ clientId: publicClient, scope: 'openid patient/*.rs', challenge, state: 'no-redirect' }));
    query.delete('redirect_uri');
    const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${query}` });
    const request = requestIdOf(page.body);
    await post(t, '/auth/authorize/signin', { request, username: 'alpha', password: PASSWORD });
    const location = new URL(String((await post(t, '/auth/authorize/consent', { request, decision: 'approve' })).headers.location));
    expect(`${location.origin}${location.pathname}`).toBe(REDIRECT);
    const token = await exchangeCode(t, { code: location.searchParams.get('code')!, client_id: publicClient, code_verifier: verifier, redirect_uri: undefined });
    expect(token.statusCode, token.body).toBe(200);
  });

  it('the user can deny: access_denied with the state, no code', async () => {
    const { challenge } = pkce();
    const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: publicClient, scope: 'openid patient/*.rs', challenge, state: 'deny-me' })}` });
    const request = requestIdOf(page.body);
    await post(t, '/auth/authorize/signin', { request, username: 'alpha', password: PASSWORD });
    const denied = new URL(String((await post(t, '/auth/authorize/consent', { request, decision: 'deny' })).headers.location));
    expect(denied.searchParams.get('error')).toBe('access_denied');
    expect(denied.searchParams.get('state')).toBe('deny-me');
    expect(denied.searchParams.get('code')).toBeNull();
  });
});

describe('refused authorization requests', () => {
  const authorizeGet = (query: string) => t.server.http.inject({ method: 'GET', url: `/auth/authorize?${query}` });

  it('an unregistered redirect_uri or unknown client gets an error page, never a redirect', async () => {
    const { challenge } = pkce();
    for (const query of [
      authorizeQuery({ clientId: publicClient, scope: 'openid', challenge, redirectUri: 'https://evil.example.com/callback' }),
      authorizeQuery({ clientId: publicClient, scope: 'openid', challenge, redirectUri: `${REDIRECT}/../x` }),
      authorizeQuery({ clientId: publicClient, scope: 'openid', challenge, redirectUri: `${REDIRECT}?extra=1` }),
      authorizeQuery({ clientId: 'no-such-client', scope: 'openid', challenge }),
    ]) {
      const res = await authorizeGet(query);
      expect(res.statusCode).toBe(400);
      expect(res.headers.location).toBeUndefined();
      expect(res.headers['content-type']).toMatch(/text\/html/);
    }
  });

  it('a wrong aud, or a missing / empty / plain PKCE challenge, redirects with an error and no code', async () => {
    const { challenge } = pkce();
    const cases = [
      authorizeQuery({ clientId: publicClient, scope: 'openid', challenge, aud: 'https://other.example.com/fhir', state: 's1' }),
      authorizeQuery({ clientId: publicClient, scope: 'openid', state: 's1' }),
      authorizeQuery({ clientId: publicClient, scope: 'openid', challenge: '', method: 'S256', state: 's1' }),
      authorizeQuery({ clientId: publicClient, scope: 'openid', challenge, method: 'plain', state: 's1' }),
    ];
    for (const query of cases) {
      const res = await authorizeGet(query);
      expect(res.statusCode, query).toBe(302);
      const location = new URL(String(res.headers.location));
      expect(location.searchParams.get('error')).toBe('invalid_request');
      expect(location.searchParams.get('code')).toBeNull();
      expect(location.searchParams.get('state')).toBe('s1');
    }
  });

  it('each PKCE fault at the token endpoint is invalid_grant: missing, empty, wrong verifier', async () => {
    for (const verifierOf of [() => undefined, () => '', () => pkce().verifier]) {
      const { challenge } = pkce();
      const redirect = await approve(t, { clientId: publicClient, scope: 'openid patient/*.rs', challenge }, 'alpha');
      const res = await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: publicClient, code_verifier: verifierOf() });
      expect(res.statusCode).toBe(400);
      expect(res.json().error).toBe('invalid_grant');
    }
  });

  it('a bad code is exactly 400 invalid_grant, an unknown client 401 invalid_client, a wrong redirect_uri invalid_grant', async () => {
    const bad = await exchangeCode(t, { code: 'not-a-code', client_id: publicClient, code_verifier: pkce().verifier });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toBe('invalid_grant');
    const unknown = await exchangeCode(t, { code: 'whatever', client_id: 'nobody', code_verifier: pkce().verifier });
    expect(unknown.statusCode).toBe(401);
    expect(unknown.json().error).toBe('invalid_client');
    const { verifier, challenge } = pkce();
    const redirect = await approve(t, { clientId: publicClient, scope: 'openid patient/*.rs', challenge }, 'alpha');
    const mismatch = await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: publicClient, code_verifier: verifier, redirect_uri: 'https://app.example.org/other' });
    expect(mismatch.statusCode).toBe(400);
    expect(mismatch.json().error).toBe('invalid_grant');
  });

  it('a code is bound to its client: a confidential client must authenticate, and cannot use another client’s code', async () => {
    const { verifier, challenge } = pkce();
    const redirect = await approve(t, { clientId: publicClient, scope: 'openid patient/*.rs', challenge }, 'alpha');
    const stolen = await exchangeCode(t, { code: redirect.searchParams.get('code')!, code_verifier: verifier }, basic(confidential.client_id, confidential.client_secret));
    expect(stolen.statusCode).toBe(400);
    expect(stolen.json().error).toBe('invalid_grant');
    const noSecret = await exchangeCode(t, { code: 'x', client_id: confidential.client_id, code_verifier: verifier });
    expect(noSecret.statusCode).toBe(401);
    expect(noSecret.json().error).toBe('invalid_client');
  });
});

describe('refresh tokens', () => {
  it('rotate on every refresh; reusing a spent one revokes the whole family', async () => {
    const { verifier, challenge } = pkce();
    const redirect = await approve(t, { clientId: confidential.client_id, scope: 'openid fhirUser offline_access patient/*.rs', challenge }, 'alpha');
    const auth = basic(confidential.client_id, confidential.client_secret);
    const first = (await exchangeCode(t, { code: redirect.searchParams.get('code')!, code_verifier: verifier }, auth)).json();
    expect(first.refresh_token).toBeTruthy();

    const second = await post(t, '/auth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token }, auth);
    expect(second.statusCode, second.body).toBe(200);
    expect(second.headers['cache-control']).toBe('no-store');
    const rotated = second.json();
    expect(rotated.refresh_token).toBeTruthy();
    expect(rotated.refresh_token).not.toBe(first.refresh_token);
    expect(rotated.patient).toBe(patientA);
    expect(typeof rotated.expires_in).toBe('number');

    const narrowed = await post(t, '/auth/token', { grant_type: 'refresh_token', refresh_token: rotated.refresh_token, scope: 'patient/Observation.rs' }, auth);
    expect(narrowed.statusCode, narrowed.body).toBe(200);
    const third = narrowed.json();
    expect(third.scope).toBe('patient/Observation.rs');
    const wider = await post(t, '/auth/token', { grant_type: 'refresh_token', refresh_token: third.refresh_token, scope: 'user/*.cruds' }, auth);
    expect(wider.json().error).toBe('invalid_scope');

    // replaying the first (spent) token: refused, and the live one dies with it
    const replay = await post(t, '/auth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token }, auth);
    expect(replay.statusCode).toBe(400);
    expect(replay.json().error).toBe('invalid_grant');
    const afterReplay = await post(t, '/auth/token', { grant_type: 'refresh_token', refresh_token: third.refresh_token }, auth);
    expect(afterReplay.statusCode).toBe(400);
    expect(afterReplay.json().error).toBe('invalid_grant');
  });

  it('refresh tokens are bound to their client', async () => {
    const { verifier, challenge } = pkce();
    const redirect = await approve(t, { clientId: publicClient, scope: 'offline_access patient/*.rs', challenge }, 'alpha');
    const tokens = (await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: publicClient, code_verifier: verifier })).json();
    const other = await post(t, '/auth/token', { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, basic(confidential.client_id, confidential.client_secret));
    expect(other.statusCode).toBe(400);
    expect(other.json().error).toBe('invalid_grant');
  });
});

describe('EHR launch', () => {
  it('a launch minted by the EHR carries its patient and encounter; no picker; need_patient_banner false', async () => {
    const minted = await t.server.http.inject({
      method: 'POST',
      url: '/auth/launch',
      headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ patient: patientA, encounter: 'enc-1' }),
    });
    expect(minted.statusCode, minted.body).toBe(201);
    const { launch } = minted.json();
    const { verifier, challenge } = pkce();
    const redirect = await approve(t, { clientId: publicClient, scope: 'launch openid fhirUser patient/*.rs', challenge, launch }, 'dr.house');
    const body = (await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: publicClient, code_verifier: verifier })).json();
    expect(body.patient).toBe(patientA);
    expect(body.encounter).toBe('enc-1');
    expect(body.need_patient_banner).toBe(false);
    expect(body.smart_style_url).toBeTruthy();

    const unknown = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: publicClient, scope: 'launch', challenge, launch: 'forged', state: 'x' })}` });
    expect(new URL(String(unknown.headers.location)).searchParams.get('error')).toBe('invalid_request');
    const notAdmin = await t.server.http.inject({ method: 'POST', url: '/auth/launch', headers: { authorization: `Bearer ${body.access_token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ patient: patientA }) });
    expect(notAdmin.statusCode).toBe(403);
  });

  it('a PATIENT cannot be launched into another patient’s record', async () => {
    const { launch } = (
      await t.server.http.inject({ method: 'POST', url: '/auth/launch', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' }, payload: JSON.stringify({ patient: patientB }) })
    ).json();
    const { challenge } = pkce();
    const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: publicClient, scope: 'launch patient/*.rs', challenge, launch, state: 'z' })}` });
    const res = await post(t, '/auth/authorize/signin', { request: requestIdOf(page.body), username: 'alpha', password: PASSWORD });
    expect(res.statusCode).toBe(302);
    expect(new URL(String(res.headers.location)).searchParams.get('error')).toBe('access_denied');
  });
});

describe('account security', () => {
  it('five wrong passwords lock the account: even the right one is refused until release', async () => {
    const { challenge } = pkce();
    const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: publicClient, scope: 'openid', challenge })}` });
    const request = requestIdOf(page.body);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await post(t, '/auth/authorize/signin', { request, username: 'nurse.locked', password: `Wrong-password-${i}!` })).statusCode);
    expect(statuses).toEqual([401, 401, 401, 401, 423]);
    const right = await post(t, '/auth/authorize/signin', { request, username: 'nurse.locked', password: PASSWORD });
    expect(right.statusCode).toBe(423);
    expect(right.body).toContain('locked');
    const users = (await t.server.http.inject({ method: 'GET', url: '/auth/users', headers: { authorization: `Bearer ${t.token}` } })).json() as Array<{ username: string; lockedUntil?: string }>;
    const locked = users.find((u) => u.username === 'nurse.locked');
    expect(new Date(locked!.lockedUntil!).getTime()).toBeGreaterThan(Date.now() + 10 * 60_000);
  });

  it('weak passwords are refused by policy', async () => {
    for (const password of ['short-1A!', 'alllowercase-123!', 'NoDigitsHere!!!', 'NoSymbols12345']) {
      const res = await t.server.http.inject({
        method: 'POST',
        url: '/auth/users',
        headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ username: `weak${password.length}`, password, role: 'NURSE' }),
      });
      expect(res.statusCode, password).toBe(400);
    }
  });

  it('an enrolled DOCTOR must give a TOTP code after the password', async () => {
    const { totpSecret } = await createUser(t, { username: 'dr.totp', role: 'DOCTOR', fhirUser: 'Practitioner/totp', totp: true });
    expect(totpSecret).toBeTruthy();
    const { verifier, challenge } = pkce();
    const page = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: publicClient, scope: 'openid fhirUser user/*.rs', challenge, state: 'totp' })}` });
    const request = requestIdOf(page.body);
    const second = await post(t, '/auth/authorize/signin', { request, username: 'dr.totp', password: PASSWORD });
    expect(second.body).toContain('Second factor');
    // the consent step cannot be reached by skipping the code
    const skipped = await post(t, '/auth/authorize/consent', { request, decision: 'approve' });
    expect(skipped.statusCode).toBe(400);
    expect(skipped.headers.location).toBeUndefined();
    const wrong = await post(t, '/auth/authorize/totp', { request, code: '000000' });
    expect(wrong.statusCode).toBe(401);
    const code = await totpCode({ secret: totpSecret! });
    const consent = await post(t, '/auth/authorize/totp', { request, code });
    expect(consent.body).toContain('Allow access?');
    const redirect = new URL(String((await post(t, '/auth/authorize/consent', { request, decision: 'approve' })).headers.location));
    const token = await exchangeCode(t, { code: redirect.searchParams.get('code')!, client_id: publicClient, code_verifier: verifier });
    expect(token.statusCode).toBe(200);
    expect(token.json().scope).toContain('user/*.rs');

    // the same code cannot sign in a second time (replay within its 30 s window)
    const again = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?${authorizeQuery({ clientId: publicClient, scope: 'openid user/*.rs', challenge })}` });
    const request2 = requestIdOf(again.body);
    expect((await post(t, '/auth/authorize/signin', { request: request2, username: 'dr.totp', password: PASSWORD })).body).toContain('Second factor');
    const replay = await post(t, '/auth/authorize/totp', { request: request2, code });
    expect(replay.statusCode).toBe(401);
  });
});

describe('the FHIR base in use', () => {
  it('is the aud apps must name', () => {
    expect(FHIR_BASE).toBe(`${t.config.baseUrl}/fhir`);
  });
});
