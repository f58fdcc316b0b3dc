import type { Bundle, Resource } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SearchService } from '../../src/search/search-service.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 11: Subscription matching without a search per criteria must still equal a search.
 * Criteria judged in memory (`SearchService.memoryMatcher`) and criteria batched into one
 * statement (`SearchService.matchEach`) are compared, resource by resource, with what the
 * FHIR search API answers for `criteria&_id=<ids>`.
 */

const BASE = 'http://localhost:8080/fhir';
let t: TestApp;
let search: SearchService;
const ids: string[] = [];
const docs = new Map<string, Resource>();

const CRITERIA = [
  // judged in memory
  'Observation?code=http://loinc.org|1111-1',
  'Observation?code=1111-1',
  'Observation?code=http://loinc.org|',
  'Observation?code=|1111-1',
  'Observation?code=http://loinc.org|1111-1,http://loinc.org|2222-2',
  'Observation?code=http://loinc.org|1111-1&status=final',
  'Observation?subject=Patient/m-1',
  'Observation?patient=m-2',
  'Observation?subject=m-1',
  'Observation?combo-code=http://loinc.org|3333-3',
  'Observation?category=vital-signs&subject=Patient/m-2',
  'Observation?identifier=urn:sys|A-1',
  'Observation?code=HTTP://LOINC.ORG|1111-1',
  // left to SQL
  'Observation?value-quantity=gt5',
  'Observation?code:not=http://loinc.org|1111-1',
  'Observation?subject:Patient=m-1',
  'Observation?code:text=hemo',
  'Observation?date=ge2024-01-01',
];

function observation(i: number): Resource {
  return {
    resourceType: 'Observation',
    status: i % 3 ? 'final' : 'preliminary',
    category: i % 2 ? [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }] : undefined,
    identifier: i % 4 === 0 ? [{ system: 'urn:sys', value: `A-${i % 8 === 0 ? 1 : 2}` }] : undefined,
    // every fifth coding without a system (for `|code` and `code` alone)
    code: { coding: [{ ...(i % 5 === 0 ? {} : { system: 'http://loinc.org' }), code: ['1111-1', '2222-2', '3333-3'][i % 3]! }], text: 'Hemoglobin' },
    // not on a 3333-3 Observation: a component with the Observation's own code and a value beside it breaks obs-7
    component: i % 7 === 0 && i % 3 !== 2 ? [{ code: { coding: [{ system: 'http://loinc.org', code: '3333-3' }] }, valueQuantity: { value: 1 } }] : undefined,
    subject: { reference: `Patient/m-${i % 3}` },
    effectiveDateTime: `202${3 + (i % 3)}-06-01`,
    valueQuantity: { value: i, system: 'http://unitsofmeasure.org', code: 'mg', unit: 'mg' },
  } as Resource;
}

beforeAll(async () => {
  t = await startTestApp();
  search = new SearchService({ db: t.server.database.db, registry: t.server.registry });
  for (let i = 0; i < 24; i++) {
    const res = await t.request({ method: 'POST', url: '/fhir/Observation', payload: JSON.parse(JSON.stringify(observation(i))) as Resource });
    expect(res.statusCode, res.body).toBe(201);
    const stored = res.json() as Resource;
    ids.push(stored.id!);
    docs.set(stored.id!, stored);
  }
}, 300_000);

afterAll(async () => {
  await t?.close();
});

async function searched(criteria: string): Promise<string[]> {
  const res = await t.request({ method: 'GET', url: `/fhir/${criteria}&_id=${ids.join(',')}&_count=100` });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle).entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!).sort();
}

const split = (criteria: string) => {
  const [type, query] = criteria.split('?') as [string, string];
  return { type, params: [...new URLSearchParams(query)] as [string, string][] };
};

describe('issue 11: Subscription matching equals a search', () => {
  it('criteria judged in memory match exactly the resources the search finds', async () => {
    let inMemory = 0;
    for (const criteria of CRITERIA) {
      const { type, params } = split(criteria);
      const matcher = search.memoryMatcher(type, params, undefined, BASE);
      if (!matcher) continue;
      inMemory++;
      const matched = ids.filter((id) => matcher(docs.get(id)!)).sort();
      expect(matched, criteria).toEqual(await searched(criteria));
    }
    // The plain forms are the ones in memory; modifiers, ranges and chains are not.
    expect(inMemory).toBe(13);
    expect(search.memoryMatcher('Observation', [['value-quantity', 'gt5']], undefined, BASE)).toBeUndefined();
    expect(search.memoryMatcher('Observation', [['code:not', 'x']], undefined, BASE)).toBeUndefined();
  });

  it('every criteria batched into one statement matches exactly what its search finds', async () => {
    const parsed = CRITERIA.map(split);
    const results = await search.matchEach('Observation', ids, parsed.map((p) => ({ params: p.params })), BASE);
    for (const [i, criteria] of CRITERIA.entries()) {
      const result = results[i]!;
      if (!Array.isArray(result)) throw result;
      expect(result.map((m) => m.id).sort(), criteria).toEqual(await searched(criteria));
      for (const m of result) expect(m.versionId).toBe(docs.get(m.id)!.meta!.versionId);
    }
  });

  it('an access filter that hides a type matches nothing in memory; one that depends on the row goes to SQL', async () => {
    const hidden = search.memoryMatcher('Observation', [['status', 'final']], { types: '*', patientTypes: [], hidden: ['Observation'] }, BASE);
    expect(hidden && ids.some((id) => hidden(docs.get(id)!))).toBe(false);
    expect(search.memoryMatcher('Observation', [['status', 'final']], { types: [], patientTypes: ['Observation'], patient: 'm-1' }, BASE)).toBeUndefined();
    const confined = await search.matchEach('Observation', ids, [{ params: [['status', 'final']], accessFilter: { types: [], patientTypes: ['Observation'], patient: 'm-1' } }], BASE);
    const own = (confined[0] as Array<{ id: string }>).map((m) => m.id).sort();
    expect(own).toEqual(ids.filter((id) => (docs.get(id) as { status?: string; subject?: { reference?: string } }).status === 'final' && (docs.get(id) as { subject?: { reference?: string } }).subject?.reference === 'Patient/m-1').sort());
  });
});
