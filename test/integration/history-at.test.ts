import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Bundle, CapabilityStatement, OperationDefinition, OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * `_at` on history (R4 http.html#history): the versions that were current at some point of the
 * period the value denotes (its precision: `_at=2024-05` is May 2024), for instance, type and
 * system history, with `_count` and paging.
 */
let t: TestApp;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const iso = (ms: number) => new Date(ms).toISOString();

/** lastUpdated (ms) of each version written, by name. */
const at: Record<string, number> = {};
let a = '';
let b = '';

async function write(name: string, method: 'POST' | 'PUT' | 'DELETE', url: string, payload?: object): Promise<string> {
  const res = await t.request({ method, url, payload });
  expect(res.statusCode, res.body).toBeLessThan(300);
  if (method !== 'DELETE') at[name] = Date.parse(res.json().meta.lastUpdated);
  await sleep(40);
  return method === 'POST' ? res.json().id : '';
}

beforeAll(async () => {
  t = await startTestApp();
  a = await write('a1', 'POST', '/fhir/Patient', { resourceType: 'Patient', active: true });
  b = await write('b1', 'POST', '/fhir/Patient', { resourceType: 'Patient', active: false });
  await write('a2', 'PUT', `/fhir/Patient/${a}`, { resourceType: 'Patient', id: a, active: false });
  await write('a3', 'PUT', `/fhir/Patient/${a}`, { resourceType: 'Patient', id: a, gender: 'other' });
  await write('bDeleted', 'DELETE', `/fhir/Patient/${b}`);
});
afterAll(async () => {
  await t?.close();
});

async function history(url: string): Promise<Bundle> {
  const res = await t.request({ method: 'GET', url });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as Bundle;
}

/** `Patient/<id>` version ids of a history page, as `a1`, `b2`… for readable assertions. */
function versions(bundle: Bundle): string[] {
  return (bundle.entry ?? []).map((e) => `${e.fullUrl!.endsWith(a) ? 'a' : e.fullUrl!.endsWith(b) ? 'b' : '?'}${e.response!.etag!.replace(/\D/g, '')}`);
}

describe('_at on history', () => {
  it('instance history: the version current at an instant, and ge / gt / le / lt periods', async () => {
    const between = Math.round((at.a1 + at.a2) / 2);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=${iso(between)}`))).toEqual(['a1']);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=${iso(at.a2)}`))).toEqual(['a2']);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=ge${iso(at.a2)}`))).toEqual(['a3', 'a2']);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=gt${iso(at.a2)}`))).toEqual(['a3', 'a2']);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=gt${iso(at.a3)}`))).toEqual(['a3']);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=lt${iso(at.a2)}`))).toEqual(['a1']);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=le${iso(at.a2)}`))).toEqual(['a2', 'a1']);
    // two values intersect: from a2 until before a3
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=ge${iso(at.a2 + 1)}&_at=lt${iso(at.a3)}`))).toEqual(['a2']);
  });

  it('a date is its whole period: this year holds every version, the year 2000 none, the far future the current ones', async () => {
    const year = new Date(at.a1).getUTCFullYear();
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=${year}`))).toEqual(['a3', 'a2', 'a1']);
    const none = await history(`/fhir/Patient/${a}/_history?_at=2000-05`);
    expect(none.total).toBe(0);
    expect(none.entry ?? []).toEqual([]);
    const future = await history('/fhir/Patient/_history?_at=2999-01-01');
    expect(versions(future).sort()).toEqual(['a3', 'b2']);
    expect(future.entry!.find((e) => e.fullUrl!.endsWith(b))!.request!.method).toBe('DELETE');
  });

  it('type and system history at an instant', async () => {
    const afterB = at.b1 + 10;
    expect(afterB).toBeLessThan(at.a2);
    expect(versions(await history(`/fhir/Patient/_history?_at=${iso(afterB)}`)).sort()).toEqual(['a1', 'b1']);
    expect(versions(await history(`/fhir/_history?_at=${iso(afterB)}`)).sort()).toEqual(['a1', 'b1']);
    expect((await history(`/fhir/Observation/_history?_at=${iso(afterB)}`)).total).toBe(0);
    // before anything existed
    expect((await history(`/fhir/_history?_at=lt${iso(at.a1)}`)).total).toBe(0);
  });

  it('pages with _count, keeping _at in the links; combines with _since', async () => {
    const year = new Date(at.a1).getUTCFullYear();
    const first = await history(`/fhir/Patient/_history?_at=${year}&_count=2`);
    expect(first.total).toBe(5);
    expect(first.entry).toHaveLength(2);
    const seen = versions(first);
    let next = first.link?.find((l) => l.relation === 'next')?.url;
    while (next) {
      expect(new URL(next).searchParams.getAll('_at')).toEqual([String(year)]);
      const page = await history(next.replace('http://localhost:8080', ''));
      seen.push(...versions(page));
      next = page.link?.find((l) => l.relation === 'next')?.url;
    }
    expect(seen).toEqual(['b2', 'a3', 'a2', 'b1', 'a1']);
    expect(versions(await history(`/fhir/Patient/${a}/_history?_at=${year}&_since=${iso(at.a2)}`))).toEqual(['a3', 'a2']);
    expect((await history(`/fhir/Patient/_history?_at=${year}&_count=0`)).total).toBe(5);
  });

  it('refuses what is not a date with 400 naming _at', async () => {
    for (const value of ['yesterday', '2024-13', '2024-02-30', '2024-05-01T10:00', '2024-05-01T25:00:00Z', 'sa2024', 'ne2024', '2024-05-01 10:00:00Z', '%00']) {
      const res = await t.request({ method: 'GET', url: `/fhir/Patient/_history?_at=${encodeURIComponent(value)}` });
      expect(res.statusCode, value).toBe(400);
      expect((res.json() as OperationOutcome).issue[0].expression).toEqual(['_at']);
    }
  });
});

describe('CapabilityStatement: $import', () => {
  it('declares $import at system level with a definition, whose OperationDefinition ships valid in conformance/', async () => {
    const cs = (await t.server.http.inject({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const operations = cs.rest![0].operation ?? [];
    const declared = operations.find((o) => o.name === 'import');
    expect(declared?.definition).toBe('https://fhir.hospital.example.org/OperationDefinition/import');
    expect(operations.find((o) => o.name === 'export')).toBeDefined();
    const definition = JSON.parse(readFileSync(resolve(process.cwd(), 'conformance/OperationDefinition-import.json'), 'utf8')) as OperationDefinition;
    expect(definition.url).toBe(declared?.definition);
    expect({ code: definition.code, system: definition.system, type: definition.type, instance: definition.instance }).toEqual({ code: 'import', system: true, type: false, instance: false });
    const validated = await t.request({ method: 'POST', url: '/fhir/OperationDefinition/$validate', payload: definition });
    expect(validated.statusCode, validated.body).toBe(200);
    expect((validated.json() as OperationOutcome).issue.filter((i) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
  });
});
