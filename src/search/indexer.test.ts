import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Observation, Patient, Resource } from 'fhir/r4.js';
import { sql } from 'kysely';
import { SearchIndexer } from './indexer.js';
import { COMPOSITE, DATE, QUANTITY, REFERENCE, STRING, TOKEN } from './index-tables.js';
import { SearchParameterRegistry } from './registry.js';
import { loadFhirExamples, loadSynthea } from '../../test/support/shared-data.js';
import { insertResources, openTestDb, type TestDb } from '../../test/support/search-db.js';

const registry = new SearchParameterRegistry();
const indexer = new SearchIndexer(registry, { baseUrls: ['http://localhost:8080/fhir'] });

function rowsOf(r: Resource, table: string, param: string): unknown[][] {
  return (indexer.extract(r).get(table) ?? []).filter((row) => row[0] === param);
}

describe('SearchIndexer.extract', () => {
  it('indexes names folded and exact, identifiers, our own patient-number, birthdate as a day range', () => {
    const p: Patient = {
      resourceType: 'Patient',
      id: 'p1',
      name: [{ family: 'Müller', given: ['Zoë', 'Anne'] }],
      identifier: [
        { system: 'https://fhir.hospital.example.org/sid/patient-number', value: '12345', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] } },
      ],
      birthDate: '1980-02-29',
      gender: 'female',
    };
    expect(rowsOf(p, STRING, 'family').map((r) => r.slice(1, 3))).toEqual([['muller', 'Müller']]);
    expect(rowsOf(p, STRING, 'given').map((r) => r[1])).toEqual(['zoe', 'anne']);
    expect(rowsOf(p, TOKEN, 'patient-number').map((r) => r.slice(1, 6))).toEqual([
      ['https://fhir.hospital.example.org/sid/patient-number', '12345', null, 'http://terminology.hl7.org/CodeSystem/v2-0203', 'MR'],
    ]);
    expect(rowsOf(p, DATE, 'birthdate').map((r) => r.slice(1, 3))).toEqual([['1980-02-29T00:00:00.000Z', '1980-03-01T00:00:00.000Z']]);
    // sort flags: the one row carries both
    expect(rowsOf(p, TOKEN, 'gender')[0]!.slice(6)).toEqual([true, true]);
  });

  it('indexes quantities with UCUM canonical values, periods as ranges, references by type/id and components', () => {
    const o: Observation = {
      resourceType: 'Observation',
      id: 'o1',
      status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '2345-7', display: 'Glucose' }], text: 'Glucose Bld' },
      subject: { reference: 'http://localhost:8080/fhir/Patient/p1' },
      performer: [{ reference: 'https://elsewhere.example/fhir/Practitioner/x' }],
      effectivePeriod: { start: '2020-01-01T10:00:00+01:00' },
      valueQuantity: { value: 250, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
      component: [{ code: { coding: [{ system: 'http://loinc.org', code: '8480-6' }] }, valueQuantity: { value: 120, system: 'http://unitsofmeasure.org', code: 'mm[Hg]' } }],
    };
    expect(rowsOf(o, QUANTITY, 'value-quantity').map((r) => r.slice(1, 9))).toEqual([
      ['250', '250', 'http://unitsofmeasure.org', 'mg/dL', 'mg/dL', 'g/L', '2.5', '2.5'],
    ]);
    expect(rowsOf(o, DATE, 'date').map((r) => r.slice(1, 3))).toEqual([['2020-01-01T09:00:00.000Z', 'infinity']]);
    expect(rowsOf(o, REFERENCE, 'subject').map((r) => r.slice(1, 5))).toEqual([['Patient', 'p1', null, null]]);
    expect(rowsOf(o, REFERENCE, 'patient').map((r) => r.slice(1, 3))).toEqual([['Patient', 'p1']]);
    expect(rowsOf(o, REFERENCE, 'performer').map((r) => r.slice(1, 5))).toEqual([
      ['Practitioner', null, null, 'https://elsewhere.example/fhir/Practitioner/x'],
    ]);
    expect(rowsOf(o, TOKEN, 'code').map((r) => r.slice(1, 4))).toEqual([
      ['http://loinc.org', '2345-7', 'glucose'],
      [null, null, 'glucose bld'],
    ]);
    expect(rowsOf(o, COMPOSITE, 'component-code-value-quantity').map((r) => r.slice(1, 7))).toEqual([
      ['http://loinc.org', '8480-6', 'http://unitsofmeasure.org', 'mm[Hg]', '120', '120'],
    ]);
  });

  it('extracts fast enough for every write (rows/s over Synthea)', () => {
    const resources = loadSynthea(40);
    for (const r of resources.slice(0, 500)) indexer.extract(r); // warm-up
    const start = process.hrtime.bigint();
    let rows = 0;
    for (const r of resources) for (const list of indexer.extract(r).values()) rows += list.length;
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(
      `extract: ${resources.length} resources, ${rows} rows in ${secs.toFixed(2)} s = ${Math.round(resources.length / secs)} resources/s, ${Math.round(rows / secs)} rows/s`,
    );
    expect(rows).toBeGreaterThan(resources.length);
    expect(resources.length / secs).toBeGreaterThan(2000);
  });
});

describe('index rows in the database', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDb();
  });
  afterAll(async () => t?.close());

  it('every example and Synthea resource stores its rows with set-based unnest inserts', async () => {
    const resources = [...loadFhirExamples(), ...loadSynthea(3)];
    const seen = new Set<string>();
    const unique = resources.filter((r) => r.id && !seen.has(`${r.resourceType}/${r.id}`) && seen.add(`${r.resourceType}/${r.id}`));
    const start = performance.now();
    await insertResources(t.db, indexer, unique);
    const ms = performance.now() - start;
    const counts = await sql<{ n: string }>`SELECT (SELECT count(*) FROM search_token) + (SELECT count(*) FROM search_string) + (SELECT count(*) FROM search_date) + (SELECT count(*) FROM search_reference) AS n`.execute(t.db);
    console.log(`stored ${unique.length} resources on ${t.kind} in ${ms.toFixed(0)} ms; ${counts.rows[0]!.n} token/string/date/reference rows`);
    expect(Number(counts.rows[0]!.n)).toBeGreaterThan(unique.length * 3);
  });
});
