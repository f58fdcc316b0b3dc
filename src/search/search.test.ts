import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bundle, Observation, Resource } from 'fhir/r4.js';
import { sql } from 'kysely';
import { isFhirError } from '../fhir/errors.js';
import { BASE, fixtures } from '../../test/support/search-fixtures.js';
import { indexTables } from './index-tables.js';
import { SearchIndexer } from './indexer.js';
import { SearchParameterRegistry } from './registry.js';
import { reindex } from './reindex.js';
import { SearchService } from './search-service.js';
import { insertResources, openTestDb, type TestDb } from '../../test/support/search-db.js';

const registry = new SearchParameterRegistry();
const indexer = new SearchIndexer(registry, { baseUrls: [BASE] });
let t: TestDb;
let service: SearchService;

beforeAll(async () => {
  t = await openTestDb();
  service = new SearchService({ db: t.db, registry });
  await insertResources(t.db, indexer, fixtures);
});
afterAll(async () => t?.close());

function pairs(q: string): [string, string][] {
  return [...new URLSearchParams(q)] as [string, string][];
}

async function run(type: string | undefined, q: string, extra: { strict?: boolean; compartment?: { type: string; id: string } } = {}): Promise<Bundle> {
  return service.search({ resourceType: type, params: pairs(q), baseUrl: BASE, ...extra });
}

async function ids(type: string | undefined, q: string): Promise<string[]> {
  const b = await run(type, q);
  return (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!).sort();
}

async function error(type: string | undefined, q: string, strict = false): Promise<string> {
  try {
    await run(type, q, { strict });
  } catch (e) {
    if (isFhirError(e) && e.status === 400) return e.message;
    throw e;
  }
  throw new Error(`no error for ${q}`);
}

