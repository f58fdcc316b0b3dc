import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { post, registerClient } from './smart-helpers.js';

const TOKEN_ENDPOINT = 'http://localhost:8080/auth/token';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

let t: TestApp;
let es384: { privateKey: CryptoKey; publicJwk: JWK };
let rs384: { privateKey: CryptoKey; publicJwk: JWK };
let byValue: string;
let byUrl: string;
let jwksServer: Server;

async function keyPair(alg: 'ES384' | 'RS384') {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: `${alg}-${randomUUID().slice(0, 8)}`, alg } };
}

function assertion(clientId: string, key: { privateKey: CryptoKey; publicJwk: JWK }, overrides: { aud?: string; exp?: number; jti?: string; alg?: string; kid?: string } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: overrides.alg ?? String(key.publicJwk.alg), kid: overrides.kid ?? String(key.publicJwk.kid), typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(overrides.aud ?? TOKEN_ENDPOINT)
    .setExpirationTime(overrides.exp ?? now + 240)
    .setJti(overrides.jti ?? randomUUID())
    .sign(key.privateKey);
}

const backendToken = (clientAssertion: string, scope = 'system/Patient.rs') =>
  post(t, '/auth/token', { grant_type: 'client_credentials', scope, client_assertion_type: ASSERTION_TYPE, client_assertion: clientAssertion });

