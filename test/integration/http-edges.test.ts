import { connect } from 'node:net';
import type { CapabilityStatement, OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ BODY_LIMIT_BYTES: String(256 * 1024) });
});
afterAll(async () => {
  await t?.close();
});

function expectOutcome(body: string): OperationOutcome {
  const parsed = JSON.parse(body) as OperationOutcome;
  expect(parsed.resourceType).toBe('OperationOutcome');
  expect(parsed.issue.length).toBeGreaterThan(0);
  return parsed;
}

describe('bad input never gives a 500 (contract: errors)', () => {
  it('malformed JSON is 400', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: '{"resourceType": "Patient", ', headers: { 'content-type': 'application/fhir+json' } });
    expect(res.statusCode).toBe(400);
    expectOutcome(res.body);
  });

  it('an empty body is 400', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: '', headers: { 'content-type': 'application/fhir+json' } });
    expect(res.statusCode).toBe(400);
  });

  it('prototype pollution keys are refused with 400 and pollute nothing', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/fhir/Patient',
      payload: '{"resourceType":"Patient","__proto__":{"polluted":true}}',
      headers: { 'content-type': 'application/fhir+json' },
    });
    expect(res.statusCode).toBe(400);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const ctor = await t.request({
      method: 'POST',
      url: '/fhir/Patient',
      payload: '{"resourceType":"Patient","constructor":{"prototype":{"polluted":true}}}',
      headers: { 'content-type': 'application/fhir+json' },
    });
    expect(ctor.statusCode).toBe(400);
  });

  it('a NUL character in a resource is 400, not a database error', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: '{"resourceType":"Patient","name":[{"family":"a\\u0000b"}]}', headers: { 'content-type': 'application/fhir+json' } });
    expect(res.statusCode).toBe(400);
    expectOutcome(res.body);
  });

  it('a body over the limit is 413', async () => {
    const big = JSON.stringify({ resourceType: 'Patient', name: [{ family: 'x'.repeat(300 * 1024) }] });
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: big, headers: { 'content-type': 'application/fhir+json' } });
    expect(res.statusCode).toBe(413);
    expectOutcome(res.body);
  });

  it('an unsupported content type is 415', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: '%PDF-1.4', headers: { 'content-type': 'application/pdf' } });
    expect(res.statusCode).toBe(415);
    expectOutcome(res.body);
  });

  it('a narrative that could run in a browser, or is not XHTML, is refused and not stored', async () => {
    for (const div of ['<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>', '<div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="alert(1)"/></div>', '<div xmlns="http://www.w3.org/1999/xhtml">a < b</div>']) {
      const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', text: { status: 'generated', div } } });
      expect(res.statusCode, div).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
      expect(JSON.stringify(expectOutcome(res.body))).toMatch(/txt-1|well-formed/);
      expect(res.headers.location).toBeUndefined();
    }
  });

  it('a JSON array or string as a resource is 400', async () => {
    expect((await t.request({ method: 'POST', url: '/fhir/Patient', payload: '[1,2]', headers: { 'content-type': 'application/fhir+json' } })).statusCode).toBe(400);
    expect((await t.request({ method: 'POST', url: '/fhir/Patient', payload: '"Patient"', headers: { 'content-type': 'application/fhir+json' } })).statusCode).toBe(400);
  });

  it('deeply nested JSON is refused without crashing', async () => {
    const deep = `{"resourceType":"Patient","extension":[${'{"url":"http://x","extension":['.repeat(2000)}${']}'.repeat(2000)}]}`;
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: deep, headers: { 'content-type': 'application/fhir+json' } });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
  });

  it('an unknown route is a 404 OperationOutcome; a _format other than JSON or XML is 406', async () => {
    const res = await t.request({ method: 'GET', url: '/fhir/Patient/1/_history/1/extra/more' });
    expect(res.statusCode).toBe(404);
    expectOutcome(res.body);
    expect((await t.request({ method: 'GET', url: '/fhir/metadata?_format=html' })).statusCode).toBe(406);
  });
});

