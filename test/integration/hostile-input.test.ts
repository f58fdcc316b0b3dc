import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/** Bad input never gives a 500 (contract: errors). Searched with generated hostile values. */
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
  await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Müller' }], birthDate: '1970-01-01' } });
});
afterAll(async () => {
  await t?.close();
});

const NASTY = [
  '', ' ', '%00', '\u0000', "'; DROP TABLE resource; --", '\\', '\\,', '|', '||', '$', ',,,', 'gt', 'ap', 'eq9999-99-99',
  'ge2020-02-30', 'lt-1', 'x'.repeat(5000), '%', '_', '*', '"', '{}', '[]', 'Patient/', '/../..', '1e999', 'NaN',
  'http://a|b|c|d', 'sa2020', 'eb', 'ne', 'Patient?name=x', '::', ':missing', 'true', 'null',
];
const PARAMS = [
  'name', 'name:exact', 'name:contains', 'family:missing', 'birthdate', 'identifier', 'identifier:of-type', 'gender:not',
  'general-practitioner', 'general-practitioner:Patient', 'general-practitioner.name', '_has:Observation:subject:code',
  '_id', '_lastUpdated', '_tag', '_profile', '_count', '_sort', '_include', '_revinclude', '_total', '_summary',
  '_elements', '_type', '_cursor', 'unknown-param', 'address-postalcode:above', 'telecom:text', '_content', '_query',
];

describe('hostile search input (R4 search.html#errors)', () => {
  it('every parameter with every nasty value answers 200 or 4xx with an OperationOutcome', async () => {
    const failures: string[] = [];
    for (const param of PARAMS) {
      for (const value of NASTY) {
        const url = `/fhir/Patient?${encodeURIComponent(param)}=${encodeURIComponent(value)}`;
        const res = await t.request({ method: 'GET', url });
        if (res.statusCode >= 500) failures.push(`${param}=${value.slice(0, 30)} → ${res.statusCode} ${res.body.slice(0, 200)}`);
        else if (res.statusCode >= 400 && res.json().resourceType !== 'OperationOutcome') failures.push(`${param}: ${res.statusCode} without OperationOutcome`);
      }
    }
    expect(failures).toEqual([]);
  }, 300_000);

  it('generated parameter names and values never give a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 40 }), fc.string({ maxLength: 80 }), async (name, value) => {
        const res = await t.request({ method: 'GET', url: `/fhir/Observation?${encodeURIComponent(name)}=${encodeURIComponent(value)}` });
        expect(res.statusCode).toBeLessThan(500);
      }),
      { numRuns: 300 },
    );
  }, 300_000);

  it('generated resources posted to create never give a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (value) => {
        const payload = typeof value === 'object' && value !== null && !Array.isArray(value) ? { ...value, resourceType: 'Patient' } : value;
        const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify(payload), headers: { 'content-type': 'application/fhir+json' } });
        expect(res.statusCode).toBeLessThan(500);
      }),
      { numRuns: 300 },
    );
  }, 300_000);

  it('generated history parameters (_at, _since, _count, _cursor) never give a 500', async () => {
    const value = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('2024', 'ge2024-05', 'lt2024-05-01T10:00:00Z', 'eq9999-12-31', 'gt0000', 'le2024-02-29', '2024-05-01T10:00:00.1234567890Z', 'sa2024'));
    const name = fc.constantFrom('_at', '_since', '_count', '_cursor');
    const scope = fc.constantFrom('/fhir/_history', '/fhir/Patient/_history', '/fhir/Patient/x/_history');
    await fc.assert(
      fc.asyncProperty(scope, fc.array(fc.tuple(name, value), { minLength: 1, maxLength: 3 }), async (path, params) => {
        const query = params.map(([n, v]) => `${n}=${encodeURIComponent(v)}`).join('&');
        const res = await t.request({ method: 'GET', url: `${path}?${query}` });
        expect(res.statusCode, `${path}?${query} ${res.body.slice(0, 200)}`).toBeLessThan(500);
        expect(res.json().resourceType).toBe(res.statusCode === 200 ? 'Bundle' : 'OperationOutcome');
      }),
      { numRuns: 300 },
    );
  }, 300_000);

  it('raw garbage in paths and headers never gives a 500', async () => {
    const paths = ['/fhir/Patient/%ZZ', '/fhir/%2e%2e/%2e%2e', `/fhir/Patient/${'a'.repeat(3000)}`, '/fhir/Patient/x/_history/%00', '/fhir/Patient/$validate?mode=%ZZ', '/fhir/Patient?name=%ED%A0%80', '/fhir/Patient?%ED%A0%80=1'];
    for (const url of paths) {
      const res = await t.request({ method: 'GET', url });
      expect(res.statusCode, url).toBeLessThan(500);
    }
    const badEtag = await t.request({ method: 'PUT', url: '/fhir/Patient/x', payload: { resourceType: 'Patient', id: 'x' }, headers: { 'if-match': 'garbage"' } });
    expect(badEtag.statusCode).toBe(400);
  });
});
