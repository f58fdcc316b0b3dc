import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { authorizeQuery, pkce, REDIRECT, registerClient } from './smart-helpers.js';

let t: TestApp;
const SCOPE = 'openid fhirUser user/*.rs';

beforeAll(async () => {
  t = await startTestApp();
}, 120_000);
afterAll(async () => {
  await t?.close();
});

/** A client registered properly, whose stored redirect URIs are then replaced behind the API's back. */
async function clientWithStoredUris(uris: string[]): Promise<string> {
  const { client_id } = await registerClient(t, { client_name: 'legacy app', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope: SCOPE });
  await sql`UPDATE oauth_client SET redirect_uris = ${JSON.stringify(uris)}::jsonb WHERE client_id = ${client_id}`.execute(t.server.database.db);
  return client_id;
}

/** GET /auth/authorize with `redirectUri`, or without the parameter (the one registered URI is implied). */
function authorize(clientId: string, redirectUri: string | undefined) {
  const query = new URLSearchParams(authorizeQuery({ clientId, scope: SCOPE, challenge: pkce().challenge }));
  if (redirectUri === undefined) query.delete('redirect_uri');
  else query.set('redirect_uri', redirectUri);
  return t.server.http.inject({ method: 'GET', url: `/auth/authorize?${query}` });
}

describe('stored redirect URIs are checked again on use (RFC 6749 §3.1.2, RFC 8252 §7.3)', () => {
  it('an authorization request is refused on the server, never redirected, when the stored URI breaks the rules', async () => {
    for (const bad of ['http://evil.example/cb', 'https://app.example.org@evil.example/cb', 'javascript:alert(1)', 'https://app.example.org/cb#frag', 'custom-scheme:/cb']) {
      const clientId = await clientWithStoredUris([bad]);
      for (const given of [bad, undefined]) {
        const res = await authorize(clientId, given);
        expect(res.statusCode, `${bad} (${given ? 'given' : 'implied'})`).toBe(400);
        expect(res.headers.location).toBeUndefined();
        expect(res.headers['content-type']).toMatch(/text\/html/);
        expect(res.body).toContain('not allowed');
      }
    }
  });

  it('a client whose stored URIs follow the rules still reaches the sign-in page', async () => {
    const clientId = await clientWithStoredUris([REDIRECT, 'http://127.0.0.1:8765/cb']);
    for (const uri of [REDIRECT, 'http://127.0.0.1:8765/cb']) {
      const res = await authorize(clientId, uri);
      expect(res.statusCode, uri).toBe(200);
      expect(res.body).toContain('/auth/authorize/signin');
    }
  });
});
