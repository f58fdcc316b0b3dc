import type { Condition, Group, Observation, Patient, Resource } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientCompartment, compartmentTypes } from '../../src/operations/export-compartments.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { downloadAll, exportManifest, kickOff, loadSynthea, searchIds as searchIdsOf } from './bulk-export-helpers.js';

/** What Bulk Data export returns, checked against the database after loading real Synthea records. */
let t: TestApp;
const PATIENTS = 4;
const HEIGHT = 'http://loinc.org|8302-2';
const WEIGHT = 'http://loinc.org|29463-7';

beforeAll(async () => {
  t = await startTestApp();
  await loadSynthea(t, PATIENTS);
}, 300_000);
afterAll(async () => {
  await t?.close();
});

async function stored(): Promise<Map<string, Resource>> {
  const rows = await sql<{ resource_type: string; id: string; json: string }>`
    SELECT resource_type, id, content::text AS json FROM resource WHERE deleted = false`.execute(t.server.database.db);
  return new Map(rows.rows.map((r) => [`${r.resource_type}/${r.id}`, JSON.parse(r.json) as Resource]));
}

const searchIds = (query: string) => searchIdsOf(t, query);

const idsOf = (resources: Resource[], type: string) => resources.filter((r) => r.resourceType === type).map((r) => r.id!).sort();

describe('system export', () => {
  it('round-trips: the NDJSON holds every stored resource exactly once, equal to what is stored', async () => {
    const manifest = await exportManifest(t, '/fhir/$export');
    const exported = await downloadAll(t, manifest);
    const db = await stored();
    expect(exported.length).toBe(db.size);
    const seen = new Set<string>();
    for (const resource of exported) {
      const key = `${resource.resourceType}/${resource.id}`;
      expect(seen.has(key), `${key} twice`).toBe(false);
      seen.add(key);
      expect(resource).toEqual(db.get(key));
    }
    // Synthea's variety arrives: patients, their records, and the shared practitioners.
    const types = new Set(manifest.output.map((o) => o.type));
    for (const type of ['Patient', 'Observation', 'Encounter', 'Claim', 'ExplanationOfBenefit', 'Practitioner', 'Organization', 'Location']) expect(types).toContain(type);
  });

  it('_type restricts the export to the listed types', async () => {
    const manifest = await exportManifest(t, '/fhir/$export?_type=Patient,Condition');
    expect(manifest.output.map((o) => o.type).sort()).toEqual(['Condition', 'Patient']);
    const exported = await downloadAll(t, manifest);
    const db = [...(await stored()).values()];
    expect(idsOf(exported, 'Patient')).toEqual(idsOf(db, 'Patient'));
    expect(idsOf(exported, 'Condition')).toEqual(idsOf(db, 'Condition'));
  });

  it('_since returns only what changed after it', async () => {
    const since = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    const [observation] = (await downloadAll(t, await exportManifest(t, '/fhir/$export?_type=Observation'))) as Observation[];
    await t.request({ method: 'PUT', url: `/fhir/Observation/${observation!.id}`, payload: { ...observation, status: 'amended' } });
    const patientId = idsOf([...(await stored()).values()], 'Patient')[0]!;
    const condition: Condition = { resourceType: 'Condition', subject: { reference: `Patient/${patientId}` }, code: { text: 'since test' } };
    const created = (await t.request({ method: 'POST', url: '/fhir/Condition', payload: condition })).json() as Condition;
    const exported = await downloadAll(t, await exportManifest(t, `/fhir/$export?_since=${encodeURIComponent(since)}`));
    expect(exported.map((r) => `${r.resourceType}/${r.id}`).sort()).toEqual([`Condition/${created.id}`, `Observation/${observation!.id}`].sort());
    expect((exported.find((r) => r.resourceType === 'Observation') as Observation).status).toBe('amended');
  });

  it('_typeFilter keeps the resources its searches match (several filters of a type are ORed)', async () => {
    const filter = encodeURIComponent(`Observation?code=${HEIGHT}`);
    const heights = await downloadAll(t, await exportManifest(t, `/fhir/$export?_type=Observation,Patient&_typeFilter=${filter}`));
    const expected = await searchIds(`Observation?code=${encodeURIComponent(HEIGHT)}`);
    expect(expected.length).toBeGreaterThan(PATIENTS);
    expect(idsOf(heights, 'Observation')).toEqual(expected);
    expect(idsOf(heights, 'Patient').length).toBe(PATIENTS);

    const both = `${filter},${encodeURIComponent(`Observation?code=${WEIGHT}`)}`;
    const either = await downloadAll(t, await exportManifest(t, `/fhir/$export?_type=Observation&_typeFilter=${both}`));
    expect(idsOf(either, 'Observation')).toEqual((await searchIds(`Observation?code=${encodeURIComponent(`${HEIGHT},${WEIGHT}`)}`)));
  });

  it('_typeFilter with an unknown search parameter is 400, or ignored with a warning under handling=lenient', async () => {
    const filter = encodeURIComponent('Patient?status=active');
    expect((await kickOff(t, `/fhir/$export?_type=Patient&_typeFilter=${filter}`)).statusCode).toBe(400);
    expect((await kickOff(t, `/fhir/$export?_type=Patient&_typeFilter=${encodeURIComponent('Patient?_count=1')}`)).statusCode).toBe(400);
    const manifest = await exportManifest(t, `/fhir/$export?_type=Patient&_typeFilter=${filter}`, { headers: { prefer: 'respond-async, handling=lenient' } });
    expect(manifest.output).toEqual([expect.objectContaining({ type: 'Patient', count: PATIENTS })]);
    expect(manifest.error).toEqual([expect.objectContaining({ type: 'OperationOutcome', count: 1 })]);
    const [outcome] = await downloadAll(t, manifest, 'error');
    expect(JSON.stringify(outcome)).toContain('status');
  });
});

