import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import type { Bundle, FhirResource, Observation } from 'fhir/r4.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Long OR lists (cohort tools send hundreds of codes by GET and by POST `_search`) and
 * composite quantities without a unit, through HTTP against the real database.
 */

const LOINC = 'http://loinc.org';
const SNOMED = 'http://snomed.info/sct';
const CODES = 1200;
let t: TestApp;
let origin: string;
/** code → Observation id (LOINC rows) */
const loincIds = new Map<string, string>();
const snomedIds: string[] = [];
const patientIds: string[] = [];
const weights = new Map<string, { value: number; unit: string }>();

function code(i: number): string {
  return `${10000 + i}-${i % 10}`;
}

function obs(system: string, c: string, subject: string): Observation {
  return { resourceType: 'Observation', status: 'final', code: { coding: [{ system, code: c }] }, subject: { reference: subject } };
}

async function store(resources: FhirResource[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < resources.length; i += 400) {
    const chunk = resources.slice(i, i + 400);
    ids.push(...(await t.server.store.transaction(async (tx) => Promise.all(chunk.map(async (r) => (await tx.create(r)).id)))));
  }
  return ids;
}

async function search(url: string): Promise<{ status: number; body: Bundle & { issue?: Array<{ diagnostics?: string }> } }> {
  const res = await t.request({ method: 'GET', url });
  return { status: res.statusCode, body: res.json() };
}

async function postSearch(type: string, form: string): Promise<{ status: number; body: Bundle }> {
  const res = await t.request({ method: 'POST', url: `/fhir/${type}/_search`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: form });
  return { status: res.statusCode, body: res.json() };
}

function ids(b: Bundle): string[] {
  return (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!).sort();
}

beforeAll(async () => {
  t = await startTestApp();
  patientIds.push(...(await store(Array.from({ length: 300 }, (_, i) => ({ resourceType: 'Patient', name: [{ family: `List${i}` }] }) as FhirResource))));
  const loinc = Array.from({ length: CODES }, (_, i) => obs(LOINC, code(i), `Patient/${patientIds[i % patientIds.length]}`));
  const stored = await store(loinc);
  stored.forEach((id, i) => loincIds.set(code(i), id));
  // the same code strings in another system: a `system|code` list must not match them
  snomedIds.push(...(await store(Array.from({ length: 50 }, (_, i) => obs(SNOMED, code(i), `Patient/${patientIds[0]}`)))));
  const bodyWeights: Array<[number, string]> = [[50, 'kg'], [65, 'kg'], [70, 'kg'], [75, 'kg'], [90, 'kg'], [100, 'kg'], [65000, 'g']];
  const wIds = await store(
    bodyWeights.map(([value, unit]) => ({
      ...obs(LOINC, '29463-7', `Patient/${patientIds[1]}`),
      valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit },
    })),
  );
  wIds.forEach((id, i) => weights.set(id, { value: bodyWeights[i]![0], unit: bodyWeights[i]![1] }));
  // a real socket too: Node's header limit applies to the request line of a GET
  await t.server.http.listen({ port: 0, host: '127.0.0.1' });
  origin = `http://127.0.0.1:${(t.server.http.server.address() as AddressInfo).port}`;
}, 300_000);
afterAll(async () => t?.close());