describe('access tokens (contract: POST /auth/token)', () => {
  it('no token, a garbage token or a forged one is 401 with an OperationOutcome', async () => {
    const none = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient/x' });
    expect(none.statusCode).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/Bearer/);
    expectOutcome(none.body);
    const garbage = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient/x', headers: { authorization: 'Bearer abc' } });
    expect(garbage.statusCode).toBe(401);
    const [h, p] = t.token.split('.');
    const forged = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient/x', headers: { authorization: `Bearer ${h}.${p}.AAAA` } });
    expect(forged.statusCode).toBe(401);
  });

  it('a wrong client secret is 401 invalid_client; an unknown grant is 400', async () => {
    const bad = await t.server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:nope`).toString('base64')}` },
      payload: 'grant_type=client_credentials',
    });
    expect(bad.statusCode).toBe(401);
    expect(bad.json().error).toBe('invalid_client');
    const grant = await t.server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=password&client_id=${TEST_CLIENT.id}&client_secret=${TEST_CLIENT.secret}`,
    });
    expect(grant.statusCode).toBe(400);
    expect(grant.json().error).toBe('unsupported_grant_type');
  });

  it('v2 scopes are accepted, and a read-only token cannot write (403)', async () => {
    const res = await t.server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `grant_type=client_credentials&client_id=${TEST_CLIENT.id}&client_secret=${TEST_CLIENT.secret}&scope=${encodeURIComponent('system/Patient.rs')}`,
    });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { access_token: string; expires_in: number; token_type: string; scope: string };
    expect(body.token_type).toBe('Bearer');
    expect(body.expires_in).toBeLessThanOrEqual(3600);
    expect(body.scope).toBe('system/Patient.rs');
    const auth = { authorization: `Bearer ${body.access_token}` };
    const write = await t.server.http.inject({ method: 'POST', url: '/fhir/Patient', headers: { ...auth, 'content-type': 'application/fhir+json' }, payload: '{"resourceType":"Patient"}' });
    expect(write.statusCode).toBe(403);
    const otherType = await t.server.http.inject({ method: 'GET', url: '/fhir/Observation/x', headers: auth });
    expect(otherType.statusCode).toBe(403);
    const read = await t.server.http.inject({ method: 'GET', url: '/fhir/Patient/x', headers: auth });
    expect(read.statusCode).toBe(404);
  });
});

describe('metadata and health', () => {
  it('/fhir/metadata is public and lists types, interactions and search parameters', async () => {
    const res = await t.server.http.inject({ method: 'GET', url: '/fhir/metadata' });
    expect(res.statusCode).toBe(200);
    const cs = res.json() as CapabilityStatement;
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.fhirVersion).toBe('4.0.1');
    const resources = cs.rest?.[0].resource ?? [];
    expect(resources.length).toBeGreaterThanOrEqual(140);
    const patient = resources.find((r) => r.type === 'Patient');
    expect(patient?.interaction?.map((i) => i.code)).toEqual(expect.arrayContaining(['read', 'vread', 'update', 'patch', 'delete', 'create', 'history-instance']));
    expect(patient?.searchParam?.some((p) => p.name === 'birthdate')).toBe(true);
  });

  it('/healthz and /readyz answer 200', async () => {
    expect((await t.server.http.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await t.server.http.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  it('/metrics exposes request durations by route pattern, without ids or query values', async () => {
    await t.request({ method: 'GET', url: '/fhir/Patient/metrics-probe-id?name=Secretname' });
    const res = await t.server.http.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('http_request_duration_seconds_bucket');
    expect(res.body).toContain('route="/fhir/:type/:id"');
    expect(res.body).not.toContain('metrics-probe-id');
    expect(res.body).not.toContain('Secretname');
  });

  it('/metrics has the gateway figures of issue 17: job queues by state, MLLP counters, the database pool on PostgreSQL', async () => {
    const port = await t.server.hl7v2.listen(0, '127.0.0.1');
    const message = 'MSH|^~\\&|LAB|HOSP|FHIR|HOSP|20240501101500||ORU^R01|MET-1|P|2.5\rPID|1||MET1^^^HOSP^MR||Metric^Mo||19800101|M';
    await new Promise<void>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(message), Buffer.from([0x1c, 0x0d])])));
      socket.on('data', (d: Buffer) => {
        if (d.includes(0x1c)) {
          socket.end();
          resolve();
        }
      });
      socket.on('error', reject);
    });
    const res = await t.server.http.inject({ method: 'GET', url: '/metrics' });
    expect(res.body).toMatch(/job_queue_jobs\{queue="[^"]+",state="waiting"\} \d+/);
    expect(res.body).toMatch(/hl7v2_mllp_frames_total [1-9]/);
    expect(res.body).toMatch(/hl7v2_mllp_acks_total\{code="A[AER]"\} [1-9]/);
    if (process.env.DATABASE_URL) expect(res.body).toMatch(/db_pool_connections\{state="total"\} \d+/);
  });

  it('answers CORS preflights for browser apps', async () => {
    const res = await t.server.http.inject({
      method: 'OPTIONS',
      url: '/fhir/Patient',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(res.statusCode).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
  });

  it('every response carries a request id', async () => {
    const res = await t.server.http.inject({ method: 'GET', url: '/healthz' });
    expect(res.headers['x-request-id']).toBeTruthy();
  });
});
