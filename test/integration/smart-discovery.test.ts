import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
}, 120_000);
afterAll(async () => {
  await t?.close();
});

const get = (url: string, headers: Record<string, string> = {}) => t.server.http.inject({ method: 'GET', url, headers });

describe('SMART and OpenID discovery (no token needed)', () => {
  it('serves the SMART configuration at the FHIR base and the root, with absolute endpoints', async () => {
    for (const url of ['/fhir/.well-known/smart-configuration', '/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration/']) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(200);
      const c = res.json();
      expect(c.issuer).toBe('http://localhost:8080');
      expect(c.authorization_endpoint).toBe('http://localhost:8080/auth/authorize');
      expect(c.token_endpoint).toBe('http://localhost:8080/auth/token');
      expect(c.introspection_endpoint).toBe('http://localhost:8080/auth/introspect');
      expect(c.revocation_endpoint).toBe('http://localhost:8080/auth/revoke');
      expect(c.registration_endpoint).toBe('http://localhost:8080/auth/register');
      expect(c.jwks_uri).toBe('http://localhost:8080/auth/jwks');
      expect(c.code_challenge_methods_supported).toEqual(['S256']);
      expect(c.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'client_credentials', 'refresh_token']));
      expect(c.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(['client_secret_basic', 'client_secret_post', 'private_key_jwt']));
      expect(c.token_endpoint_auth_signing_alg_values_supported).toEqual(['RS384', 'ES384']);
      expect(c.scopes_supported).toEqual(expect.arrayContaining(['openid', 'fhirUser', 'launch', 'launch/patient', 'offline_access', 'patient/*.rs', 'system/*.*']));
      expect(c.capabilities).toEqual(
        expect.arrayContaining([
          'launch-ehr', 'launch-standalone', 'client-public', 'client-confidential-symmetric', 'client-confidential-asymmetric',
          'context-ehr-patient', 'context-ehr-encounter', 'context-standalone-patient', 'permission-offline', 'permission-patient',
          'permission-user', 'permission-v1', 'permission-v2', 'sso-openid-connect', 'authorize-post',
        ]),
      );
    }
  });

  it('the issuer serves its OpenID configuration, whose JWKS has an RSA key for RS256 id_tokens', async () => {
    const smart = (await get('/fhir/.well-known/smart-configuration')).json();
    const res = await get('/.well-known/openid-configuration');
    expect(res.statusCode).toBe(200);
    const oidc = res.json();
    expect(`${oidc.issuer}/.well-known/openid-configuration`).toBe('http://localhost:8080/.well-known/openid-configuration');
    expect(oidc.issuer).toBe(smart.issuer);
    expect(oidc.id_token_signing_alg_values_supported).toEqual(['RS256']);
    expect(oidc.response_types_supported).toEqual(['code']);
    expect(oidc.subject_types_supported).toEqual(['public']);
    const jwks = (await get(new URL(oidc.jwks_uri).pathname)).json() as { keys: Array<Record<string, string>> };
    const rsa = jwks.keys.find((k) => k.kty === 'RSA');
    const ec = jwks.keys.find((k) => k.kty === 'EC');
    expect(rsa?.alg).toBe('RS256');
    expect(rsa?.kid).toBeTruthy();
    expect(ec?.kid).toBeTruthy();
    for (const key of jwks.keys) expect(key.d).toBeUndefined();
  });

  it('smart_style_url serves JSON; CORS echoes the Origin for browser apps', async () => {
    const style = await get('/auth/smart-style.json');
    expect(style.statusCode).toBe(200);
    expect(style.headers['content-type']).toMatch(/json/);
    expect(style.json().color_background).toBeTruthy();
    const cors = await get('/fhir/.well-known/smart-configuration', { origin: 'https://app.example.org' });
    expect(cors.headers['access-control-allow-origin']).toBe('https://app.example.org');
  });

  it('the CapabilityStatement names SMART and the OAuth endpoints', async () => {
    const security = (await get('/fhir/metadata')).json().rest[0].security;
    expect(security.service[0].coding[0].code).toBe('SMART-on-FHIR');
    const uris = Object.fromEntries(security.extension[0].extension.map((e: { url: string; valueUri: string }) => [e.url, e.valueUri]));
    expect(uris).toMatchObject({ authorize: 'http://localhost:8080/auth/authorize', token: 'http://localhost:8080/auth/token', register: 'http://localhost:8080/auth/register' });
  });

  it('FHIR reads still need a token: exactly 401', async () => {
    expect((await get('/fhir/Patient')).statusCode).toBe(401);
    expect((await get('/fhir/.well-known/other')).statusCode).toBe(401);
  });
});
