import type { Bundle, OperationOutcome } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prescribingContextQuery, resourcesByIdQuery } from '../../src/storage/prescribing-store.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/**
 * What the prescribing checks read (seed 004 FR-EMR-003, issue 13 §3; src/storage/prescribing-store.ts):
 * the latest body weight by date, and a plan bounded by the patient's own record whether the
 * tables have statistics or not (the weight lookup used to walk the date index of every
 * Observation newest first on fresh tables).
 */

const LOINC = 'http://loinc.org';
const PATIENTS = 25;

let t: TestApp;
let doctorToken: string;

beforeAll(async () => {
  // No ANALYZE by the server: the first plan check runs on tables without statistics.
  t = await startTestApp({ DATABASE_MAINTENANCE: 'off' });
  const doctor = await t.request({ method: 'POST', url: '/fhir/Practitioner', payload: { resourceType: 'Practitioner', name: [{ family: 'Nguyen' }] } });
  doctorToken = (await signInAs(t, 'DOCTOR', `Practitioner/${(doctor.json() as { id: string }).id}`)).token;
}, 120_000);

afterAll(async () => {
  await t?.close();
});

function weight(patient: string, kg: number, when: string, status = 'final') {
  return {
    resourceType: 'Observation',
    status,
    code: { coding: [{ system: LOINC, code: '29463-7', display: 'Body Weight' }] },
    subject: { reference: patient },
    effectiveDateTime: when,
    valueQuantity: { value: kg, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
  };
}

/** Patients with 2 allergies, 3 active prescriptions, 3 weights and 9 heart rates each, in one transaction Bundle. */
async function loadPatients(n: number): Promise<string[]> {
  const entry: NonNullable<Bundle['entry']> = [];
  const add = (resource: Record<string, unknown>, fullUrl?: string) => entry.push({ ...(fullUrl ? { fullUrl } : {}), resource: resource as never, request: { method: 'POST', url: String(resource.resourceType) } });
  for (let i = 0; i < n; i++) {
    const p = `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    add({ resourceType: 'Patient', name: [{ family: `Ctx${i}` }], birthDate: '1960-03-04' }, p);
    for (const code of ['91935009', '419474003']) add({ resourceType: 'AllergyIntolerance', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] }, criticality: 'low', code: { coding: [{ system: 'http://snomed.info/sct', code }] }, patient: { reference: p } });
    for (const code of ['314076', '310798', '314231']) {
      add({ resourceType: 'MedicationRequest', status: 'active', intent: 'order', medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code }] }, subject: { reference: p } });
    }
    for (let k = 0; k < 12; k++) {
      const when = new Date(Date.UTC(2025, k, 1)).toISOString();
      if (k % 4 === 0) add(weight(p, 70 + k, when));
      else add({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '8867-4' }] }, subject: { reference: p }, effectiveDateTime: when, valueQuantity: { value: 70, unit: '/min' } });
    }
  }
  const res = await t.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'transaction', entry } });
  expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.response!.location!.split('/_history')[0]!).filter((l) => l.startsWith('Patient/')).map((l) => l.split('/')[1]!);
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** Index and table rows the statement read (returned or filtered away), summed over the plan, and the scans used. */
async function rowsRead(query: ReturnType<typeof prescribingContextQuery>): Promise<{ rows: number; scans: string[] }> {
  const result = await sql<Record<string, unknown>>`EXPLAIN (ANALYZE, FORMAT JSON) ${query}`.execute(t.server.database.db);
  const raw = Object.values(result.rows[0]!)[0];
  const plan = ((typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: PlanNode }>)[0]!.Plan;
  let rows = 0;
  const scans: string[] = [];
  const walk = (node: PlanNode) => {
    if (node['Relation Name']) {
      rows += ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0)) * (node['Actual Loops'] ?? 1);
      scans.push(`${node['Node Type']} ${node['Relation Name']}`);
    }
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan);
  return { rows, scans };
}

describe('prescribing check context (FR-EMR-003)', () => {
  it('FR-EMR-003: the mg/kg dose check takes the latest body weight by date — not a later-written one, not entered-in-error, not another patient\'s', async () => {
    const child = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', birthDate: new Date(Date.now() - 6 * 365.25 * 86400_000).toISOString().slice(0, 10) } });
    const patient = `Patient/${(child.json() as { id: string }).id}`;
    const other = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', birthDate: '2019-01-01' } });
    for (const w of [
      weight(patient, 20, '2026-02-01T08:00:00Z'),
      weight(patient, 60, '2026-03-01T08:00:00Z', 'entered-in-error'),
      weight(patient, 14, '2025-01-01T08:00:00Z'), // written last, measured first
      weight(`Patient/${(other.json() as { id: string }).id}`, 90, '2026-04-01T08:00:00Z'),
    ]) {
      expect((await t.request({ method: 'POST', url: '/fhir/Observation', payload: w })).statusCode).toBe(201);
    }
    // Acetaminophen 75 mg/kg/day: 20 kg → 1500 mg/day; 2 × 325 mg four times a day = 2600 mg.
    const res = await t.request({
      method: 'POST',
      url: '/fhir/MedicationRequest',
      headers: { authorization: `Bearer ${doctorToken}` },
      payload: {
        resourceType: 'MedicationRequest',
        status: 'active',
        intent: 'order',
        medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '313782', display: 'Acetaminophen 325 MG Oral Tablet' }] },
        subject: { reference: patient },
        dosageInstruction: [{ timing: { repeat: { frequency: 4, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: 2 } }] }],
      },
    });
    expect(res.statusCode, res.body).toBe(409);
    expect((res.json() as OperationOutcome).issue[0]!.diagnostics).toMatch(/75 mg\/kg\/day × 20 kg = 1500 mg\/day/);
  });

  it('FR-EMR-003: the check context reads only the patient\'s own rows, on fresh tables and after ANALYZE (EXPLAIN ANALYZE)', async () => {
    const ids = await loadPatients(PATIENTS);
    const patient = ids[Math.floor(ids.length / 2)]!;
    // One patient's record is 18 resources; the database holds PATIENTS × 18. Probing the
    // patient's rows reads well under 100; a walk over every patient's Observations (the old
    // weight lookup on fresh tables) reads several hundred.
    const bound = 100;
    const check = async (when: string) => {
      const context = await rowsRead(prescribingContextQuery(patient, 'none', ['active', 'on-hold'], true));
      expect(context.rows, `${when}: ${context.scans.join(', ')}`).toBeLessThan(bound);
      expect(context.scans.filter((s) => s.startsWith('Seq Scan')), when).toEqual([]);
      const rows = (await prescribingContextQuery(patient, 'none', ['active', 'on-hold'], true).execute(t.server.database.db)).rows;
      expect(rows.map((r) => r.resource_type).sort(), when).toEqual(['AllergyIntolerance', 'AllergyIntolerance', 'MedicationRequest', 'MedicationRequest', 'MedicationRequest', 'Observation', 'Patient']);
      expect((JSON.parse(rows.find((r) => r.resource_type === 'Observation')!.json) as { valueQuantity: { value: number } }).valueQuantity.value, when).toBe(78);
      const byId = await rowsRead(resourcesByIdQuery('Patient', ids.slice(0, 3)));
      expect(byId.rows, when).toBeLessThan(10);
    };
    await check('fresh tables');
    await sql`ANALYZE`.execute(t.server.database.unlimitedDb);
    await check('after ANALYZE');
  }, 180_000);
});
