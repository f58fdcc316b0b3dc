import type { Bundle, BundleEntry, Encounter, Observation } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { loadSynthea, local, searchIds as searchIdsOf } from './bulk-export-helpers.js';

/** Patient/[id]/$everything and Encounter/[id]/$everything on real Synthea records. */
let t: TestApp;
let patientIds: string[];

beforeAll(async () => {
  t = await startTestApp();
  await loadSynthea(t, 2);
  const bundle = (await t.request({ method: 'GET', url: '/fhir/Patient?_count=10&_elements=id' })).json() as Bundle;
  patientIds = bundle.entry!.map((e) => e.resource!.id!);
  expect(patientIds.length).toBe(2);
}, 300_000);
afterAll(async () => {
  await t?.close();
});

async function get(url: string): Promise<Bundle> {
  const res = await t.request({ method: 'GET', url });
  expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
  return res.json() as Bundle;
}

/** All pages, following `next`; fails on a repeated entry. */
async function allPages(url: string): Promise<{ entries: BundleEntry[]; pages: number }> {
  const entries: BundleEntry[] = [];
  const seen = new Set<string>();
  let pages = 0;
  for (let next: string | undefined = url; next; pages++) {
    const bundle = await get(next);
    expect(bundle.type).toBe('searchset');
    for (const e of bundle.entry ?? []) {
      expect(seen.has(e.fullUrl!), `${e.fullUrl} on two pages`).toBe(false);
      seen.add(e.fullUrl!);
      entries.push(e);
    }
    const link = bundle.link?.find((l) => l.relation === 'next')?.url;
    next = link ? local(link) : undefined;
  }
  return { entries, pages };
}

const searchIds = (query: string) => searchIdsOf(t, query);

const ids = (entries: BundleEntry[], type: string, mode?: string) =>
  entries.filter((e) => e.resource?.resourceType === type && (!mode || e.search?.mode === mode)).map((e) => e.resource!.id!).sort();

describe('Patient/[id]/$everything', () => {
  it('returns the patient, its compartment and the resources those refer to, and no other patient', async () => {
    const [me, other] = patientIds as [string, string];
    const { entries } = await allPages(`/fhir/Patient/${me}/$everything?_count=1000`);
    expect(ids(entries, 'Patient', 'match')).toEqual([me]);
    expect(ids(entries, 'Patient')).not.toContain(other);
    for (const type of ['Observation', 'Encounter', 'Condition', 'Claim', 'MedicationRequest']) {
      expect(ids(entries, type, 'match'), type).toEqual(await searchIds(`${type}?patient=Patient/${me}`));
    }
    // one level of references out of the record: who treated, where, for which organization
    for (const type of ['Practitioner', 'Organization', 'Location']) expect(ids(entries, type, 'include').length, type).toBeGreaterThan(0);
    const encounter = entries.find((e) => e.resource?.resourceType === 'Encounter')!.resource as Encounter;
    const practitioner = encounter.participant?.[0]?.individual?.reference;
    expect(entries.map((e) => `${e.resource!.resourceType}/${e.resource!.id}`)).toContain(practitioner);
  });

  it('pages with _count: next links, no duplicates, the same set as one big page, total on the first page', async () => {
    const me = patientIds[0]!;
    const whole = await allPages(`/fhir/Patient/${me}/$everything?_count=1000`);
    const first = await get(`/fhir/Patient/${me}/$everything?_count=100`);
    expect(first.total).toBe(whole.entries.length);
    const paged = await allPages(`/fhir/Patient/${me}/$everything?_count=100`);
    expect(paged.pages).toBe(Math.ceil(whole.entries.length / 100));
    expect(paged.entries.map((e) => e.fullUrl).sort()).toEqual(whole.entries.map((e) => e.fullUrl).sort());
  });

  it('_type keeps the listed types only; _since keeps what changed after it', async () => {
    const me = patientIds[0]!;
    const typed = await allPages(`/fhir/Patient/${me}/$everything?_type=Observation,Encounter&_count=500`);
    expect(new Set(typed.entries.map((e) => e.resource!.resourceType))).toEqual(new Set(['Observation', 'Encounter']));
    expect(ids(typed.entries, 'Observation')).toEqual(await searchIds(`Observation?patient=Patient/${me}`));

    const since = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    const observation = typed.entries.find((e) => e.resource!.resourceType === 'Observation')!.resource as Observation;
    await t.request({ method: 'PUT', url: `/fhir/Observation/${observation.id}`, payload: { ...observation, status: 'amended' } });
    const recent = await allPages(`/fhir/Patient/${me}/$everything?_since=${encodeURIComponent(since)}`);
    expect(recent.entries.map((e) => `${e.resource!.resourceType}/${e.resource!.id}`)).toEqual([`Observation/${observation.id}`]);
  });

  it('is 404 for an unknown patient, 400 for unsupported parameters, and leaves the other instance routes alone', async () => {
    const me = patientIds[0]!;
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/does-not-exist/$everything' })).statusCode).toBe(404);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${me}/$everything?start=2020-01-01` })).statusCode).toBe(400);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${me}/$everything?_type=Nope` })).statusCode).toBe(400);
    // routes sharing the /Patient/:id/… shape still reach the REST plugin
    const compartment = await get(`/fhir/Patient/${me}/Observation?_count=1`);
    expect(compartment.entry?.[0]?.resource?.resourceType).toBe('Observation');
    expect((await get(`/fhir/Patient/${me}/_history`)).type).toBe('history');
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${me}` })).statusCode).toBe(200);
    expect((await get('/fhir/Patient?_count=1')).type).toBe('searchset');
  });
});

describe('Encounter/[id]/$everything', () => {
  it('returns the encounter, what was recorded in it, and what those refer to (the patient included)', async () => {
    const me = patientIds[0]!;
    const encounters = await searchIds(`Encounter?patient=Patient/${me}`);
    // the encounter with the most observations makes the strongest check
    let best = encounters[0]!;
    let bestCount = -1;
    for (const id of encounters.slice(0, 20)) {
      const n = (await searchIds(`Observation?encounter=Encounter/${id}`)).length;
      if (n > bestCount) [best, bestCount] = [id, n];
    }
    const { entries } = await allPages(`/fhir/Encounter/${best}/$everything?_count=200`);
    expect(ids(entries, 'Encounter', 'match')).toContain(best);
    expect(ids(entries, 'Observation', 'match')).toEqual(await searchIds(`Observation?encounter=Encounter/${best}`));
    expect(ids(entries, 'Patient', 'include')).toEqual([me]);
    // every member type: exactly what its `encounter` / `context` search finds for this encounter
    const memberTypes = new Set(entries.filter((e) => e.search?.mode === 'match').map((e) => e.resource!.resourceType));
    memberTypes.delete('Encounter');
    expect(memberTypes.size).toBeGreaterThan(2);
    for (const type of memberTypes) {
      const expected = new Set<string>();
      for (const param of ['encounter', 'context']) {
        // strict: a type without the param answers 400 instead of ignoring it and matching all
        const res = await t.request({ method: 'GET', url: `/fhir/${type}?${param}=Encounter/${best}&_count=1000&_elements=id`, headers: { prefer: 'handling=strict' } });
        if (res.statusCode === 200) for (const e of (res.json() as Bundle).entry ?? []) expected.add(e.resource!.id!);
      }
      expect(ids(entries, type, 'match'), type).toEqual([...expected].sort());
    }
  });
});
