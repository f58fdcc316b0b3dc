import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, CapabilityStatement, FhirResource, Observation, Patient, Resource } from 'fhir/r4.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Whole-system search through HTTP: `GET [base]?…`, `POST [base]/_search`, against the real
 * database (PGlite, or PostgreSQL when DATABASE_URL is set).
 */

const BASE = 'http://localhost:8080/fhir';
const TAG = 'http://example.org/tags|cohort-a';
let t: TestApp;
/** live resources as `Type/id`, per phase */
const phaseA: string[] = [];
const phaseB: string[] = [];
let deletedKey: string;
let boundary: string;

function key(r: Resource): string {
  return `${r.resourceType}/${r.id}`;
}

async function store(resources: FhirResource[]): Promise<Resource[]> {
  return t.server.store.transaction(async (tx) => {
    const out: Resource[] = [];
    for (const r of resources) out.push((await tx.create(r)).resource!);
    return out;
  });
}

function patient(i: number, extra: Partial<Patient> = {}): Patient {
  return { resourceType: 'Patient', name: [{ family: `Sys${i}`, given: ['Test'] }], gender: i % 2 ? 'male' : 'female', ...extra };
}

function weight(subject: string, kg: number, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '29463-7', display: 'Body weight' }] },
    subject: { reference: subject },
    valueQuantity: { value: kg, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
    ...extra,
  };
}

