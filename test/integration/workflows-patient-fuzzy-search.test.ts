import type { Bundle, OperationOutcome, Patient } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explainFuzzyLookup } from '../../src/search/fuzzy-name.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';

/**
 * Fuzzy patient name search (seed 004 FR-PM, issue 12 §1; src/workflows/patient-fuzzy-search.ts):
 * misspellings and accents, scores, paging (default 20, max 100), access filters, index upkeep.
 */

let t: TestApp;
let nguyen: string;
let jose: string;
let maria: string;

async function create(resource: Patient): Promise<string> {
  const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as Patient).id!;
}

async function fuzzy(query: string, token?: string): Promise<{ statusCode: number; bundle: Bundle; body: string }> {
  const res = await t.request({ method: 'GET', url: `/fhir/Patient/$fuzzy-search?${query}`, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  return { statusCode: res.statusCode, bundle: res.json() as Bundle, body: res.body };
}

const ids = (b: Bundle) => (b.entry ?? []).map((e) => e.resource?.id);

async function clientToken(scope: string): Promise<string> {
  const res = await t.server.http.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` },
    payload: new URLSearchParams({ grant_type: 'client_credentials', scope }).toString(),
  });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { access_token: string }).access_token;
}

beforeAll(async () => {
  t = await startTestApp();
  nguyen = await create({ resourceType: 'Patient', name: [{ family: 'Nguyễn', given: ['Thi', 'Lan'] }], gender: 'female' });
  jose = await create({ resourceType: 'Patient', name: [{ family: 'García', given: ['José'] }], gender: 'male' });
  maria = await create({ resourceType: 'Patient', name: [{ family: 'Garcia', given: ['María'] }], gender: 'female' });
  await create({ resourceType: 'Patient', name: [{ family: 'Unrelated', given: ['Zebedee'] }] });
  // 130 patients sharing a family name, for paging.
  const entries = Array.from({ length: 130 }, (_, i) => ({
    resource: { resourceType: 'Patient', name: [{ family: 'Pagefold', given: [`Given${i}`] }] },
    request: { method: 'POST', url: 'Patient' },
  }));
  const batch = await t.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry: entries } });
  expect(batch.statusCode, batch.body.slice(0, 500)).toBe(200);
}, 120_000);

afterAll(async () => {
  await t?.close();
});

describe('fuzzy patient name search (FR-PM)', () => {
  it('FR-PM finds a misspelled family name (Ngyuen → Nguyễn) with a score', async () => {
    const { statusCode, bundle, body } = await fuzzy('name=Ngyuen');
    expect(statusCode, body).toBe(200);
    expect(bundle.type).toBe('searchset');
    expect(ids(bundle)).toEqual([nguyen]);
    const score = bundle.entry![0]!.search!.score!;
    expect(bundle.entry![0]!.search!.mode).toBe('match');
    expect(score).toBeGreaterThan(0.2);
    expect(score).toBeLessThan(1);
    // The FHIR string search (prefix) does not find the misspelling: the operation is what adds it.
    const plain = await t.request({ method: 'GET', url: '/fhir/Patient?name=Ngyuen' });
    expect((plain.json() as Bundle).entry ?? []).toHaveLength(0);
  });

  it('FR-PM accents do not matter: Jose finds José, Nguyen finds Nguyễn with score 1', async () => {
    const j = await fuzzy('name=Jose');
    expect(ids(j.bundle)[0]).toBe(jose);
    expect(j.bundle.entry![0]!.search!.score).toBe(1);
    const n = await fuzzy(`name=${encodeURIComponent('NGUYEN')}`);
    expect(ids(n.bundle)).toEqual([nguyen]);
    expect(n.bundle.entry![0]!.search!.score).toBe(1);
  });

  it('FR-PM several words rank the patient matching all of them first', async () => {
    const { bundle } = await fuzzy(`name=${encodeURIComponent('Maria Garcya')}`);
    expect(ids(bundle).slice(0, 2)).toEqual([maria, jose]);
    const scores = bundle.entry!.map((e) => e.search!.score!);
    expect(scores[0]).toBeGreaterThan(scores[1]!);
    expect(ids(bundle)).not.toContain(nguyen);
  });

  it('FR-PM page size: default 20, at most 100 (_count=500 is served as 100), next pages by _offset', async () => {
    const first = await fuzzy('name=Pagefold');
    expect(first.bundle.total).toBe(130);
    expect(first.bundle.entry).toHaveLength(20);
    const big = await fuzzy('name=Pagefold&_count=500');
    expect(big.bundle.entry).toHaveLength(100);
    expect(big.bundle.link?.find((l) => l.relation === 'self')?.url).toContain('_count=100');
    const next = big.bundle.link?.find((l) => l.relation === 'next')?.url;
    expect(next).toBeDefined();
    const rest = await fuzzy(new URL(next!).search.slice(1));
    expect(rest.bundle.entry).toHaveLength(30);
    expect(rest.bundle.link?.some((l) => l.relation === 'next')).toBe(false);
    const all = new Set([...ids(big.bundle), ...ids(rest.bundle)]);
    expect(all.size).toBe(130);
    const past = await fuzzy('name=Pagefold&_offset=200');
    expect(past.bundle.total).toBe(130);
    expect(past.bundle.entry ?? []).toHaveLength(0);
  });

  it('FR-PM the index follows updates and deletes in the write transaction', async () => {
    const id = await create({ resourceType: 'Patient', name: [{ family: 'Oldname' }] });
    expect(ids((await fuzzy('name=Oldname')).bundle)).toEqual([id]);
    const put = await t.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, name: [{ family: 'Brandnew' }] } });
    expect(put.statusCode, put.body).toBe(200);
    expect(ids((await fuzzy('name=Oldname')).bundle)).toEqual([]);
    expect(ids((await fuzzy('name=Brandnew')).bundle)).toEqual([id]);
    expect((await t.request({ method: 'DELETE', url: `/fhir/Patient/${id}` })).statusCode).toBeLessThan(300);
    expect(ids((await fuzzy('name=Brandnew')).bundle)).toEqual([]);
    // A refused write leaves no words behind.
    const bad = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Ghostly' }], gender: 'nonsense' } });
    expect(bad.statusCode).toBeGreaterThanOrEqual(400);
    expect(ids((await fuzzy('name=Ghostly')).bundle)).toEqual([]);
  });

  it('FR-PM only patients the caller may see are found (granular scope), other scopes are refused', async () => {
    const femaleOnly = await clientToken('system/Patient.rs?gender=female');
    const { statusCode, bundle, body } = await fuzzy('name=Garcia', femaleOnly);
    expect(statusCode, body).toBe(200);
    expect(ids(bundle)).toEqual([maria]);
    expect(bundle.total).toBe(1);
    const observationsOnly = await clientToken('system/Observation.rs');
    expect((await fuzzy('name=Garcia', observationsOnly)).statusCode).toBe(403);
  });

  it('FR-PM bad input is a 400 OperationOutcome', async () => {
    for (const q of ['', 'name=', 'name=a', 'name=Jose&_count=-1', 'name=Jose&_count=abc', 'name=Jose&_offset=99999', 'name=Jose&family=x', 'name=a&name=b', `name=${'x'.repeat(201)}`]) {
      const res = await fuzzy(q);
      expect(res.statusCode, q).toBe(400);
      expect((res.bundle as unknown as OperationOutcome).resourceType, q).toBe('OperationOutcome');
    }
  });

  it('FR-PM the candidate lookup uses the GIN trigram index', async () => {
    const plan = await explainFuzzyLookup(t.server.database.db, 'ngyuen');
    expect(plan).toMatch(/Bitmap Index Scan on patient_name_word_trgm/);
    expect(plan).toMatch(/Index Cond: \(token (%|OPERATOR\(\w+\.%\))/);
  });
});
