import type { OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { approve, createUser, exchangeCode, pkce, REDIRECT, registerClient } from './smart-helpers.js';

/** Issue 17 §1 (seeds 001/002 gateway duties): API request limits per client and per IP. */
describe('API rate limits', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ API_RATE_LIMIT_PER_CLIENT: '5', API_RATE_LIMIT_PER_IP: '3' });
  });
  afterAll(async () => t?.close());

  it('a client past its per-minute limit gets 429 with Retry-After and an OperationOutcome', async () => {
    const token = await t.tokenFor('system/Patient.rs');
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 7; i++) {
      last = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient?_count=1', headers: { authorization: `Bearer ${token}` } });
      statuses.push(last.statusCode);
    }
    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(statuses.slice(5)).toEqual([429, 429]);
    expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(last!.headers['retry-after'])).toBeLessThanOrEqual(60);
    const body = last!.json() as OperationOutcome;
    expect(body.resourceType).toBe('OperationOutcome');
    expect(body.issue[0].code).toBe('throttled');
  });

  it('the bucket is the verified client, not the token: a forged token counts against the IP', async () => {
    const forged = 'eyJhbGciOiJub25lIn0.eyJjbGllbnRfaWQiOiJ4In0.';
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient', headers: { authorization: `Bearer ${forged}` }, remoteAddress: '10.9.8.7' });
      statuses.push(res.statusCode);
    }
    // Three anonymous attempts are answered (401: no valid token), the fourth is throttled.
    expect(statuses).toEqual([401, 401, 401, 429]);
    // Another address has its own bucket.
    const other = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient', remoteAddress: '10.9.8.6' });
    expect(other.statusCode).toBe(401);
  });

  it('issue 17: users of one client (the console) each have their own bucket', async () => {
    const scope = 'openid fhirUser user/Patient.rs';
    const app = await registerClient(t, { client_name: 'console-like', redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], scope });
    const userToken = async (name: string) => {
      const username = `${name}-${Date.now().toString(36)}`;
      await createUser(t, { username, role: 'NURSE', fhirUser: `Practitioner/${name}` });
      const { verifier, challenge } = pkce();
      const redirect = await approve(t, { clientId: app.client_id, scope, challenge }, username);
      const res = await exchangeCode(t, { code: redirect.searchParams.get('code') ?? undefined, client_id: app.client_id, code_verifier: verifier });
      expect(res.statusCode, res.body).toBe(200);
      return (res.json() as { access_token: string }).access_token;
    };
    const [first, second] = [await userToken('nurse-a'), await userToken('nurse-b')];
    const get = async (token: string) => (await t.server.http.inject({ method: 'GET', url: '/fhir/Patient?_count=1', headers: { authorization: `Bearer ${token}` } })).statusCode;
    const firstStatuses: number[] = [];
    for (let i = 0; i < 6; i++) firstStatuses.push(await get(first));
    expect(firstStatuses).toEqual([200, 200, 200, 200, 200, 429]);
    // The other user of the same client is not throttled by the first one.
    expect(await get(second)).toBe(200);
  });

  it('health, metrics and the conformance of other paths are not limited', async () => {
    for (let i = 0; i < 8; i++) {
      const res = await t.server.http.inject({ method: 'GET', url: '/healthz', remoteAddress: '10.9.8.7' });
      expect(res.statusCode).toBe(200);
    }
  });
});

describe.skipIf(!process.env.DATABASE_URL)('database pool exhaustion (PostgreSQL)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ DATABASE_POOL_SIZE: '1', DATABASE_POOL_TIMEOUT_MS: '300' });
  });
  afterAll(async () => t?.close());

  it('a request that finds no free connection in time gets 503 with Retry-After, not a hang', async () => {
    // Hold the only connection inside a transaction.
    const release = (() => {
      let open!: () => void;
      const done = new Promise<void>((resolve) => (open = resolve));
      const held = t.server.store.transaction(async (tx) => {
        await tx.executor();
        await done;
      });
      return async () => {
        open();
        await held;
      };
    })();
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const res = await t.request({ method: 'GET', url: '/fhir/Patient?_count=1' });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect((res.json() as OperationOutcome).issue[0].diagnostics ?? (res.json() as OperationOutcome).issue[0].details?.text).toMatch(/busy|connection/);
    await release();
    const after = await t.request({ method: 'GET', url: '/fhir/Patient?_count=1' });
    expect(after.statusCode).toBe(200);
  });
});

describe.skipIf(!process.env.REDIS_URL || !process.env.DATABASE_URL)('API rate limits shared through Redis', () => {
  it('two server processes of one deployment share one client budget', async () => {
    const a = await startTestApp({ API_RATE_LIMIT_PER_CLIENT: '4' });
    // The second app serves the same database schema: the same deployment.
    const b = await startTestApp({ API_RATE_LIMIT_PER_CLIENT: '4', DATABASE_SCHEMA: a.config.databaseSchema! });
    try {
      const token = await a.tokenFor('system/Patient.rs');
      const get = (t: TestApp) => t.server.http.inject({ method: 'GET', url: '/fhir/Patient?_count=1', headers: { authorization: `Bearer ${token}` } });
      const statuses = [(await get(a)).statusCode, (await get(b)).statusCode, (await get(a)).statusCode, (await get(b)).statusCode, (await get(a)).statusCode, (await get(b)).statusCode];
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
    } finally {
      await b.close();
      await a.close();
    }
  });
});