async function get(url: string, token?: string): Promise<{ status: number; body: Bundle & { issue?: Array<{ diagnostics?: string }> } }> {
  const res = await t.request({ method: 'GET', url, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  return { status: res.statusCode, body: res.json() };
}

function matches(b: Bundle): string[] {
  return (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => key(e.resource!));
}

/** Follows `next` links to the end; every page's links must stay at the base URL. */
async function allPages(url: string): Promise<{ keys: string[]; pages: number; firstTotal?: number }> {
  const keys: string[] = [];
  let pages = 0;
  let firstTotal: number | undefined;
  for (let next: string | undefined = url; next; ) {
    const { status, body } = await get(next);
    expect(status).toBe(200);
    if (pages === 0) firstTotal = body.total;
    pages++;
    keys.push(...matches(body));
    const link = body.link?.find((l) => l.relation === 'next')?.url;
    if (link) expect(link.startsWith(`${BASE}?`)).toBe(true);
    next = link ? `/fhir${link.slice(BASE.length)}` : undefined;
    expect(pages).toBeLessThan(100);
  }
  return { keys, pages, firstTotal };
}


beforeAll(async () => {
  t = await startTestApp();
  const patients = await store([
    patient(0, { meta: { tag: [{ system: 'http://example.org/tags', code: 'cohort-a' }] } }),
    patient(1, { meta: { source: 'http://source.example/ehr-a' } }),
    patient(2, { meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] } }),
    patient(3),
    patient(4),
  ]);
  const observations = await store(
    patients.flatMap((p, i) => [
      weight(key(p), 50 + i * 10, i < 2 ? { meta: { tag: [{ system: 'http://example.org/tags', code: 'cohort-a' }] } } : {}),
      weight(key(p), 55 + i * 10),
    ]),
  );
  const others = await store([
    { resourceType: 'Practitioner', name: [{ family: 'Doc' }] },
    { resourceType: 'Practitioner', name: [{ family: 'Nurse' }], meta: { tag: [{ system: 'http://example.org/tags', code: 'cohort-a' }] } },
    { resourceType: 'Organization', name: 'Hospital' },
  ]);
  phaseA.push(...[...patients, ...observations, ...others].map(key));
  // one deleted resource: never in a system search, nor in its counts
  const [doomed] = await store([patient(9)]);
  deletedKey = key(doomed!);
  expect((await t.request({ method: 'DELETE', url: `/fhir/${deletedKey}` })).statusCode).toBeLessThan(300);
  const lastA = Math.max(...(await Promise.all(phaseA.map(async (k) => (await t.request({ method: 'GET', url: `/fhir/${k}` })).json() as Resource))).map((r) => Date.parse(r.meta!.lastUpdated!)), Date.now());
  boundary = new Date(Math.ceil((lastA + 1) / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  await new Promise((r) => setTimeout(r, Date.parse(boundary) - Date.now() + 50));
  const later = await store([{ resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: phaseA[0]! } }, patient(5)]);
  phaseB.push(...later.map(key));
}, 120_000);
afterAll(async () => t?.close());

describe('system search', () => {
  it('_summary=count over every type equals the number of live resources, and the per-type totals', async () => {
    const all = [...phaseA, ...phaseB];
    const { status, body } = await get('/fhir?_summary=count');
    expect(status).toBe(200);
    expect(body.total).toBe(all.length);
    expect((await get('/fhir/?_summary=count')).body.total).toBe(all.length);
    const types = [...new Set(all.map((k) => k.split('/')[0]!))];
    let sum = 0;
    for (const type of types) sum += (await get(`/fhir/${type}?_summary=count`)).body.total!;
    expect(sum).toBe(all.length);
    // the same through GET [base] with no parameter at all: every live resource, no deleted one
    const everything = await allPages('/fhir?_count=100');
    expect(everything.keys.sort()).toEqual([...all].sort());
    expect(everything.keys).not.toContain(deletedKey);
  });

  it('_type names the types searched', async () => {
    const { body } = await get('/fhir?_type=Patient,Observation&_summary=count');
    expect(body.total).toBe([...phaseA, ...phaseB].filter((k) => /^(Patient|Observation)\//.test(k)).length);
    const { body: page } = await get('/fhir?_type=Practitioner,Organization');
    expect(matches(page).sort()).toEqual(phaseA.filter((k) => /^(Practitioner|Organization)\//.test(k)).sort());
    expect(page.total).toBe(3);
  });

  it('_lastUpdated ranges over every type', async () => {
    const after = await get(`/fhir?_lastUpdated=ge${boundary}`);
    expect(after.status).toBe(200);
    expect(matches(after.body).sort()).toEqual([...phaseB].sort());
    expect(after.body.total).toBe(phaseB.length);
    const before = await get(`/fhir?_lastUpdated=lt${boundary}&_summary=count`);
    expect(before.body.total).toBe(phaseA.length);
    const typed = await get(`/fhir?_type=Patient&_lastUpdated=ge${boundary}`);
    expect(matches(typed.body)).toEqual(phaseB.filter((k) => k.startsWith('Patient/')));
  });

  it('_tag, _source, _security, _profile and _id across types', async () => {
    const tagged = await get(`/fhir?_tag=${encodeURIComponent(TAG)}`);
    expect(tagged.status).toBe(200);
    const keys = matches(tagged.body);
    expect(keys.length).toBe(4); // Patient/0, two Observations, one Practitioner
    expect(new Set(keys.map((k) => k.split('/')[0]))).toEqual(new Set(['Patient', 'Observation', 'Practitioner']));
    expect(tagged.body.total).toBe(4);
    expect((await get(`/fhir?_tag=${encodeURIComponent(TAG)}&_summary=count`)).body.total).toBe(4);
    expect((await get(`/fhir?_tag=${encodeURIComponent(TAG)}&_type=Observation&_summary=count`)).body.total).toBe(2);
    expect(matches((await get('/fhir?_source=http://source.example/ehr-a')).body)).toEqual([phaseA[1]]);
    expect(matches((await get('/fhir?_security=R')).body)).toEqual([phaseA[2]]);
    expect((await get('/fhir?_profile=http://example.org/no-such-profile&_summary=count')).body.total).toBe(0);
    const two = [phaseA[0]!, phaseA[7]!];
    const byId = await get(`/fhir?_id=${two.map((k) => k.split('/')[1]).join(',')}`);
    expect(matches(byId.body).sort()).toEqual([...two].sort());
    expect((await get(`/fhir?_id=${deletedKey.split('/')[1]}&_summary=count`)).body.total).toBe(0);
  });

  it('_include and _has where the types allow them', async () => {
    const { body } = await get(`/fhir?_type=Observation&_tag=${encodeURIComponent(TAG)}&_include=Observation:subject`);
    expect(matches(body).length).toBe(2);
    const included = (body.entry ?? []).filter((e) => e.search?.mode === 'include').map((e) => key(e.resource!));
    expect(included.sort()).toEqual([phaseA[0]!, phaseA[1]!].sort());
    const has = await get('/fhir?_type=Patient&_has:Observation:subject:value-quantity=gt80');
    expect(has.status).toBe(200);
    // weights 50..95 kg (patient i: 50 + 10i and 55 + 10i): patients 3 (85) and 4 (90, 95)
    expect(matches(has.body).sort()).toEqual([phaseA[3]!, phaseA[4]!].sort());
  });

  it('pages through every match by keyset links, with no duplicate and none missing', async () => {
    const all = [...phaseA, ...phaseB].sort();
    const tagged = matches((await get(`/fhir?_tag=${encodeURIComponent(TAG)}`)).body).sort();
    const cases: Array<[string, string[]]> = [
      ['_count=4', all],
      ['_count=5&_sort=_lastUpdated', all],
      ['_count=3&_sort=-_lastUpdated', all],
      [`_count=2&_tag=${encodeURIComponent(TAG)}`, tagged],
      ['_count=3&_type=Patient,Observation', all.filter((k) => /^(Patient|Observation)\//.test(k))],
    ];
    for (const [q, expected] of cases) {
      const { keys, pages, firstTotal } = await allPages(`/fhir?${q}`);
      expect(new Set(keys).size, q).toBe(keys.length);
      expect([...keys].sort(), q).toEqual(expected);
      expect(firstTotal, q).toBe(expected.length);
      expect(pages, q).toBeGreaterThan(1);
    }
    // _sort=_lastUpdated really orders by last update
    const { keys } = await allPages('/fhir?_count=6&_sort=_lastUpdated');
    expect(keys.slice(-phaseB.length).sort()).toEqual([...phaseB].sort());
    const desc = await allPages('/fhir?_count=6&_sort=-_lastUpdated');
    expect(desc.keys.slice(0, phaseB.length).sort()).toEqual([...phaseB].sort());
  });

  it('POST [base]/_search with a form body answers as GET does', async () => {
    const query = `_type=Observation,Practitioner&_tag=${encodeURIComponent(TAG)}&_count=2`;
    const viaGet = await get(`/fhir?${query}`);
    const viaPost = await t.request({ method: 'POST', url: '/fhir/_search', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: query });
    expect(viaPost.statusCode).toBe(200);
    const body = viaPost.json() as Bundle;
    expect(matches(body)).toEqual(matches(viaGet.body));
    expect(body.total).toBe(3);
    expect(body.link?.find((l) => l.relation === 'next')?.url).toBe(viaGet.body.link?.find((l) => l.relation === 'next')?.url);
    // POST [base] stays the batch / transaction endpoint
    const batch = await t.request({
      method: 'POST',
      url: '/fhir',
      payload: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Organization' } }] },
    });
    expect(batch.statusCode).toBe(200);
    expect((batch.json() as Bundle).type).toBe('batch-response');
  });

  it('searches only the types the token may search', async () => {
    const patientsOnly = await t.tokenFor('system/Patient.read');
    const count = await get('/fhir?_summary=count', patientsOnly);
    expect(count.status).toBe(200);
    expect(count.body.total).toBe([...phaseA, ...phaseB].filter((k) => k.startsWith('Patient/')).length);
    const tagged = await get(`/fhir?_tag=${encodeURIComponent(TAG)}`, patientsOnly);
    expect(matches(tagged.body)).toEqual([phaseA[0]]);
    expect((await get('/fhir?_type=Observation', patientsOnly)).status).toBe(403);
    expect((await get('/fhir?_type=Patient,Observation', patientsOnly)).status).toBe(403);
    expect((await get('/fhir?_type=Patient&_summary=count', patientsOnly)).body.total).toBe(count.body.total);
    const readOnlyNoSearch = await t.tokenFor('system/Patient.r');
    expect((await get('/fhir?_summary=count', readOnlyNoSearch)).status).toBe(403);
  });

  it('refuses unknown types and parameters not common to the searched types', async () => {
    const unknownType = await get('/fhir?_type=Patient,NoSuchType');
    expect(unknownType.status).toBe(400);
    expect(unknownType.body.resourceType).toBe('OperationOutcome');
    const notCommon = await get('/fhir?code=29463-7');
    expect(notCommon.status).toBe(400);
    expect(JSON.stringify(notCommon.body)).toContain('_type');
    expect((await get('/fhir?_type=Patient,Observation&code=29463-7')).status).toBe(400);
    // defined on each named type: fine
    expect((await get('/fhir?_type=Observation&code=29463-7&_summary=count')).body.total).toBe(10);
    expect((await get('/fhir?_type=Patient,Practitioner&name=sys&_summary=count')).body.total).toBe(6);
    expect((await get('/fhir?_sort=birthdate')).status).toBe(400);
    const hasWithoutType = await get('/fhir?_has:Observation:subject:code=29463-7');
    expect(hasWithoutType.status).toBe(400);
    expect(JSON.stringify(hasWithoutType.body)).toContain('_type');
    expect((await get('/fhir?_lastUpdated=gtnot-a-date')).status).toBe(400);
  });

  it('is declared in the CapabilityStatement', async () => {
    const cs = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const rest = cs.rest![0]!;
    expect(rest.interaction?.map((i) => i.code)).toContain('search-system');
    const names = rest.searchParam?.map((p) => p.name) ?? [];
    for (const n of ['_id', '_lastUpdated', '_tag', '_profile', '_security', '_source']) expect(names).toContain(n);
  });
});