// [type, query, expected ids] — each row is one behaviour a client relies on.
const cases: Array<[string, string, string[]]> = [
  // token
  ['Patient', 'gender=female', ['p1']],
  ['Patient', 'gender=female,male', ['p1', 'p2']],
  ['Patient', 'gender=female&gender=male', []],
  ['Patient', 'gender:not=male', ['p1', 'p3']],
  ['Patient', 'identifier=http://other.example/ids|a\\,b\\|c', ['p2']],
  ['Patient', 'identifier=a\\,b\\|c', ['p2']],
  ['Patient', 'identifier=|12345', []],
  ['Patient', 'identifier=https://fhir.hospital.example.org/sid/patient-number|', ['p1']],
  ['Patient', 'patient-number=12345', ['p1']],
  ['Patient', 'identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345', ['p1']],
  ['Patient', 'identifier:text=medical record', ['p1']],
  ['Patient', 'active=true', ['p1']],
  ['Patient', 'phone=555-1234', ['p1']],
  ['Patient', 'identifier:missing=true', ['p3']],
  ['Observation', 'code=http://loinc.org|', ['ob1', 'ob2', 'ob3']],
  ['Observation', 'code:text=glucose', ['ob1', 'ob2']],
  ['Observation', 'code:text=free text', ['ob4']],
  ['Observation', 'code=2345-7&status=final', ['ob1']],
  ['Observation', 'status:not=final,amended', ['ob2']],
  ['Condition', 'clinical-status:in=http://hl7.org/fhir/ValueSet/condition-clinical', ['c1']],
  ['Condition', 'clinical-status:not-in=http://hl7.org/fhir/ValueSet/condition-clinical', ['c2']],
  ['Condition', 'verification-status:below=http://terminology.hl7.org/CodeSystem/condition-ver-status|unconfirmed', ['c2']],
  ['Condition', 'verification-status:above=http://terminology.hl7.org/CodeSystem/condition-ver-status|provisional', ['c2']],
  // string: case and accent insensitive prefix, :exact, :contains
  ['Patient', 'name=mul', ['p1', 'p3']],
  ['Patient', 'family=MÜLLER', ['p1', 'p3']],
  ['Patient', 'family:exact=Müller', ['p1']],
  ['Patient', 'family:exact=müller', []],
  ['Patient', 'name:contains=ULL', ['p1', 'p3']],
  ['Patient', 'given=zoe', ['p1']],
  ['Patient', 'address-city=zurich', ['p1']],
  ['Patient', 'name=smith,jones', ['p2']],
  ['Patient', 'name=%25', []],
  ['Patient', 'name=_', []],
  ['Observation', 'value-string=positive|result', ['ob4']], // | is only special in token/quantity/reference
  ['Observation', 'value-string=positive\\|result\\, see \\$note', ['ob4']],
  // date: precision, time zones, periods, prefixes, missing
  ['Patient', 'birthdate=1980', ['p1', 'p3']],
  ['Patient', 'birthdate=1980-02', ['p1']],
  ['Patient', 'birthdate=1975-06', []],
  ['Patient', 'birthdate=lt1980-03-01', ['p1', 'p2']],
  ['Patient', 'birthdate=ge1980-03-01', ['p3']],
  ['Patient', 'birthdate=ne1980', ['p2']],
  ['Patient', 'death-date=2020-05-01T14:00:00+02:00', ['p2']],
  ['Observation', 'date=2020-01-01', ['ob1', 'ob5']],
  ['Observation', 'date=2020-01', ['ob1', 'ob2', 'ob5']],
  ['Observation', 'date=2020-01-01T10:00:00+01:00', ['ob1']],
  ['Observation', 'date=2020-01-01T09:00:00Z', ['ob1']],
  ['Observation', 'date=2020-01-01T09:00Z', ['ob1']],
  ['Observation', 'date=gt2020-01-15', ['ob2', 'ob3']],
  ['Observation', 'date=sa2020-01-01', ['ob3']],
  ['Observation', 'date=eb2020-01-02', ['ob1', 'ob5']],
  ['Observation', 'date=ge2020-01-01&date=le2020-12-31', ['ob1', 'ob2', 'ob5']],
  ['Observation', 'date:missing=true', ['ob4']],
  ['Encounter', 'date=2020-01-01', []],
  ['Encounter', 'date=ge2020-01-01', ['e1']],
  ['Encounter', 'date=lt2020-01-01', ['e1']],
  ['Encounter', 'date=2019-12', []],
  ['Encounter', 'date=sa2019-12-30', ['e1']],
  ['Condition', 'onset-date=2015-06-01', []],
  ['Condition', 'onset-date=2015', ['c1']],
  // number
  ['RiskAssessment', 'probability=0.8', ['ra1']],
  ['RiskAssessment', 'probability=0.80', ['ra1']],
  ['RiskAssessment', 'probability=0.81', []],
  ['RiskAssessment', 'probability=gt0.5', ['ra1']],
  ['RiskAssessment', 'probability=lt0.3', ['ra2']],
  ['RiskAssessment', 'probability=ge0.4', ['ra1', 'ra2']],
  ['RiskAssessment', 'probability=8e-1', ['ra1']],
  // quantity, UCUM canonical
  ['Observation', 'value-quantity=250|http://unitsofmeasure.org|mg/dL', ['ob1', 'ob2']],
  ['Observation', 'value-quantity=2.5|http://unitsofmeasure.org|g/L', ['ob1', 'ob2']],
  ['Observation', 'value-quantity=gt2000|http://unitsofmeasure.org|mg/L', ['ob1', 'ob2']],
  ['Observation', 'value-quantity=lt2000|http://unitsofmeasure.org|mg/L', []],
  ['Observation', 'value-quantity=250', ['ob1']],
  ['Observation', 'value-quantity=250||mg/dL', ['ob1', 'ob2']],
  ['Observation', 'value-quantity=ap260||mg/dL', ['ob1', 'ob2']],
  ['Observation', 'value-quantity=250||mg%2FdL-unknown', []],
  // reference
  ['Observation', 'subject=Patient/p1', ['ob1', 'ob3']],
  ['Observation', 'subject=p1', ['ob1', 'ob3']],
  ['Observation', 'subject:Patient=p1', ['ob1', 'ob3']],
  ['Observation', 'subject=http://localhost:8080/fhir/Patient/p1', ['ob1', 'ob3']],
  ['Observation', 'patient=Patient/p3', ['ob4']],
  ['Observation', 'performer:identifier=http://hl7.org/fhir/sid/us-npi|999', ['ob5']],
  ['Observation', 'performer:missing=false', ['ob3', 'ob5']],
  ['Observation', 'subject=Group/p1', []],
  // chains (typed, multi-level) and _has (nested)
  ['Observation', 'subject:Patient.name=muller', ['ob1', 'ob3', 'ob4']],
  ['Observation', 'subject.gender=male', ['ob2', 'ob5']],
  ['Observation', 'subject:Patient.organization.name=general', ['ob1', 'ob3']],
  ['Observation', 'subject:Patient.organization.partof.name=general', ['ob2', 'ob5']],
  ['Observation', 'subject:Patient.organization._id=o2', ['ob2', 'ob5']],
  ['Patient', '_has:Observation:patient:code=85354-9', ['p1']],
  ['Patient', '_has:Observation:patient:performer.name=jones', ['p1']],
  ['Practitioner', '_has:Observation:performer:subject:Patient.name=müller', ['pr1']],
  ['Organization', '_has:Patient:organization:_has:Observation:patient:status=amended', ['o2']],
  // composite
  ['Observation', 'component-code-value-quantity=http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]', ['ob3']],
  ['Observation', 'component-code-value-quantity=http://loinc.org|8480-6$lt100|http://unitsofmeasure.org|mm[Hg]', []],
  ['Observation', 'component-code-value-quantity=http://loinc.org|8462-4$lt100', ['ob3']],
  ['Observation', 'code-value-quantity=http://loinc.org|2345-7$250|http://unitsofmeasure.org|mg/dL', ['ob1', 'ob2']],
  ['Observation', 'code-value-date=http://snomed.info/sct|123$2020', []],
  // resource-level params
  ['Patient', '_id=p1,p3', ['p1', 'p3']],
  ['Patient', '_tag=http://example.org/tags|vip', ['p1']],
  ['Patient', '_profile=http://example.org/profile/patient-x', ['p3']],
  ['Patient', '_profile:below=http://example.org/profile', ['p3']],
  ['Patient', '_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R', ['p2']],
  ['Patient', '_source=urn:hospital:adt#feed-1', ['p2']],
  ['Patient', '_security:missing=true', ['p1', 'p3']],
  ['Patient', '_lastUpdated=gt2000-01-01', ['p1', 'p2', 'p3']],
  ['Patient', '_lastUpdated=lt2000-01-01', []],
  ['Encounter', 'identifier=V-1', ['e1']],
];