beforeAll(async () => {
  t = await startTestApp();
  es384 = await keyPair('ES384');
  rs384 = await keyPair('RS384');
  // The client's JWKS, served from this machine (jwks_uri over http is allowed only for localhost).
  jwksServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [rs384.publicJwk] })));
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  const port = (jwksServer.address() as { port: number }).port;
  byValue = (await registerClient(t, { client_name: 'backend by value', grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [es384.publicJwk] }, scope: 'system/*.rs' })).client_id;
  byUrl = (await registerClient(t, { client_name: 'backend by url', grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt', jwks_uri: `http://127.0.0.1:${port}/jwks.json`, scope: 'system/*.rs' })).client_id;
}, 180_000);
afterAll(async () => {
  if (jwksServer) await new Promise((resolve) => jwksServer.close(resolve));
  await t?.close();
});

describe('Backend Services: client_credentials with private_key_jwt', () => {
  it('ES384 with the JWKS by value: the client is identified by the assertion (no client_id), token usable', async () => {
    const res = await backendToken(await assertion(byValue, es384));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = res.json();
    expect(body.scope).toBe('system/Patient.rs');
    expect(typeof body.expires_in).toBe('number');
    const search = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient', headers: { authorization: `Bearer ${body.access_token}` } });
    expect(search.statusCode).toBe(200);
    const write = await t.server.http.inject({ method: 'POST', url: '/fhir/Patient', headers: { authorization: `Bearer ${body.access_token}`, 'content-type': 'application/fhir+json' }, payload: '{"resourceType":"Patient"}' });
    expect(write.statusCode).toBe(403);
  });

  it('RS384 with the JWKS fetched from jwks_uri', async () => {
    const res = await backendToken(await assertion(byUrl, rs384));
    expect(res.statusCode, res.body).toBe(200);
  });

  it('bad assertions are 401 invalid_client: replayed jti, wrong aud, exp > 5 min, wrong key, wrong alg, unknown kid, unknown iss', async () => {
    const once = await assertion(byValue, es384);
    expect((await backendToken(once)).statusCode).toBe(200);
    const other = await keyPair('ES384');
    const rsaKeyForEsClient = await keyPair('RS384');
    const { privateKey: hsKey } = { privateKey: new TextEncoder().encode('a-shared-secret-that-is-long-enough-for-hs') };
    const hs = await new SignJWT({}).setProtectedHeader({ alg: 'HS384' }).setIssuer(byValue).setSubject(byValue).setAudience(TOKEN_ENDPOINT).setExpirationTime('4m').setJti(randomUUID()).sign(hsKey);
    const cases: Record<string, string> = {
      replay: once,
      aud: await assertion(byValue, es384, { aud: 'http://localhost:8080/auth/other' }),
      exp: await assertion(byValue, es384, { exp: Math.floor(Date.now() / 1000) + 600 }),
      expired: await assertion(byValue, es384, { exp: Math.floor(Date.now() / 1000) - 120 }),
      signature: await assertion(byValue, { privateKey: other.privateKey, publicJwk: es384.publicJwk }),
      alg: await assertion(byValue, rsaKeyForEsClient, { alg: 'RS384', kid: String(es384.publicJwk.kid) }),
      kid: await assertion(byValue, es384, { kid: 'unknown-kid' }),
      hmac: hs,
      iss: await assertion('no-such-client', es384),
    };
    for (const [name, jwt] of Object.entries(cases)) {
      const res = await backendToken(jwt);
      expect(res.statusCode, name).toBe(401);
      expect(res.json().error, name).toBe('invalid_client');
    }
    const wrongType = await post(t, '/auth/token', { grant_type: 'client_credentials', client_assertion_type: 'urn:other', client_assertion: await assertion(byValue, es384) });
    expect(wrongType.statusCode).toBe(401);
  });

  it('scopes beyond the registration are refused', async () => {
    const res = await backendToken(await assertion(byValue, es384), 'system/Patient.cruds');
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toBe('invalid_scope');
  });
});

describe('client secrets, introspection and revocation', () => {
  let secretClient: { client_id: string; client_secret: string };
  beforeAll(async () => {
    secretClient = (await registerClient(t, { client_name: 'backend secret', grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post', scope: 'system/Observation.rs system/Patient.rs' })) as typeof secretClient;
  });

  it('client_credentials with client_secret_post and client_secret_basic', async () => {
    const viaPost = await post(t, '/auth/token', { grant_type: 'client_credentials', scope: 'system/Observation.rs', client_id: secretClient.client_id, client_secret: secretClient.client_secret });
    expect(viaPost.statusCode, viaPost.body).toBe(200);
    const viaBasic = await post(t, '/auth/token', { grant_type: 'client_credentials', scope: 'system/Observation.rs' }, { authorization: `Basic ${Buffer.from(`${secretClient.client_id}:${secretClient.client_secret}`).toString('base64')}` });
    expect(viaBasic.statusCode).toBe(200);
    const wrong = await post(t, '/auth/token', { grant_type: 'client_credentials', client_id: secretClient.client_id, client_secret: 'nope' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error).toBe('invalid_client');
  });

  it('v1, v2 and granular scopes: granted as asked within the registration; a granular scope is carried but not widened', async () => {
    const ask = async (scope: string) =>
      post(t, '/auth/token', { grant_type: 'client_credentials', scope, client_id: secretClient.client_id, client_secret: secretClient.client_secret });
    expect((await ask('system/Observation.read')).json().scope).toBe('system/Observation.read');
    expect((await ask('system/Observation.write')).json().error).toBe('invalid_scope');
    const granular = await ask('system/Observation.rs?category=laboratory');
    expect(granular.statusCode, granular.body).toBe(200);
    expect(granular.json().scope).toBe('system/Observation.rs?category=laboratory');
    const introspected = await post(t, '/auth/introspect', { token: granular.json().access_token }, { authorization: `Bearer ${t.token}` });
    expect(introspected.json().scope).toBe('system/Observation.rs?category=laboratory');
    // The search applies the category filter (src/search/sql/access.ts): laboratory Observations only.
    const search = await t.server.http.inject({ method: 'GET', url: '/fhir/Observation', headers: { authorization: `Bearer ${granular.json().access_token}` } });
    expect(search.statusCode).toBe(200);
    const found = (search.json() as { entry?: Array<{ resource: { category?: Array<{ coding?: Array<{ code?: string }> }> } }> }).entry ?? [];
    for (const e of found) expect(e.resource.category?.some((c) => c.coding?.some((x) => x.code === 'laboratory'))).toBe(true);
    expect((await ask('system/Observation.rs?category')).json().error).toBe('invalid_scope');
  });

  it('introspection: live token active with its claims, unknown token {"active":false}, caller must authenticate', async () => {
    const token = (await post(t, '/auth/token', { grant_type: 'client_credentials', scope: 'system/Observation.rs', client_id: secretClient.client_id, client_secret: secretClient.client_secret })).json().access_token;
    const asClient = { client_id: secretClient.client_id, client_secret: secretClient.client_secret };
    const live = await post(t, '/auth/introspect', { token, ...asClient });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toMatchObject({ active: true, scope: 'system/Observation.rs', client_id: secretClient.client_id, iss: 'http://localhost:8080' });
    expect(typeof live.json().exp).toBe('number');
    const unknown = await post(t, '/auth/introspect', { token: 'not-a-token', ...asClient });
    expect(unknown.statusCode).toBe(200);
    expect(unknown.json()).toEqual({ active: false });
    const byBearer = await post(t, '/auth/introspect', { token }, { authorization: `Bearer ${t.token}` });
    expect(byBearer.json().active).toBe(true);
    const anonymous = await post(t, '/auth/introspect', { token });
    expect(anonymous.statusCode).toBe(401);
  });

  it('revocation (RFC 7009): the token stops working at once; unknown tokens are 200 too', async () => {
    const token = (await post(t, '/auth/token', { grant_type: 'client_credentials', scope: 'system/Patient.rs', client_id: secretClient.client_id, client_secret: secretClient.client_secret })).json().access_token;
    const auth = { authorization: `Bearer ${token}` };
    expect((await t.server.http.inject({ method: 'GET', url: '/fhir/Patient', headers: auth })).statusCode).toBe(200);
    const asClient = { client_id: secretClient.client_id, client_secret: secretClient.client_secret };
    expect((await post(t, '/auth/revoke', { token, ...asClient })).statusCode).toBe(200);
    expect((await t.server.http.inject({ method: 'GET', url: '/fhir/Patient', headers: auth })).statusCode).toBe(401);
    expect((await post(t, '/auth/introspect', { token, ...asClient })).json()).toEqual({ active: false });
    expect((await post(t, '/auth/revoke', { token: 'unknown', ...asClient })).statusCode).toBe(200);
  });
});

describe('dynamic client registration (RFC 7591 / 7592)', () => {
  it('needs an administrator: none → 401, a client without system write rights → 403', async () => {
    const none = await t.server.http.inject({ method: 'POST', url: '/auth/register', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ redirect_uris: ['https://a.example/cb'] }) });
    expect(none.statusCode).toBe(401);
    const readOnly = (await backendToken(await assertion(byValue, es384), 'system/*.rs')).json().access_token;
    const forbidden = await t.server.http.inject({ method: 'POST', url: '/auth/register', headers: { authorization: `Bearer ${readOnly}`, 'content-type': 'application/json' }, payload: JSON.stringify({ redirect_uris: ['https://a.example/cb'] }) });
    expect(forbidden.statusCode).toBe(403);
  });

  it('refuses bad metadata: script redirect URIs, fragments, private keys, unknown scopes', async () => {
    const bad = [
      { redirect_uris: ['javascript:alert(1)'] },
      { redirect_uris: ['https://a.example/cb#frag'] },
      { redirect_uris: [] },
      { grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'EC', crv: 'P-384', x: 'a', y: 'b', d: 'secret' }] } },
      { grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt' },
      { redirect_uris: ['https://a.example/cb'], scope: 'patient/*.rs admin:everything' },
      { grant_types: ['client_credentials'], token_endpoint_auth_method: 'none' },
    ];
    for (const metadata of bad) {
      const res = await t.server.http.inject({ method: 'POST', url: '/auth/register', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' }, payload: JSON.stringify(metadata) });
      expect(res.statusCode, JSON.stringify(metadata)).toBe(400);
      expect(res.json().error).toMatch(/^invalid_(redirect_uri|client_metadata)$/);
    }
  });

  it('read, update and delete with the registration access token', async () => {
    const created = await registerClient(t, { client_name: 'managed', redirect_uris: ['https://a.example/cb'], token_endpoint_auth_method: 'client_secret_basic' });
    expect(created.client_secret).toBeTruthy();
    expect(created.registration_client_uri).toBe(`http://localhost:8080/auth/register/${created.client_id}`);
    const path = new URL(created.registration_client_uri).pathname;
    const auth = { authorization: `Bearer ${created.registration_access_token}` };
    const read = await t.server.http.inject({ method: 'GET', url: path, headers: auth });
    expect(read.statusCode).toBe(200);
    expect(read.json()).toMatchObject({ client_id: created.client_id, client_name: 'managed', redirect_uris: ['https://a.example/cb'] });
    expect(read.json().client_secret).toBeUndefined();
    expect((await t.server.http.inject({ method: 'GET', url: path, headers: { authorization: 'Bearer wrong-token' } })).statusCode).toBe(401);

    const updated = await t.server.http.inject({
      method: 'PUT',
      url: path,
      headers: { ...auth, 'content-type': 'application/json' },
      payload: JSON.stringify({ client_id: created.client_id, client_name: 'renamed', redirect_uris: ['https://b.example/cb'], token_endpoint_auth_method: 'client_secret_basic' }),
    });
    expect(updated.statusCode, updated.body).toBe(200);
    expect(updated.json().redirect_uris).toEqual(['https://b.example/cb']);
    // the old redirect URI no longer authorizes
    const old = await t.server.http.inject({ method: 'GET', url: `/auth/authorize?response_type=code&client_id=${created.client_id}&redirect_uri=${encodeURIComponent('https://a.example/cb')}` });
    expect(old.statusCode).toBe(400);
    expect(old.headers.location).toBeUndefined();

    expect((await t.server.http.inject({ method: 'DELETE', url: path, headers: auth })).statusCode).toBe(204);
    const gone = await post(t, '/auth/token', { grant_type: 'client_credentials', client_id: created.client_id, client_secret: created.client_secret });
    expect(gone.statusCode).toBe(401);
  });
});

describe('signing keys', () => {
  it('rotate with a new kid; tokens signed by the old key keep working', async () => {
    const before = t.token;
    const oldKid = decodeProtectedHeader(before).kid;
    const rotated = await t.server.http.inject({ method: 'POST', url: '/auth/keys/rotate', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' }, payload: '{}' });
    expect(rotated.statusCode, rotated.body).toBe(200);
    const fresh = (await backendToken(await assertion(byValue, es384))).json().access_token;
    expect(decodeProtectedHeader(fresh).kid).not.toBe(oldKid);
    const jwks = (await t.server.http.inject({ method: 'GET', url: '/auth/jwks' })).json() as { keys: JWK[] };
    expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, decodeProtectedHeader(fresh).kid]));
    for (const token of [before, fresh]) {
      expect((await t.server.http.inject({ method: 'GET', url: '/fhir/Patient', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200);
    }
  });
});