describe('Patient and Group level export', () => {
  it('Patient/$export exports the Patient compartment of every patient and nothing outside it', async () => {
    const manifest = await exportManifest(t, '/fhir/Patient/$export');
    const allowed = new Set(compartmentTypes(patientCompartment()));
    for (const o of manifest.output) expect(allowed.has(o.type), o.type).toBe(true);
    const types = manifest.output.map((o) => o.type);
    for (const type of ['Practitioner', 'Organization', 'Location', 'PractitionerRole']) expect(types).not.toContain(type);
    const exported = await downloadAll(t, manifest);
    const db = [...(await stored()).values()];
    expect(idsOf(exported, 'Patient')).toEqual(idsOf(db, 'Patient'));
    // every Synthea clinical resource belongs to a patient
    for (const type of ['Observation', 'Encounter', 'Condition', 'Claim']) expect(idsOf(exported, type)).toEqual(idsOf(db, type));
  });

  it('Group/[id]/$export exports the compartments of the active member patients only', async () => {
    const patientIds = idsOf([...(await stored()).values()], 'Patient');
    const group: Group = {
      resourceType: 'Group',
      type: 'person',
      actual: true,
      member: [{ entity: { reference: `Patient/${patientIds[0]}` } }, { entity: { reference: `Patient/${patientIds[1]}` }, inactive: true }],
    };
    const groupId = ((await t.request({ method: 'POST', url: '/fhir/Group', payload: group })).json() as Group).id!;
    const exported = await downloadAll(t, await exportManifest(t, `/fhir/Group/${groupId}/$export?_type=Patient,Observation,Encounter`));
    expect(idsOf(exported, 'Patient')).toEqual([patientIds[0]]);
    expect(idsOf(exported, 'Observation')).toEqual(await searchIds(`Observation?subject=Patient/${patientIds[0]}`));
    expect(idsOf(exported, 'Encounter')).toEqual(await searchIds(`Encounter?subject=Patient/${patientIds[0]}`));
    for (const o of exported.filter((r) => r.resourceType === 'Observation') as Observation[]) expect(o.subject?.reference).toBe(`Patient/${patientIds[0]}`);

    // the `patient` parameter (POST) narrows a Patient-level export the same way
    const narrowed = await downloadAll(
      t,
      await exportManifest(t, '/fhir/Patient/$export', {
        method: 'POST',
        payload: { resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Patient' }, { name: 'patient', valueReference: { reference: `Patient/${patientIds[2]}` } }] },
      }),
    );
    expect(idsOf(narrowed, 'Patient')).toEqual([patientIds[2]]);
  });

  it('Group export of a group without members completes with no files', async () => {
    const groupId = ((await t.request({ method: 'POST', url: '/fhir/Group', payload: { resourceType: 'Group', type: 'person', actual: true } })).json() as Patient).id!;
    const manifest = await exportManifest(t, `/fhir/Group/${groupId}/$export`);
    expect(manifest.output).toEqual([]);
  });
});