describe('search: table of parameter types, modifiers and prefixes', () => {
  it.each(cases)('%s?%s', async (type, q, expected) => {
    expect(await ids(type, q)).toEqual(expected);
  });
});

describe('search: results, paging, includes', () => {
  it('system search with _type, total and self link', async () => {
    const b = await run(undefined, '_type=Patient,Observation&_id=p1,ob1');
    expect(b.total).toBe(2);
    expect((b.entry ?? []).map((e) => e.fullUrl).sort()).toEqual([`${BASE}/Observation/ob1`, `${BASE}/Patient/p1`]);
    expect(b.link?.[0]?.relation).toBe('self');
  });

  it('compartment search: Patient/p1/Observation', async () => {
    const b = await run('Observation', '', { compartment: { type: 'Patient', id: 'p1' } });
    expect((b.entry ?? []).map((e) => e.resource!.id).sort()).toEqual(['ob1', 'ob3']);
  });

  it('compartment search across all types: Patient/p1/*', async () => {
    const p1 = { compartment: { type: 'Patient', id: 'p1' } };
    const keys = (b: Bundle) => (b.entry ?? []).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);
    const all = await run('*', '', p1);
    expect(keys(all)).toEqual(['Condition/c1', 'Encounter/e1', 'Observation/ob1', 'Observation/ob3', 'Patient/p1', 'RiskAssessment/ra1']);
    expect(all.total).toBe(6);
    expect(all.link?.[0]?.url).toBe(`${BASE}/Patient/p1/*`);
    // the same without a type, narrowed with _type, paged
    const narrowed = await run(undefined, '_type=Observation,Patient&_count=2', p1);
    expect(keys(narrowed)).toEqual(['Observation/ob1', 'Observation/ob3']);
    expect(narrowed.total).toBe(3);
    const next = narrowed.link?.find((l) => l.relation === 'next')?.url;
    expect(keys(await run('*', new URL(next!).search.slice(1), p1))).toEqual(['Patient/p1']);
    // parameters common to all types apply; a type outside the compartment gives nothing
    expect(keys(await run('*', '_id=ob3,c1,ob2', p1))).toEqual(['Condition/c1', 'Observation/ob3']);
    expect((await run('*', '_type=Organization', p1)).total).toBe(0);
    // Patient/p1/Patient holds the owner itself, in the page and in the count
    const self = await run('Patient', '', p1);
    expect(keys(self)).toEqual(['Patient/p1']);
    expect(self.total).toBe(1);
  });

  it('deleted resources are never matched, counted, _has targets or chain targets', async () => {
    const extra: Resource[] = [
      { resourceType: 'Patient', id: 'pdel', name: [{ family: 'Gone' }] },
      { resourceType: 'Observation', id: 'obdel', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] }, subject: { reference: 'Patient/pdel' } },
    ] as unknown as Resource[];
    await insertResources(t.db, indexer, extra);
    expect(await ids('Patient', '_has:Observation:subject:code=2345-7')).toEqual(['p1', 'p2', 'pdel']);
    // delete as storage does: the current row becomes a delete marker, its index rows go
    await sql`UPDATE resource SET deleted = true, content = NULL WHERE resource_type = 'Patient' AND id = 'pdel'`.execute(t.db);
    for (const spec of indexTables) await sql`DELETE FROM ${sql.id(spec.table)} WHERE resource_type = 'Patient' AND resource_id = 'pdel'`.execute(t.db);
    try {
      const has = await run('Patient', '_has:Observation:subject:code=2345-7');
      expect((has.entry ?? []).map((e) => e.resource!.id)).toEqual(['p1', 'p2']);
      expect(has.total).toBe(2);
      expect((await run('Patient', '_has:Observation:subject:code=2345-7&_summary=count')).total).toBe(2);
      expect((await run('Observation', 'subject:Patient.name=gone')).total).toBe(0);
      expect(await ids('Observation', 'subject:Patient._id=pdel')).toEqual([]);
      expect(await ids('Observation', 'subject:Patient._id=p3')).toEqual(['ob4']);
    } finally {
      for (const r of extra) {
        await sql`DELETE FROM resource WHERE resource_type = ${r.resourceType} AND id = ${r.id!}`.execute(t.db);
        for (const spec of indexTables) await sql`DELETE FROM ${sql.id(spec.table)} WHERE resource_type = ${r.resourceType} AND resource_id = ${r.id!}`.execute(t.db);
      }
    }
  });

  it('one SQL statement for the page, one for the count, one per include path', async () => {
    let statements = 0;
    const counting = t.db.withPlugin({
      transformQuery: (args) => args.node,
      transformResult: async (args) => {
        statements++;
        return args.result;
      },
    });
    const s = new SearchService({ db: counting, registry });
    const q = '_id=ob1,ob2,ob3&_include=Observation:subject&_include=Observation:performer&_revinclude=Encounter:subject';
    const b = await s.search({ resourceType: 'Observation', params: pairs(q), baseUrl: BASE });
    expect(b.entry?.filter((e) => e.search?.mode === 'include').map((e) => e.resource!.id).sort()).toEqual(['p1', 'p2', 'pr1']);
    // every match fits on the first page: its size is the total, no count query
    expect(b.total).toBe(3);
    expect(statements).toBe(1 + 3);
    statements = 0;
    const paged = await s.search({ resourceType: 'Observation', params: pairs(`${q}&_count=2`), baseUrl: BASE });
    expect(paged.total).toBe(3);
    expect(statements).toBe(1 + 1 + 3);
    statements = 0;
    await s.search({ resourceType: 'Observation', params: pairs('code=2345-7&_sort=-date&_total=none'), baseUrl: BASE });
    expect(statements).toBe(1);
  });

  it('_include, _revinclude and :iterate with search modes', async () => {
    let b = await run('Observation', '_id=ob1&_include=Observation:subject');
    expect((b.entry ?? []).map((e) => `${e.search?.mode}:${e.resource!.id}`)).toEqual(['match:ob1', 'include:p1']);
    b = await run('Patient', '_id=p1&_revinclude=Observation:subject');
    expect((b.entry ?? []).map((e) => `${e.search?.mode}:${e.resource!.id}`).sort()).toEqual(['include:ob1', 'include:ob3', 'match:p1']);
    b = await run('Observation', '_id=ob2&_include=Observation:patient&_include:iterate=Patient:organization&_include:iterate=Organization:partof');
    expect((b.entry ?? []).map((e) => `${e.search?.mode}:${e.resource!.id}`)).toEqual(['match:ob2', 'include:p2', 'include:o2', 'include:o1']);
    b = await run('Observation', '_id=ob3&_include=*');
    expect((b.entry ?? []).map((e) => e.resource!.id).sort()).toEqual(['ob3', 'p1', 'pr1']);
  });

  it('_sort on several keys, asc and desc, missing values last', async () => {
    const order = async (q: string) => ((await run('Observation', q)).entry ?? []).map((e) => e.resource!.id);
    // ascending uses each resource's lowest start, descending its highest end (Period ob2 ends 2020-01-31)
    expect(await order('_sort=date')).toEqual(['ob2', 'ob5', 'ob1', 'ob3', 'ob4']);
    expect(await order('_sort=-date')).toEqual(['ob3', 'ob2', 'ob5', 'ob1', 'ob4']);
    expect(await order('_sort=status,-date')).toEqual(['ob5', 'ob3', 'ob1', 'ob4', 'ob2']);
    const pats = ((await run('Patient', '_sort=family,-birthdate')).entry ?? []).map((e) => e.resource!.id);
    expect(pats).toEqual(['p3', 'p1', 'p2']);
  });

  it('_sort on a filtered param: resources with several values are sorted by their lowest and still found by the others', async () => {
    const timing = { resourceType: 'Observation', id: 'ob-timing', status: 'final', code: { text: 'x' }, effectiveTiming: { event: ['2019-07-01', '2021-06-01'] } } as unknown as Resource;
    await insertResources(t.db, indexer, [timing]);
    try {
      const order = async (q: string) => ((await run('Observation', q)).entry ?? []).map((e) => e.resource!.id);
      // its sort row (2019) is outside the range, its other date (2021) inside
      const all = await order('_sort=date');
      const inRange = await ids('Observation', 'date=ge2021-01-01&date=lt2022-01-01');
      expect(inRange).toContain('ob-timing');
      expect(await order('date=ge2021-01-01&date=lt2022-01-01&_sort=date')).toEqual(all.filter((id) => inRange.includes(id!)));
      expect(await order('date=ge2021-01-01&date=lt2022-01-01&_sort=-date')).toEqual(
        ((await run('Observation', '_sort=-date')).entry ?? []).map((e) => e.resource!.id).filter((id) => inRange.includes(id!)),
      );
      expect(await order('date=ge2019-06-01&_sort=date')).toEqual(await order('date=ge2019-06-01&_sort=date&_count=1000&_total=accurate'));
      const b = await run('Observation', 'date=ge2019-06-01&_sort=date&_count=1');
      const paged: string[] = [];
      for (let page: Bundle | undefined = b; page; ) {
        paged.push(...(page.entry ?? []).map((e) => e.resource!.id!));
        const next: string | undefined = page.link?.find((l) => l.relation === 'next')?.url;
        page = next ? await run('Observation', new URL(next).search.slice(1)) : undefined;
      }
      expect(paged).toEqual(await order('date=ge2019-06-01&_sort=date'));
      expect(paged).toContain('ob-timing');
      expect(b.total).toBe(paged.length);
    } finally {
      await sql`DELETE FROM resource WHERE id = 'ob-timing'`.execute(t.db);
      for (const spec of indexTables) await sql`DELETE FROM ${sql.id(spec.table)} WHERE resource_id = 'ob-timing'`.execute(t.db);
    }
  });

  it('date ranges over wide and open periods: bounds implied from the widest row never lose one', async () => {
    const wide = [
      { resourceType: 'Encounter', id: 'e-wide', status: 'finished', class: { code: 'IMP' }, period: { start: '2010-03-01', end: '2025-06-30' } },
      { resourceType: 'Encounter', id: 'e-open', status: 'in-progress', class: { code: 'IMP' }, period: { start: '2012-01-01' } },
      { resourceType: 'Encounter', id: 'e-short', status: 'finished', class: { code: 'AMB' }, period: { start: '2021-05-01T10:00:00Z', end: '2021-05-01T11:00:00Z' } },
    ] as unknown as Resource[];
    const order = async (q: string) => ((await run('Encounter', q)).entry ?? []).map((e) => e.resource!.id);
    await insertResources(t.db, indexer, wide);
    try {
      expect(await order('date=ge2021-01-01&_sort=date')).toEqual(['e-wide', 'e-open', 'e-short']);
      expect(await order('date=lt2011-01-01&_sort=-date')).toEqual(['e-wide']);
      expect(await order('date=gt2030-01-01&_sort=date')).toEqual(['e-open']);
      expect(await order('date=ge2021-01-01&date=le2021-12-31&_sort=-date')).toEqual(['e-open', 'e-wide', 'e-short']);
      expect(await order('date=ap2021-05-01&_sort=date')).toEqual(['e-wide', 'e-open', 'e-short']);
      // without the open period the widest row (15 years) still bounds correctly
      await sql`DELETE FROM search_date WHERE resource_id = 'e-open'`.execute(t.db);
      expect(await order('date=ge2024-01-01&_sort=date')).toEqual(['e-wide']);
      expect((await run('Encounter', 'date=ge2024-01-01&_summary=count')).total).toBe(1);
    } finally {
      for (const r of wide) {
        await sql`DELETE FROM resource WHERE id = ${r.id!}`.execute(t.db);
        for (const spec of indexTables) await sql`DELETE FROM ${sql.id(spec.table)} WHERE resource_id = ${r.id!}`.execute(t.db);
      }
    }
  });

  it('keyset paging neither skips nor repeats while others write, and pages back', async () => {
    const seen: string[] = [];
    let b = await run('Observation', '_sort=-date&_count=2');
    expect(b.total).toBe(5);
    const firstPage = (b.entry ?? []).map((e) => e.resource!.id!);
    let extraWritten = false;
    let previousUrl: string | undefined;
    for (;;) {
      seen.push(...(b.entry ?? []).map((e) => e.resource!.id!));
      if (!extraWritten) {
        // a concurrent write that sorts before the current position must not shift the pages
        const extra: Observation = { resourceType: 'Observation', id: 'zz-new', status: 'final', code: { text: 'x' }, effectiveDateTime: '2030-01-01' };
        await insertResources(t.db, indexer, [extra]);
        extraWritten = true;
      }
      const next = b.link?.find((l) => l.relation === 'next')?.url;
      previousUrl = b.link?.find((l) => l.relation === 'previous')?.url;
      if (!next) break;
      b = await run('Observation', new URL(next).search.slice(1));
    }
    expect(seen).toEqual(['ob3', 'ob2', 'ob5', 'ob1', 'ob4']);
    // walking back from the last page ends at the first page
    let back = await run('Observation', new URL(previousUrl!).search.slice(1));
    while (back.link?.some((l) => l.relation === 'previous')) {
      back = await run('Observation', new URL(back.link.find((l) => l.relation === 'previous')!.url).search.slice(1));
    }
    expect((back.entry ?? []).map((e) => e.resource!.id)).toEqual(['zz-new']);
    expect(firstPage).toEqual(['ob3', 'ob2']);
    await t.db.deleteFrom('resource').where('id', '=', 'zz-new').execute();
    for (const table of ['search_token', 'search_date', 'search_string']) await t.db.deleteFrom(table).where('resource_id', '=', 'zz-new').execute();
  });

  it('_total, _summary=count, _count=0, _elements, _summary=true', async () => {
    let b = await run('Observation', '_total=none');
    expect(b.total).toBeUndefined();
    b = await run('Observation', '_summary=count&code=2345-7');
    expect(b.total).toBe(2);
    expect(b.entry).toBeUndefined();
    b = await run('Observation', '_count=0');
    expect(b.total).toBe(5);
    b = await run('Observation', '_total=estimate&_count=1');
    expect(typeof b.total).toBe('number');
    b = await run('Patient', '_id=p1&_elements=gender');
    const p = b.entry![0]!.resource as unknown as Record<string, unknown>;
    expect(p.gender).toBe('female');
    expect(p.name).toBeUndefined();
    b = await run('Patient', '_id=p1&_summary=true');
    expect((b.entry![0]!.resource as unknown as Record<string, unknown>).name).toBeDefined();
  });

  it('a count started beside the page (a slow page on a pool) gives the same totals, also when the page holds every match', async () => {
    // Threshold 0: every page starts its count at once, as a page slower than the server's
    // threshold does; the totals must be those of the count after the page.
    const beside = new SearchService({ db: t.db, registry, countBesidePageAfterMs: 0 });
    const queries: Array<[string, string]> = [
      ['Observation', '_count=2'],
      ['Observation', 'code=2345-7'],
      ['Observation', 'code=2345-7&_count=1'],
      ['Patient', 'gender=female,male&_count=1'],
      ['Patient', 'gender=female&gender=male'],
      ['Observation', '_total=accurate&_count=1&_sort=-date'],
    ];
    for (const [type, q] of queries) {
      const expected = await run(type, q);
      const got = await beside.search({ resourceType: type, params: pairs(q), baseUrl: BASE });
      expect(got.total, `${type}?${q}`).toBe(expected.total);
      expect(typeof got.total, `${type}?${q}`).toBe('number');
      expect(got.entry?.map((e) => e.resource!.id)).toEqual(expected.entry?.map((e) => e.resource!.id));
    }
  });

  it('unknown parameters: ignored with an outcome entry, or refused under strict handling', async () => {
    const b = await run('Patient', 'foo=bar&gender=female');
    const outcome = b.entry?.find((e) => e.search?.mode === 'outcome');
    expect(outcome?.resource?.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(outcome?.resource)).toContain('foo');
    expect(b.entry?.filter((e) => e.search?.mode === 'match').length).toBe(1);
    expect(await error('Patient', 'foo=bar', true)).toContain("'foo'");
    // declared but not indexable parameters are reported the same way, never silently empty
    const c = await run('Patient', '_query=x&gender=male');
    expect(c.entry?.filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id)).toEqual(['p2']);
    expect(JSON.stringify(c.entry?.find((e) => e.search?.mode === 'outcome')?.resource)).toContain('_query');
  });

  it('malformed values are 400s naming the parameter, never 500s', async () => {
    expect(await error('Patient', 'birthdate=1980-13-01')).toContain('birthdate');
    expect(await error('Patient', 'birthdate=xx1980')).toContain('birthdate');
    expect(await error('Patient', 'birthdate=2021-02-30')).toContain('birthdate');
    expect(await error('RiskAssessment', 'probability=abc')).toContain('probability');
    expect(await error('RiskAssessment', `probability=${'9'.repeat(5000)}`)).toContain('probability');
    expect(await error('Observation', 'value-quantity=1|2|3|4')).toContain('value-quantity');
    expect(await error('Patient', '_count=-1')).toContain('_count');
    expect(await error('Patient', '_sort=nope')).toContain('_sort');
    expect(await error('Patient', 'gender.name=x')).toContain('gender');
    expect(await error('Patient', 'gender:exact=x')).toContain('gender');
    expect(await error('Patient', '_cursor=garbage')).toContain('_cursor');
    expect(await error('Observation', 'subject:Nope=1')).toContain('subject');
    expect(await error('Patient', `_sort=${Array(20).fill('family').join(',')}`)).toContain('_sort');
    expect(await error('Patient', 'birthdate=ge2020-01-01T10:00:00+99:00')).toContain('birthdate');
  });

  it('hostile strings are just values', async () => {
    expect(await ids('Patient', "name='; DROP TABLE resource; --")).toEqual([]);
    expect(await ids('Patient', 'identifier=\\\\|\\')).toEqual([]);
    expect(await ids('Patient', `name=${'é'.repeat(3000)}`)).toEqual([]);
  });

  it('findIds serves conditional operations, inside a transaction', async () => {
    expect(await service.findIds('Patient', 'identifier=https://fhir.hospital.example.org/sid/patient-number|12345', { limit: 2 })).toEqual(['p1']);
    await t.db.transaction().execute(async (trx) => {
      expect(await service.findIds('Patient', 'gender=female,male', { limit: 5, executor: trx })).toEqual(['p1', 'p2']);
    });
    await expect(service.findIds('Patient', 'nope=1', { limit: 2 })).rejects.toThrow(/nope/);
  });

  it('a SearchParameter added at run time is refused until its reindex is done', async () => {
    const local = new SearchParameterRegistry();
    local.add({
      resourceType: 'SearchParameter',
      url: 'https://fhir.hospital.example.org/SearchParameter/Patient-nickname',
      name: 'nickname',
      status: 'active',
      description: 'x',
      code: 'nickname',
      base: ['Patient'],
      type: 'string',
      expression: 'Patient.name.given',
    });
    const s = new SearchService({ db: t.db, registry: local });
    await expect(s.search({ resourceType: 'Patient', params: [['nickname', 'zo']], baseUrl: BASE })).rejects.toThrow(/reindex/);
    const result = await reindex({ db: t.db, registry: local, indexer: new SearchIndexer(local, { baseUrls: [BASE] }) }, { url: 'https://fhir.hospital.example.org/SearchParameter/Patient-nickname', batchSize: 2 });
    expect(result.resources).toBe(3);
    const b = await s.search({ resourceType: 'Patient', params: [['nickname', 'zo']], baseUrl: BASE });
    expect(b.entry?.map((e) => e.resource!.id)).toEqual(['p1']);
  });
});
