import type { Bundle, CapabilityStatement, Encounter, Observation, OperationOutcomeIssue, Parameters } from 'fhir/r4.js';
import { CompiledQuery, sql } from 'kysely';
import { BODY_MEASURES, PROVENANCE_TARGETING } from '../../src/storage/clinical-records-store.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastnSql, statsSql } from '../../src/storage/vital-trends-store.js';
import { bmiObservationId } from '../../src/workflows/vital-signs-bmi.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/**
 * Vital signs (seed 004 FR-EMR-004, issue 13 §2; src/workflows/vital-signs*.ts): units per the
 * R4 vital-signs profiles, flags from the reference ranges in terminology/, the derived BMI,
 * and trends through Observation/$lastn and Observation/$stats.
 */

let t: TestApp;
let patient: string;
let nurseToken: string;

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const VITALS = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }];

function vital(code: string, value: number | undefined, unit: string, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: VITALS,
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: `Patient/${patient}` },
    effectiveDateTime: new Date().toISOString(),
    ...(value !== undefined ? { valueQuantity: { value, unit, system: UCUM, code: unit } } : {}),
    ...extra,
  };
}

function bp(systolic: number, diastolic: number, extra: Partial<Observation> = {}): Observation {
  return vital('85354-9', undefined, '', {
    component: [
      { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: { value: systolic, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
      { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: { value: diastolic, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' } },
    ],
    ...extra,
  });
}

async function post(resource: object, token = nurseToken): Promise<{ status: number; body: Observation & { issue: OperationOutcomeIssue[] } }> {
  const res = await t.request({ method: 'POST', url: `/fhir/${(resource as { resourceType: string }).resourceType}`, payload: resource, headers: { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, body: res.json() };
}

async function get<T>(url: string): Promise<T> {
  const res = await t.request({ method: 'GET', url, headers: { authorization: `Bearer ${nurseToken}` } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

const flag = (o: { interpretation?: Observation['interpretation'] }) => o.interpretation?.[0]?.coding?.[0]?.code;

beforeAll(async () => {
  t = await startTestApp();
  const p = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Vitals' }] } });
  patient = (p.json() as { id: string }).id;
  nurseToken = (await signInAs(t, 'NURSE', 'Practitioner/nurse-1')).token;
}, 60_000);

afterAll(async () => {
  await t?.close();
});

describe('FR-EMR-004 units per the R4 vital-signs profile', () => {
  it('FR-EMR-004 refuses non-UCUM or wrong units with the path (422), accepts the profile units', async () => {
    const cases: Array<[Observation, string]> = [
      [vital('8867-4', 72, 'bpm'), 'Observation.valueQuantity.code'],
      [{ ...vital('8310-5', 37, 'Cel'), valueQuantity: { value: 37, unit: 'C' } }, 'Observation.valueQuantity.system'],
      [vital('29463-7', 80, 'kg/m2'), 'Observation.valueQuantity.code'],
      [{ ...vital('9279-1', undefined, ''), valueString: 'sixteen' }, 'Observation.valueString'],
      [{ ...bp(120, 80), component: [bp(120, 80).component![0]!, { ...bp(120, 80).component![1]!, valueQuantity: { value: 80, system: UCUM, code: 'mmHg' } }] }, 'Observation.component[1].valueQuantity.code'],
      [{ ...bp(120, 80), component: [bp(120, 80).component![0]!] }, 'Observation.component'],
    ];
    for (const [resource, path] of cases) {
      const res = await post(resource);
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      expect(res.body.issue[0]?.code).toBe('business-rule');
      expect(res.body.issue[0]?.expression).toEqual([path]);
    }
    for (const ok of [vital('8310-5', 98.6, '[degF]'), vital('29463-7', 176, '[lb_av]'), vital('8302-2', 70, '[in_i]'), vital('59408-5', 97, '%'), vital('9279-1', 16, '/min')]) {
      expect((await post(ok)).status).toBe(201);
    }
    // Outside the vital-signs category the units are not checked.
    expect((await post({ ...vital('8867-4', 72, 'bpm'), category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'exam' }] }] })).status).toBe(201);
  });
});

describe('FR-EMR-004 abnormal values flagged from the reference ranges', () => {
  it('FR-EMR-004 sets interpretation (N/L/H/LL/HH) and referenceRange when the client gave none', async () => {
    const expectations: Array<[Observation, string]> = [
      [vital('8867-4', 72, '/min'), 'N'],
      [vital('8867-4', 130, '/min'), 'H'],
      [vital('8867-4', 140, '/min'), 'HH'],
      [vital('8867-4', 45, '/min'), 'L'],
      [vital('59408-5', 90, '%'), 'LL'],
      [vital('9279-1', 22, '/min'), 'H'],
      [vital('8310-5', 101.5, '[degF]'), 'H'],
      [vital('8310-5', 34.5, 'Cel'), 'LL'],
    ];
    for (const [resource, code] of expectations) {
      const res = await post(resource);
      expect(res.status).toBe(201);
      expect(flag(res.body), JSON.stringify(resource.valueQuantity)).toBe(code);
      expect(res.body.interpretation?.[0]?.coding?.[0]?.system).toBe('http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation');
    }
    const hr = (await post(vital('8867-4', 72, '/min'))).body;
    expect(hr.referenceRange?.[0]).toMatchObject({ low: { value: 51, code: '/min' }, high: { value: 90, code: '/min' } });
    expect(hr.referenceRange?.[0]?.text).toMatch(/NEWS2|National Early Warning Score/);
    // A client's own interpretation is kept.
    const given = await post({ ...vital('8867-4', 140, '/min'), interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'N' }] }] });
    expect(flag(given.body)).toBe('N');
  });

  it('FR-EMR-004 blood pressure: each component flagged, the panel takes the worst', async () => {
    const res = await post(bp(185, 95));
    expect(res.status).toBe(201);
    expect(res.body.component!.map(flag)).toEqual(['HH', 'H']);
    expect(flag(res.body)).toBe('HH');
    expect(res.body.component![1]!.referenceRange?.[0]?.high?.value).toBe(89);
    expect(flag((await post(bp(118, 76))).body)).toBe('N');
  });
});

describe('FR-EMR-004 BMI derived from the weight and height of the encounter', () => {
  it('FR-EMR-004 writes one BMI (derivedFrom both) when both exist, and a new version when either changes', async () => {
    const enc = (await post({ resourceType: 'Encounter', status: 'in-progress', class: { code: 'AMB' }, subject: { reference: `Patient/${patient}` } }, t.token)).body as unknown as Encounter;
    const inEncounter = { encounter: { reference: `Encounter/${enc.id}` } };
    const weight = (await post(vital('29463-7', 80, 'kg', inEncounter))).body;
    const bmiId = bmiObservationId(enc.id!);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/${bmiId}` })).statusCode).toBe(404);

    const height = (await post(vital('8302-2', 180, 'cm', inEncounter))).body;
    let bmi = await get<Observation>(`/fhir/Observation/${bmiId}`);
    expect(bmi.code.coding?.[0]).toMatchObject({ system: LOINC, code: '39156-5' });
    expect(bmi.valueQuantity).toMatchObject({ value: 24.7, code: 'kg/m2', system: UCUM });
    expect(bmi.derivedFrom?.map((r) => r.reference)).toEqual([`Observation/${weight.id}`, `Observation/${height.id}`]);
    expect(bmi.encounter?.reference).toBe(`Encounter/${enc.id}`);
    expect(flag(bmi)).toBe('N');

    const heavier = await t.request({ method: 'PUT', url: `/fhir/Observation/${weight.id}`, payload: { ...weight, valueQuantity: { value: 95, unit: 'kg', system: UCUM, code: 'kg' } }, headers: { authorization: `Bearer ${nurseToken}` } });
    expect(heavier.statusCode, heavier.body).toBe(200);
    bmi = await get<Observation>(`/fhir/Observation/${bmiId}`);
    expect(bmi.meta?.versionId).toBe('2');
    expect(bmi.valueQuantity?.value).toBe(29.3);
    expect(flag(bmi)).toBe('H');

    const search = await get<Bundle>(`/fhir/Observation?code=${LOINC}|39156-5&encounter=Encounter/${enc.id}`);
    expect(search.entry?.length).toBe(1);
  });

  it('FR-EMR-004 weight and height in one transaction Bundle give the BMI too (pounds and inches converted)', async () => {
    const enc = (await post({ resourceType: 'Encounter', status: 'in-progress', class: { code: 'AMB' }, subject: { reference: `Patient/${patient}` } }, t.token)).body as unknown as Encounter;
    const inEncounter = { encounter: { reference: `Encounter/${enc.id}` } };
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [vital('29463-7', 176, '[lb_av]', inEncounter), vital('8302-2', 70, '[in_i]', inEncounter)].map((resource) => ({ resource, request: { method: 'POST', url: 'Observation' } })),
    };
    const res = await t.request({ method: 'POST', url: '/fhir', payload: bundle, headers: { authorization: `Bearer ${nurseToken}` } });
    expect(res.statusCode, res.body).toBe(200);
    expect((await get<Observation>(`/fhir/Observation/${bmiObservationId(enc.id!)}`)).valueQuantity?.value).toBe(25.3);
  });
});

describe('FR-EMR-004 trends: Observation/$lastn and Observation/$stats', () => {
  let trendPatient: string;
  const hours = (h: number) => new Date(Date.UTC(2026, 0, 10, 8) + h * 3600_000).toISOString();

  beforeAll(async () => {
    const p = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: 'Trend' }] } });
    trendPatient = (p.json() as { id: string }).id;
    const subject = { subject: { reference: `Patient/${trendPatient}` } };
    const entries: Observation[] = [
      ...[70, 80, 90, 100].map((v, i) => vital('8867-4', v, '/min', { ...subject, effectiveDateTime: hours(i) })),
      ...[36.5, 37.5].map((v, i) => vital('8310-5', v, 'Cel', { ...subject, effectiveDateTime: hours(i) })),
      ...[[120, 80], [140, 90]].map(([s, d], i) => bp(s!, d!, { ...subject, effectiveDateTime: hours(i) })),
      ...[80000, 82000].map((v, i) => vital('29463-7', v, 'g', { ...subject, effectiveDateTime: hours(i) })),
      vital('29463-7', 84, 'kg', { ...subject, effectiveDateTime: hours(2) }),
      vital('8867-4', 300, '/min', { ...subject, effectiveDateTime: hours(5), status: 'entered-in-error' }),
    ];
    const bundle: Bundle = { resourceType: 'Bundle', type: 'transaction', entry: entries.map((resource) => ({ resource, request: { method: 'POST', url: 'Observation' } })) };
    const res = await t.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode, res.body).toBe(200);
  });

  it('FR-EMR-004 $lastn: the newest max Observations per code, for one patient and category', async () => {
    const bundle = await get<Bundle<Observation>>(`/fhir/Observation/$lastn?patient=${trendPatient}&category=vital-signs&max=2`);
    const byCode = new Map<string, number[]>();
    for (const e of bundle.entry ?? []) {
      const code = e.resource!.code.coding![0]!.code!;
      byCode.set(code, [...(byCode.get(code) ?? []), e.resource!.valueQuantity?.value ?? e.resource!.component![0]!.valueQuantity!.value!]);
    }
    expect(byCode.get('8867-4')).toEqual([100, 90]);
    expect(byCode.get('8310-5')).toEqual([37.5, 36.5]);
    expect(byCode.get('85354-9')).toEqual([140, 120]);
    expect(byCode.get('29463-7')).toEqual([84, 82000]);
    const one = await get<Bundle<Observation>>(`/fhir/Observation/$lastn?patient=Patient/${trendPatient}&code=${LOINC}|8867-4`);
    expect(one.entry?.map((e) => e.resource!.valueQuantity?.value)).toEqual([100]);
    const post = await t.request({ method: 'POST', url: '/fhir/Observation/$lastn', payload: { resourceType: 'Parameters', parameter: [{ name: 'patient', valueReference: { reference: `Patient/${trendPatient}` } }, { name: 'code', valueString: '8310-5' }, { name: 'max', valuePositiveInt: 5 }] } });
    expect((post.json() as Bundle).entry?.length).toBe(2);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/$lastn?patient=${trendPatient}&max=0` })).statusCode).toBe(400);
    expect((await t.request({ method: 'GET', url: '/fhir/Observation/$lastn?category=vital-signs' })).statusCode).toBe(400);
  });

  it('FR-EMR-004 $stats: average, min, max, count, median per code (components too), in the vital-sign unit, over a period', async () => {
    const stats = async (query: string) => {
      const body = await get<Parameters>(`/fhir/Observation/$stats?subject=Patient/${trendPatient}&${query}`);
      return body.parameter!.map((p) => {
        const o = p.resource as Observation;
        return { code: o.code.coding![0]!.code, values: Object.fromEntries(o.component!.map((c) => [c.code.coding![0]!.code, c.valueQuantity?.value ?? c.valueInteger])), unit: o.component!.find((c) => c.valueQuantity)?.valueQuantity?.code, period: o.effectivePeriod };
      });
    };
    const hr = await stats(`code=8867-4&system=${LOINC}&statistic=average,min,max,count,median`);
    expect(hr).toHaveLength(1);
    expect(hr[0]!.values).toEqual({ average: 85, minimum: 70, maximum: 100, count: 4, median: 85 });
    expect(hr[0]!.unit).toBe('/min');
    expect(hr[0]!.period?.start).toBe(hours(0));

    const systolic = await stats('code=8480-6&statistic=max,average');
    expect(systolic[0]!.values).toEqual({ maximum: 140, average: 130 });
    expect(systolic[0]!.unit).toBe('mm[Hg]');

    const weight = await stats('code=29463-7&statistic=average,count');
    expect(weight[0]!.values).toEqual({ average: 82, count: 3 });
    expect(weight[0]!.unit).toBe('kg');

    const period = await stats(`code=8867-4&statistic=count,average&start=${encodeURIComponent(hours(2))}&end=${encodeURIComponent(hours(10))}`);
    expect(period[0]!.values).toEqual({ count: 2, average: 95 });
    // Partial dates: a day (or month, year) as start and end covers all of it.
    expect((await stats('code=8867-4&statistic=count&start=2026-01-10&end=2026-01-10'))[0]!.values).toEqual({ count: 4 });
    expect(await stats('code=8867-4&statistic=count&start=2026-02&end=2026')).toEqual([]);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/$stats?subject=Patient/${trendPatient}&code=8867-4&statistic=count&start=yesterday` })).statusCode).toBe(400);

    expect((await t.request({ method: 'GET', url: `/fhir/Observation/$stats?subject=Patient/${trendPatient}&code=8867-4&statistic=mode` })).statusCode).toBe(400);
    expect((await t.request({ method: 'GET', url: `/fhir/Observation/$stats?subject=Patient/${trendPatient}&code=8867-4` })).statusCode).toBe(400);
  });

  it('FR-EMR-004 $lastn and $stats read the search index through its indexes (EXPLAIN) and are declared in the CapabilityStatement', async () => {
    const db = t.server.database.db;
    const q = { patientId: trendPatient, codes: [{ system: LOINC, code: '8867-4' }], categories: ['vital-signs'], start: hours(0) };
    await db.transaction().execute(async (trx) => {
      await sql`SET LOCAL enable_seqscan = off`.execute(trx);
      for (const query of [lastnSql(q, 3), statsSql(q)]) {
        const compiled = query.compile(trx);
        const plan = (await trx.executeQuery<Record<string, string>>({ ...compiled, sql: `EXPLAIN ${compiled.sql}` })).rows.map((r) => Object.values(r)[0]).join('\n');
        expect(plan).toMatch(/Index (Only )?Scan (Backward )?using search_reference_target/);
        expect(plan).not.toMatch(/Seq Scan on search_/);
      }
      // The rules' lookups: signatures of a record (clinical-records.ts) and the BMI inputs of an encounter.
      for (const [text, args] of [[PROVENANCE_TARGETING, ['x', 'Encounter']], [BODY_MEASURES, ['x']]] as const) {
        const plan = (await trx.executeQuery<Record<string, string>>(CompiledQuery.raw(`EXPLAIN ${text}`, [...args]))).rows.map((r) => Object.values(r)[0]).join('\n');
        expect(plan).toMatch(/Index (Only )?Scan (Backward )?using search_reference_target/);
        expect(plan).not.toMatch(/Seq Scan on search_/);
      }
    });
    const cs = await get<CapabilityStatement>('/fhir/metadata');
    const ops = cs.rest?.[0]?.resource?.find((r) => r.type === 'Observation')?.operation ?? [];
    expect(ops.map((o) => o.name)).toEqual(expect.arrayContaining(['lastn', 'stats']));
    expect(ops.find((o) => o.name === 'stats')?.definition).toBe('http://hl7.org/fhir/OperationDefinition/Observation-stats');
  });

  it('FR-EMR-004 a patient reads only their own trends', async () => {
    const own = await signInAs(t, 'PATIENT', `Patient/${trendPatient}`);
    const ok = await t.request({ method: 'GET', url: `/fhir/Observation/$lastn?patient=${trendPatient}`, headers: { authorization: `Bearer ${own.token}` } });
    expect(ok.statusCode).toBe(200);
    const other = await t.request({ method: 'GET', url: `/fhir/Observation/$stats?subject=Patient/${patient}&code=8867-4&statistic=count`, headers: { authorization: `Bearer ${own.token}` } });
    expect(other.statusCode).toBe(403);
  });
});