describe('long OR lists', () => {
  const list = (from: number, n: number, system?: string) => Array.from({ length: n }, (_, i) => (system ? `${system}|${code(from + i)}` : code(from + i))).join(',');
  const expected = (from: number, n: number) => Array.from({ length: n }, (_, i) => loincIds.get(code(from + i))!).sort();

  it('300 LOINC codes by GET (6,000+ characters) return exactly the matching resources', async () => {
    const value = list(100, 300, LOINC);
    expect(value.length).toBeGreaterThan(6000);
    const { status, body } = await search(`/fhir/Observation?code=${encodeURIComponent(value)}&_count=1000`);
    expect(status).toBe(200);
    expect(body.total).toBe(300);
    expect(ids(body)).toEqual(expected(100, 300));
    // without the system the same codes of SNOMED match too (codes 100..149 have none)
    const anySystem = await search(`/fhir/Observation?code=${encodeURIComponent(list(0, 300))}&_summary=count`);
    expect(anySystem.body.total).toBe(300 + 50);
    const bySystem = await search(`/fhir/Observation?code=${encodeURIComponent(list(0, 300, LOINC))}&_summary=count`);
    expect(bySystem.body.total).toBe(300);
  });

  it('1,000 codes by GET over a real socket and by POST _search', async () => {
    const value = list(150, 1000, LOINC);
    const url = `/fhir/Observation?code=${encodeURIComponent(value)}&_count=1000`;
    expect(url.length).toBeGreaterThan(25_000);
    const res = await fetch(`${origin}${url}`, { headers: { authorization: `Bearer ${t.token}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Bundle;
    expect(body.total).toBe(1000);
    expect(ids(body)).toEqual(expected(150, 1000));
    const posted = await postSearch('Observation', `code=${encodeURIComponent(value)}&_count=1000`);
    expect(posted.status).toBe(200);
    expect(ids(posted.body)).toEqual(expected(150, 1000));
    // paging a long list: the next link carries it, the pages add up
    const paged = await postSearch('Observation', `code=${encodeURIComponent(value)}&_count=400`);
    const seen = new Set(ids(paged.body));
    let next = paged.body.link?.find((l) => l.relation === 'next')?.url;
    while (next) {
      const page = await search(next.replace('http://localhost:8080', ''));
      for (const id of ids(page.body)) seen.add(id);
      next = page.body.link?.find((l) => l.relation === 'next')?.url;
    }
    expect([...seen].sort()).toEqual(expected(150, 1000));
  });

  it(':not, _id and reference lists', async () => {
    const notIn = await search(`/fhir/Observation?code:not=${encodeURIComponent(list(0, 500, LOINC))}&_summary=count`);
    expect(notIn.body.total).toBe(CODES - 500 + 50 + weights.size);
    const some = [...loincIds.values()].slice(0, 600);
    const byId = await postSearch('Observation', `_id=${some.join(',')}&_count=1000`);
    expect(ids(byId.body)).toEqual([...some].sort());
    const subjects = patientIds.slice(0, 200).map((id) => `Patient/${id}`);
    const bySubject = await postSearch('Observation', `subject=${encodeURIComponent(subjects.join(','))}&code=${encodeURIComponent(list(0, CODES, LOINC))}&_summary=count`);
    // observation i refers to patient i % 300: patients 0..199 have codes i < 1200 with i % 300 < 200
    expect(bySubject.body.total).toBe(Array.from({ length: CODES }, (_, i) => i % 300).filter((p) => p < 200).length);
    // system search with a long _id list over every type
    const mixed = [...some.slice(0, 100), ...patientIds.slice(0, 100)];
    const system = await t.request({ method: 'POST', url: '/fhir/_search', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `_id=${mixed.join(',')}&_summary=count` });
    expect((system.json() as Bundle).total).toBe(200);
  });

  it('refuses more than 10,000 values and a single over-long value with a clear 400', async () => {
    const many = Array.from({ length: 10_001 }, (_, i) => `c${i}`).join(',');
    const tooMany = await postSearch('Observation', `code=${many}`);
    expect(tooMany.status).toBe(400);
    expect(JSON.stringify(tooMany.body)).toContain('at most 10000 values');
    const long = await postSearch('Observation', `code=${'x'.repeat(5000)}`);
    expect(long.status).toBe(400);
    expect(JSON.stringify(long.body)).toContain('too long');
    // range-like values compile to one condition each: a smaller bound
    const dates = Array.from({ length: 1001 }, (_, i) => `ge20${String(i % 100).padStart(2, '0')}-01-01`).join(',');
    const tooManyDates = await postSearch('Observation', `date=${dates}`);
    expect(tooManyDates.status).toBe(400);
  });
});

describe('composite quantity without a unit', () => {
  const matching = (pred: (w: { value: number; unit: string }) => boolean) => [...weights].filter(([, w]) => pred(w)).map(([id]) => id).sort();

  it('compares with the value as stored, like the plain quantity parameter', async () => {
    const { status, body } = await search(`/fhir/Observation?code-value-quantity=${encodeURIComponent('http://loinc.org|29463-7$gt70')}&_count=100`);
    expect(status).toBe(200);
    // 75, 90, 100 kg and the 65000 g one (as written, 65000 > 70)
    expect(ids(body)).toEqual(matching((w) => w.value > 70));
    const plain = await search('/fhir/Observation?code=http://loinc.org|29463-7&value-quantity=gt70&_count=100');
    expect(ids(plain.body)).toEqual(ids(body));
    const lt = await search(`/fhir/Observation?code-value-quantity=${encodeURIComponent('29463-7$lt60')}`);
    expect(ids(lt.body)).toEqual(matching((w) => w.value < 60));
  });

  it('with a unit compares canonically (kg and g alike)', async () => {
    const kg = await search(`/fhir/Observation?code-value-quantity=${encodeURIComponent('http://loinc.org|29463-7$gt70|http://unitsofmeasure.org|kg')}`);
    expect(ids(kg.body)).toEqual(matching((w) => (w.unit === 'kg' ? w.value : w.value / 1000) > 70));
    const g = await search(`/fhir/Observation?code-value-quantity=${encodeURIComponent('http://loinc.org|29463-7$gt70000|http://unitsofmeasure.org|g')}`);
    expect(ids(g.body)).toEqual(ids(kg.body));
    const low = await search(`/fhir/Observation?code-value-quantity=${encodeURIComponent('http://loinc.org|29463-7$le65|http://unitsofmeasure.org|kg')}`);
    // 50 kg, 65 kg and 65000 g
    expect(ids(low.body)).toEqual(matching((w) => (w.unit === 'kg' ? w.value : w.value / 1000) <= 65));
  });
});
