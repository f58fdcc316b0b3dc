import type { Bundle, FhirResource, Observation, OperationOutcome, Patient } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SearchService } from '../../src/search/search-service.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { post } from './smart-helpers.js';

/**
 * `_filter` (https://hl7.org/fhir/R4/search_filter.html, src/search/filter-expression.ts): each
 * comparison must find exactly what the ordinary parameter it stands for finds on the same
 * data, and/or/not must be the set algebra of those, and bad input is a 400 OperationOutcome.
 */
let t: TestApp;
const LOINC = 'http://loinc.org';
const LAB = 'https://fhir.hospital.example.org/CodeSystem/lab-test';
const LAB_VS = 'https://fhir.hospital.example.org/ValueSet/lab-test';
const CAT = 'http://terminology.hl7.org/CodeSystem/observation-category';

async function put(resource: FhirResource): Promise<void> {
  const res = await t.request({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, payload: resource });
  expect(res.statusCode, res.body).toBeLessThan(300);
}

async function found(query: string, token?: string): Promise<string[]> {
  const res = await t.request({ method: 'GET', url: `/fhir/${query}`, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  expect(res.statusCode, `${query}\n${res.body}`).toBe(200);
  const bundle = res.json() as Bundle;
  return (bundle.entry ?? []).filter((e) => e.search?.mode !== 'outcome').map((e) => e.resource!.id!).sort();
}

/** Ids found by `_filter=<expr>` on `type` (the expression URL-encoded). */
function filtered(type: string, expr: string, extra = ''): Promise<string[]> {
  return found(`${type}?_filter=${encodeURIComponent(expr)}&_count=100${extra}`);
}

function union(...sets: string[][]): string[] {
  return [...new Set(sets.flat())].sort();
}
function minus(all: string[], drop: string[]): string[] {
  return all.filter((x) => !drop.includes(x));
}

const patients: Patient[] = [
  { resourceType: 'Patient', id: 'f-p1', gender: 'female', birthDate: '1985-03-04', name: [{ family: 'Smith', given: ['Anna'] }] },
  { resourceType: 'Patient', id: 'f-p2', gender: 'male', birthDate: '1990-07-01', name: [{ family: 'Smithson', given: ['Bob'] }] },
  { resourceType: 'Patient', id: 'f-p3', meta: { tag: [{ system: 'http://example.org/tags', code: 't1' }] }, gender: 'female', birthDate: '1992-12-31', name: [{ family: 'Goldsmith', given: ['Cleo'] }] },
  { resourceType: 'Patient', id: 'f-p4', gender: 'other', birthDate: '1990', name: [{ family: 'Müller', given: ['Dora'] }] },
  { resourceType: 'Patient', id: 'f-p5', gender: 'female', name: [{ family: 'SMITH', given: ['Eve, Jr'] }] },
];

function obs(id: string, subject: string, code: [string, string], value: number | undefined, unit: string, date: string, category: string): Observation {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [{ coding: [{ system: CAT, code: category }] }],
    code: { coding: [{ system: code[0], code: code[1] }] },
    subject: { reference: `Patient/${subject}` },
    effectiveDateTime: date,
    ...(value === undefined ? {} : { valueQuantity: { value, unit, system: 'http://unitsofmeasure.org', code: unit } }),
  };
}

const observations: Observation[] = [
  obs('f-o1', 'f-p1', [LOINC, '1234-5'], 5.4, 'mg', '2020-01-15', 'laboratory'),
  obs('f-o2', 'f-p1', [LAB, 'HDL'], 1.2, 'mmol/L', '2021-06-01T10:00:00Z', 'laboratory'),
  obs('f-o3', 'f-p2', [LAB, 'CBC'], 7, 'g', '2022-03-03', 'laboratory'),
  obs('f-o4', 'f-p3', [LOINC, '8867-4'], 72, '/min', '2019-11-11', 'vital-signs'),
  // A catalogue result must be in a unit of its test (issue 14): g/dL converts to the catalogue's mg/dL.
  obs('f-o5', 'f-p4', [LAB, 'CHOL'], 0.005, 'g/dL', '2023-02-02', 'laboratory'),
  obs('f-o6', 'f-p5', [LOINC, '1234-5'], undefined, 'mg', '2020-05-05', 'vital-signs'),
];

beforeAll(async () => {
  t = await startTestApp();
  for (const r of [...patients, ...observations]) await put(r);
  for (const [id, p] of [['f-r1', 0.2], ['f-r2', 0.75]] as const) {
    await put({ resourceType: 'RiskAssessment', id, status: 'final', subject: { reference: 'Patient/f-p1' }, prediction: [{ probabilityDecimal: p }] });
  }
});
afterAll(async () => {
  await t?.close();
});

describe('_filter comparisons = the ordinary parameters they stand for', () => {
  it('string: eq (whole value, case- and accent-insensitive), ne, sw, co, ew', async () => {
    expect(await filtered('Patient', 'family eq "smith"')).toEqual(['f-p1', 'f-p5']);
    expect(await filtered('Patient', 'family eq "SMITH"')).toEqual(['f-p1', 'f-p5']);
    expect(await filtered('Patient', 'family eq "muller"')).toEqual(['f-p4']);
    expect(await filtered('Patient', 'family sw "smi"')).toEqual(await found('Patient?family=smi'));
    expect(await filtered('Patient', 'family co "smith"')).toEqual(await found('Patient?family:contains=smith'));
    expect(await filtered('Patient', 'family co "smith"')).toEqual(['f-p1', 'f-p2', 'f-p3', 'f-p5']);
    expect(await filtered('Patient', 'family ew "son"')).toEqual(['f-p2']);
    expect(await filtered('Patient', 'family ne "smith"')).toEqual(minus(await found('Patient'), ['f-p1', 'f-p5']));
    // a ',' inside a filter value is not an OR list
    expect(await filtered('Patient', 'given eq "Eve, Jr"')).toEqual(['f-p5']);
    expect(await filtered('Patient', 'name co "eve, j"')).toEqual(['f-p5']);
  });

  it('date: eq ne gt lt ge le sa eb ap as the prefixes', async () => {
    for (const [op, v] of [
      ['ge', '1990'], ['lt', '1990-07'], ['eq', '1990'], ['ne', '1990'], ['gt', '1990-07-01'], ['le', '1990-07-01'],
      ['sa', '1989'], ['eb', '1991'], ['ap', '1990-06-30'],
    ] as const) {
      const ordinary = await found(`Patient?birthdate=${op}${v}&_count=100`);
      expect(await filtered('Patient', `birthdate ${op} ${v}`), `${op} ${v}`).toEqual(ordinary);
    }
    expect(await filtered('Patient', 'birthdate ge 1990')).toEqual(['f-p2', 'f-p3', 'f-p4']);
    expect(await filtered('Observation', 'date ge 2021-06-01T10:00:00Z')).toEqual(await found('Observation?date=ge2021-06-01T10:00:00Z'));
  });

  it('token: eq (system|code), ne, in / ni a value set, ss / sb a hierarchy', async () => {
    expect(await filtered('Patient', 'gender eq female')).toEqual(await found('Patient?gender=female'));
    expect(await filtered('Patient', 'gender ne female')).toEqual(await found('Patient?gender:not=female'));
    expect(await filtered('Observation', `code eq ${LOINC}|1234-5`)).toEqual(['f-o1', 'f-o6']);
    expect(await filtered('Observation', `code eq ${LOINC}|1234-5`)).toEqual(await found(`Observation?code=${LOINC}|1234-5`));
    expect(await filtered('Observation', `code in ${LAB_VS}`)).toEqual(await found(`Observation?code:in=${LAB_VS}`));
    expect(await filtered('Observation', `code in "${LAB_VS}"`)).toEqual(['f-o2', 'f-o3', 'f-o5']);
    expect(await filtered('Observation', `code ni ${LAB_VS}`)).toEqual(await found(`Observation?code:not-in=${LAB_VS}`));
    expect(await filtered('Observation', `code ss ${LAB}|lipid`)).toEqual(await found(`Observation?code:below=${LAB}|lipid`));
    expect(await filtered('Observation', `code ss ${LAB}|lipid`)).toEqual(['f-o2', 'f-o5']);
    expect(await filtered('Observation', `code sb ${LAB}|HDL`)).toEqual(await found(`Observation?code:above=${LAB}|HDL`));
    expect(await filtered('Observation', '_id eq f-o3')).toEqual(['f-o3']);
  });

  it('quantity: prefixes, with and without a unit (UCUM canonical)', async () => {
    for (const v of ['gt5', 'lt5.4', 'eq5.4', 'ge7', 'le1.2', 'ne72', 'ap70', 'sa5', 'eb1.2']) {
      const op = v.slice(0, 2);
      const n = v.slice(2);
      expect(await filtered('Observation', `value-quantity ${op} ${n}`), v).toEqual(await found(`Observation?value-quantity=${v}&_count=100`));
    }
    // 5.0 mg/dL = 0.005 g/dL: the canonical comparison of the ordinary parameter
    expect(await filtered('Observation', 'value-quantity eq 5.0|http://unitsofmeasure.org|mg/dL')).toEqual(['f-o5']);
    expect(await filtered('Observation', 'value-quantity eq 5.0|http://unitsofmeasure.org|mg/dL')).toEqual(await found('Observation?value-quantity=5.0|http://unitsofmeasure.org|mg/dL'));
  });

  it('number: prefixes (implicit precision on eq)', async () => {
    for (const [op, v] of [['gt', '0.5'], ['lt', '0.5'], ['eq', '0.2'], ['ne', '0.2'], ['ge', '0.75'], ['le', '0.2'], ['ap', '0.7']] as const) {
      expect(await filtered('RiskAssessment', `probability ${op} ${v}`), `${op} ${v}`).toEqual(await found(`RiskAssessment?probability=${op}${v}`));
    }
    expect(await filtered('RiskAssessment', 'probability gt 0.5')).toEqual(['f-r2']);
  });

  it('reference: eq / re, chained paths, pr', async () => {
    expect(await filtered('Observation', 'subject eq Patient/f-p1')).toEqual(await found('Observation?subject=Patient/f-p1'));
    expect(await filtered('Observation', 'subject re Patient/f-p1')).toEqual(['f-o1', 'f-o2']);
    expect(await filtered('Observation', 'subject ne Patient/f-p1')).toEqual(['f-o3', 'f-o4', 'f-o5', 'f-o6']);
    expect(await filtered('Observation', 'subject.family co "smith"')).toEqual(await found('Observation?subject.family:contains=smith'));
    expect(await filtered('Observation', 'subject:Patient.gender eq male')).toEqual(['f-o3']);
    expect(await filtered('Patient', 'birthdate pr false')).toEqual(await found('Patient?birthdate:missing=true'));
    expect(await filtered('Patient', 'birthdate pr true')).toEqual(await found('Patient?birthdate:missing=false'));
    expect(await filtered('Observation', 'value-quantity pr false')).toEqual(['f-o6']);
  });
});

describe('_filter logic', () => {
  it('and / or / not / parentheses are the set algebra of the ordinary searches', async () => {
    const all = await found('Patient?_count=100');
    const female = await found('Patient?gender=female');
    const born90 = await found('Patient?birthdate=ge1990');
    const smi = await found('Patient?family=smi');
    expect(await filtered('Patient', 'gender eq female and birthdate ge 1990')).toEqual(await found('Patient?gender=female&birthdate=ge1990'));
    expect(await filtered('Patient', 'gender eq female or birthdate ge 1990')).toEqual(union(female, born90));
    expect(await filtered('Patient', 'not (gender eq female)')).toEqual(minus(all, female));
    expect(await filtered('Patient', 'not (gender eq female or birthdate ge 1990)')).toEqual(minus(all, union(female, born90)));
    // and binds tighter than or; parentheses change it
    expect(await filtered('Patient', 'family sw "smi" or gender eq female and birthdate ge 1990')).toEqual(union(smi, female.filter((x) => born90.includes(x))));
    expect(await filtered('Patient', '(family sw "smi" or gender eq female) and birthdate ge 1990')).toEqual(union(smi, female).filter((x) => born90.includes(x)));
    expect(await filtered('Patient', 'not gender eq female and not (birthdate pr false)')).toEqual(minus(all, female).filter((x) => !['f-p5'].includes(x)));
    // with ordinary parameters (ANDed) and two _filter parameters (ANDed)
    expect(await found(`Patient?gender=female&_filter=${encodeURIComponent('family sw "smi" or family eq "goldsmith"')}`)).toEqual(['f-p1', 'f-p3', 'f-p5']);
    expect(await found(`Patient?_filter=${encodeURIComponent('gender eq female')}&_filter=${encodeURIComponent('birthdate ge 1990')}`)).toEqual(['f-p3']);
    // across types through a chain inside or
    expect(await filtered('Observation', `subject.gender eq male or code ss ${LAB}|lipid`)).toEqual(['f-o2', 'f-o3', 'f-o5']);
  });

  it('works in a search of several types (sets of (type, id))', async () => {
    const run = async (expr: string) => {
      const res = await t.request({ method: 'GET', url: `/fhir?_type=Patient,Observation&_filter=${encodeURIComponent(expr)}&_total=accurate` });
      expect(res.statusCode, res.body).toBe(200);
      const bundle = res.json() as Bundle;
      expect(bundle.total).toBe(bundle.entry?.length ?? 0);
      return bundle.entry?.map((e) => `${e.resource!.resourceType}/${e.resource!.id}`).sort();
    };
    expect(await run('_tag eq http://example.org/tags|t1 or _id eq f-o1')).toEqual(['Observation/f-o1', 'Patient/f-p3']);
    expect(await run('(_tag eq http://example.org/tags|t1 or _tag eq http://example.org/tags|t9) and _lastUpdated gt 2000')).toEqual(['Patient/f-p3']);
    // as for ordinary parameters: one that some searched type lacks is refused, named as written
    const res = await t.request({ method: 'GET', url: `/fhir?_type=Patient,Observation&_filter=${encodeURIComponent('code eq x')}` });
    expect(res.statusCode).toBe(400);
    expect(res.body).toContain("'code'");
    expect(res.body).not.toContain(':missing');
  });

  it('totals, sorting and paging work on filtered searches', async () => {
    const expr = encodeURIComponent('gender eq female or family eq "smithson"');
    const res = await t.request({ method: 'GET', url: `/fhir/Patient?_filter=${expr}&_sort=birthdate&_count=2&_total=accurate` });
    expect(res.statusCode, res.body).toBe(200);
    const first = res.json() as Bundle;
    expect(first.total).toBe(4);
    expect(first.entry?.map((e) => e.resource!.id)).toEqual(['f-p1', 'f-p2']);
    const next = first.link?.find((l) => l.relation === 'next')?.url;
    expect(next).toBeTruthy();
    const page2 = await t.request({ method: 'GET', url: next!.replace('http://localhost:8080', '') });
    expect(page2.statusCode, page2.body).toBe(200);
    expect((page2.json() as Bundle).entry?.map((e) => e.resource!.id)).toEqual(['f-p3', 'f-p5']);
    const count = await t.request({ method: 'GET', url: `/fhir/Patient?_filter=${expr}&_summary=count` });
    expect((count.json() as Bundle).total).toBe(4);
  });

  it('scopes still apply: a granular token sees only its laboratory Observations', async () => {
    const tok = await post(t, '/auth/token', { grant_type: 'client_credentials', scope: 'system/Observation.rs?category=laboratory' }, {
      authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}`,
    });
    expect(tok.statusCode, tok.body).toBe(200);
    const labOnly = (tok.json() as { access_token: string }).access_token;
    const expr = encodeURIComponent(`code eq ${LOINC}|1234-5 or code eq ${LOINC}|8867-4 or not (subject eq Patient/f-p1)`);
    expect(await found(`Observation?_filter=${expr}`)).toEqual(['f-o1', 'f-o3', 'f-o4', 'f-o5', 'f-o6']);
    expect(await found(`Observation?_filter=${expr}`, labOnly)).toEqual(['f-o1', 'f-o3', 'f-o5']);
    const count = await t.request({ method: 'GET', url: `/fhir/Observation?_filter=${expr}&_summary=count`, headers: { authorization: `Bearer ${labOnly}` } });
    expect((count.json() as Bundle).total).toBe(3);
  });

  it('uses the same index lookups as the ordinary parameters (EXPLAIN)', async () => {
    const db = t.server.database.db;
    const base = { resourceType: 'Observation', baseUrl: 'http://localhost:8080/fhir' };
    // One comparison compiles to exactly the ordinary statement.
    const search = new SearchService({ db, registry: t.server.registry });
    const strip = (s: string) => s.replace(/\b([a-z]+)\d+\b/g, '$1');
    const one = await search.explain({ ...base, params: [['_filter', `code eq ${LOINC}|1234-5`]] }, false);
    const plain = await search.explain({ ...base, params: [['code', `${LOINC}|1234-5`]] }, false);
    expect(strip(one.page)).toBe(strip(plain.page));
    // An or / and / not: with sequential scans off, every search table is read through an index.
    await db.transaction().execute(async (trx) => {
      await sql`SET LOCAL enable_seqscan = off`.execute(trx);
      const s = new SearchService({ db: trx, registry: t.server.registry });
      const plan = await s.explain({ ...base, params: [['_filter', `(code eq ${LOINC}|1234-5 or subject eq Patient/f-p2) and not (value-quantity gt 6)`]] }, false);
      const text = `${plan.page}\n${plan.count}`;
      expect(text).toMatch(/Index (Only )?Scan using search_token\w*/);
      expect(text).toMatch(/Index (Only )?Scan using search_reference\w*/);
      expect(text).toMatch(/Index (Only )?Scan using search_quantity\w*/);
      expect(text).not.toMatch(/Seq Scan on search_/);
    });
  });
});

describe('bad _filter input: 400 OperationOutcome, never 500', () => {
  it('refuses malformed, unknown, unsupported and hostile expressions', async () => {
    const cases: Array<[string, RegExp]> = [
      ['', /empty/],
      ['family', /operator/],
      ['family eq "smith', /unterminated/],
      ['(family eq x', /expected '\)'/],
      ['family eq x)', /expected 'and'/],
      ['nosuch eq x', /Unknown search parameter/],
      ['family gt "x"', /not supported/],
      ['gender co fem', /not supported/],
      ['birthdate po 2020', /not supported/],
      ['birthdate ge notadate', /not a date/],
      ['birthdate ge ge2020', /not a date/],
      ['family:exact eq x', /not supported/],
      ['name[family eq x].given eq y', /not supported/],
      ['birthdate pr maybe', /true or false/],
      ['_has:Observation:subject:code eq x', /not supported/],
      [`${'('.repeat(40)}family eq x${')'.repeat(40)}`, /nested too deeply/],
      [`${'not ('.repeat(2000)}family eq x${')'.repeat(2000)}`, /too long/],
      [Array.from({ length: 80 }, (_, i) => `family eq x${i}`).join(' or '), /at most 64/],
      ['gender eq female and', /ends/],
      ['family eq "\\x"', /escape/],
    ];
    for (const [expr, message] of cases) {
      const res = await t.request({ method: 'GET', url: `/fhir/Patient?_filter=${encodeURIComponent(expr)}` });
      expect(res.statusCode, `${expr.slice(0, 80)}: ${res.body}`).toBe(400);
      const oo = res.json() as OperationOutcome;
      expect(oo.resourceType).toBe('OperationOutcome');
      expect(JSON.stringify(oo.issue), expr.slice(0, 80)).toMatch(message);
    }
    // an unknown value set named by `in`
    const vs = await t.request({ method: 'GET', url: `/fhir/Observation?_filter=${encodeURIComponent('code in http://example.org/ValueSet/none')}` });
    expect(vs.statusCode, vs.body).toBe(400);
    expect((vs.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
  });

  it('is listed in the CapabilityStatement', async () => {
    const res = await t.request({ method: 'GET', url: '/fhir/metadata' });
    const rest = (res.json() as { rest: Array<{ searchParam?: Array<{ name: string }> }> }).rest[0]!;
    expect(rest.searchParam?.map((p) => p.name)).toContain('_filter');
  });
});
