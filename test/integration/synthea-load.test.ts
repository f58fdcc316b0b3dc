/**
 * The whole Synthea set (shared/data/synthea: 2 batch Bundles of organisations, locations,
 * practitioners and roles with ifNoneExist, then 120 patient transactions with urn:uuid
 * fullUrls and conditional references) POSTed to /fhir as a client would.
 *
 * On PostgreSQL (DATABASE_URL) all 120 patients are loaded. On the embedded database the two
 * batch Bundles and the first 40 patient Bundles (by file name; about a third of the 92,114
 * entries) are loaded, to keep the test near a minute on a 2-core CI machine; set
 * SYNTHEA_PATIENTS=120 to load everything there too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countByType, danglingIndexedReferences, danglingReferences } from '../../src/storage/import-checks.js';
import { SHARED_DATA, startTestApp, type TestApp } from '../support/test-app.js';

const DIR = join(SHARED_DATA, 'synthea');
const PATIENTS = Number(process.env.SYNTHEA_PATIENTS ?? (process.env.DATABASE_URL ? 120 : 40));

const files = readdirSync(DIR).filter((f) => f.endsWith('.json.gz')).sort();
const batches = files.filter((f) => f.startsWith('0-'));
const patients = files.filter((f) => !f.startsWith('0-')).slice(0, PATIENTS);

function load(file: string): string {
  return gunzipSync(readFileSync(join(DIR, file))).toString('utf8');
}

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe(`Synthea: 2 batch + ${patients.length} transaction Bundles POSTed to /fhir`, () => {
  const expected = new Map<string, number>();
  const expect201 = async (file: string, type: 'batch' | 'transaction') => {
    const text = load(file);
    const bundle = JSON.parse(text) as Bundle;
    expect(bundle.type).toBe(type);
    for (const e of bundle.entry ?? []) {
      const rt = e.resource!.resourceType;
      expected.set(rt, (expected.get(rt) ?? 0) + 1);
    }
    const res = await t.request({ method: 'POST', url: '/fhir', payload: text, headers: { prefer: 'return=minimal' } });
    expect(res.statusCode, `${file}: ${res.body.slice(0, 500)}`).toBe(200);
    const statuses = new Set(((res.json() as Bundle).entry ?? []).map((e) => e.response?.status));
    expect([...statuses], file).toEqual(['201 Created']);
  };

  it('loads every Bundle: each entry is created', { timeout: 900_000 }, async () => {
    for (const file of batches) await expect201(file, 'batch');
    for (const file of patients) await expect201(file, 'transaction');
    // 92,114 entries in the whole set (MANIFEST.tsv)
    if (patients.length === 120) expect([...expected.values()].reduce((a, b) => a + b, 0)).toBe(92_114);
  });

  it('stores exactly the resources of the input, per type', async () => {
    const stored = await countByType(t.server.database.db);
    // The prescribing rule (FR-EMR-003) records what it finds in the loaded prescriptions —
    // Synthea repeats active orders of one drug, a duplicate therapy — as DetectedIssues.
    const derived = stored.get('DetectedIssue') ?? 0;
    stored.delete('DetectedIssue');
    expect(Object.fromEntries([...stored].sort())).toEqual(Object.fromEntries([...expected].sort()));
    if (derived > 0) {
      const issues = await t.request({ method: 'GET', url: '/fhir/DetectedIssue?_count=200' });
      for (const e of (issues.json() as Bundle).entry ?? []) {
        expect(JSON.stringify((e.resource as { implicated?: unknown }).implicated)).toContain('MedicationRequest/');
      }
    }
    for (const type of ['Patient', 'Observation', 'Practitioner', 'Organization']) {
      const res = await t.request({ method: 'GET', url: `/fhir/${type}?_summary=count` });
      expect((res.json() as Bundle).total, type).toBe(expected.get(type));
    }
  });

  it('resolves every reference: urn:uuid fullUrls and conditional references were rewritten to stored resources', { timeout: 300_000 }, async () => {
    const db = t.server.database.db;
    expect(await danglingIndexedReferences(db)).toEqual([]);
    expect(await danglingReferences(db, { serverBase: 'http://localhost:8080/fhir' })).toEqual([]);
    // The conditional references found their targets: every encounter's participant is one
    // of the practitioners of the batch Bundle (chained search on the NPI system).
    const npi = encodeURIComponent('http://hl7.org/fhir/sid/us-npi|');
    const res = await t.request({ method: 'GET', url: `/fhir/Encounter?participant:Practitioner.identifier=${npi}&_summary=count` });
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    expect((res.json() as Bundle).total).toBe(expected.get('Encounter'));
  });

  it('loading the batch Bundles again creates no Organization, Location or Practitioner (ifNoneExist matches)', { timeout: 120_000 }, async () => {
    for (const file of batches) {
      const text = load(file);
      const res = await t.request({ method: 'POST', url: '/fhir', payload: text, headers: { prefer: 'return=minimal' } });
      expect(res.statusCode).toBe(200);
      const requests = (JSON.parse(text) as Bundle).entry!.map((e) => e.request!);
      const answers = (res.json() as Bundle).entry!.map((e) => e.response!.status);
      // Synthea gives ifNoneExist to Organization, Location and Practitioner, not PractitionerRole.
      expect(answers).toEqual(requests.map((r) => (r.ifNoneExist ? '200 OK' : '201 Created')));
    }
    const stored = await countByType(t.server.database.db);
    for (const type of ['Organization', 'Location', 'Practitioner']) expect(stored.get(type), type).toBe(expected.get(type));
  });
});
