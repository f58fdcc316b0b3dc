import type { Bundle, Composition, FhirResource, OperationOutcome, Resource } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * `Composition/$document` (src/operations/document.ts, https://hl7.org/fhir/R4/composition-operation-document.html):
 * a discharge summary stored as a Composition comes back as a document Bundle with what it references.
 */

let t: TestApp;
const ids: Record<string, string> = {};
const BASE = 'http://localhost:8080/fhir';

async function create(resource: FhirResource): Promise<string> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as Resource).id!;
}

beforeAll(async () => {
  t = await startTestApp();
  ids.org = await create({ resourceType: 'Organization', name: 'General Hospital' });
  ids.otherOrg = await create({ resourceType: 'Organization', name: 'Three hops away' });
  ids.patient = await create({ resourceType: 'Patient', name: [{ family: 'Document' }], managingOrganization: { reference: `Organization/${ids.org}` } });
  ids.doctor = await create({ resourceType: 'Practitioner', name: [{ family: 'Author' }] });
  ids.role = await create({ resourceType: 'PractitionerRole', practitioner: { reference: `Practitioner/${ids.doctor}` }, organization: { reference: `Organization/${ids.otherOrg}` } });
  ids.encounter = await create({ resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' }, subject: { reference: `Patient/${ids.patient}` } });
  ids.obs = await create({
    resourceType: 'Observation', status: 'final', code: { text: 'Haemoglobin' }, subject: { reference: `Patient/${ids.patient}` },
    performer: [{ reference: `PractitionerRole/${ids.role}` }], valueQuantity: { value: 13.1, unit: 'g/dL' },
  });
  ids.condition = await create({ resourceType: 'Condition', subject: { reference: `Patient/${ids.patient}` }, code: { text: 'Pneumonia' } });
  // The Observation changes after the summary pinned its first version.
  const updated = await t.request({ method: 'PUT', url: `/fhir/Observation/${ids.obs}`, payload: { resourceType: 'Observation', id: ids.obs, status: 'amended', code: { text: 'Haemoglobin' }, subject: { reference: `Patient/${ids.patient}` }, valueQuantity: { value: 12.9, unit: 'g/dL' } } });
  expect(updated.statusCode).toBe(200);
  ids.composition = await create({
    resourceType: 'Composition',
    status: 'final',
    type: { coding: [{ system: 'http://loinc.org', code: '18842-5', display: 'Discharge summary' }] },
    subject: { reference: `Patient/${ids.patient}` },
    encounter: { reference: `${BASE}/Encounter/${ids.encounter}` },
    date: '2026-12-05T10:00:00Z',
    author: [{ reference: `Practitioner/${ids.doctor}` }],
    title: 'Discharge summary',
    custodian: { reference: `Organization/${ids.org}` },
    section: [
      { title: 'Results', text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Hb 13.1</div>' }, entry: [{ reference: `Observation/${ids.obs}/_history/1` }] },
      { title: 'Problems', section: [{ title: 'Active', entry: [{ reference: `Condition/${ids.condition}` }, { reference: 'Condition/not-stored' }, { reference: 'http://elsewhere.example.org/fhir/Condition/9' }] }] },
    ],
  } as Composition);
});
afterAll(async () => {
  await t?.close();
});

const keys = (b: Bundle) => (b.entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`);

describe('Composition/$document', () => {
  it('answers a document Bundle: the Composition first, what it references, and what those reference', async () => {
    const res = await t.request({ method: 'GET', url: `/fhir/Composition/${ids.composition}/$document` });
    expect(res.statusCode, res.body).toBe(200);
    const doc = res.json() as Bundle;
    expect(doc.type).toBe('document');
    expect(doc.identifier?.system).toBe('urn:ietf:rfc:3986');
    expect(doc.identifier?.value).toMatch(/^urn:uuid:[0-9a-f-]{36}$/);
    expect(Date.parse(doc.timestamp!)).toBeGreaterThan(Date.now() - 60_000);
    expect(keys(doc)[0]).toBe(`Composition/${ids.composition}`);
    expect(new Set(keys(doc))).toEqual(new Set([
      `Composition/${ids.composition}`, `Patient/${ids.patient}`, `Encounter/${ids.encounter}`, `Practitioner/${ids.doctor}`,
      `Organization/${ids.org}`, `Observation/${ids.obs}`, `Condition/${ids.condition}`,
      // second level: the Observation's performer (the role's own organisation is a third level: not included)
      `PractitionerRole/${ids.role}`,
    ]));
    expect(keys(doc)).toHaveLength(new Set(keys(doc)).size);
    for (const e of doc.entry ?? []) expect(e.fullUrl).toBe(`${BASE}/${e.resource?.resourceType}/${e.resource?.id}`);
    // The versioned reference took version 1, not the amended current version.
    const obs = doc.entry?.find((e) => e.resource?.resourceType === 'Observation')?.resource;
    expect(obs?.meta?.versionId).toBe('1');
    expect((obs as { status?: string }).status).toBe('final');
    // Each call is a new document.
    const again = (await t.request({ method: 'GET', url: `/fhir/Composition/${ids.composition}/$document` })).json() as Bundle;
    expect(again.identifier?.value).not.toBe(doc.identifier?.value);
  });

  it('is a valid R4 document (bdl invariants) by the server’s own $validate', async () => {
    const doc = (await t.request({ method: 'GET', url: `/fhir/Composition/${ids.composition}/$document` })).json() as Bundle;
    const res = await t.request({ method: 'POST', url: '/fhir/Bundle/$validate', payload: doc });
    const outcome = res.json() as OperationOutcome;
    expect(outcome.issue.filter((i) => i.severity === 'error' || i.severity === 'fatal'), JSON.stringify(outcome)).toEqual([]);
    // The check has teeth: the same document without its identifier breaks bdl-9.
    const { identifier: _dropped, ...withoutIdentifier } = doc;
    void _dropped;
    const broken = (await t.request({ method: 'POST', url: '/fhir/Bundle/$validate', payload: withoutIdentifier })).json() as OperationOutcome;
    expect(JSON.stringify(broken.issue.filter((i) => i.severity === 'error'))).toMatch(/bdl-9/);
  });

  it('takes the id as a parameter at type level, by GET or by POST Parameters, also as this server’s full URL', async () => {
    const byQuery = (await t.request({ method: 'GET', url: `/fhir/Composition/$document?id=${ids.composition}` })).json() as Bundle;
    expect(keys(byQuery)[0]).toBe(`Composition/${ids.composition}`);
    const byPost = await t.request({ method: 'POST', url: '/fhir/Composition/$document', payload: { resourceType: 'Parameters', parameter: [{ name: 'id', valueUri: `${BASE}/Composition/${ids.composition}` }] } });
    expect(byPost.statusCode, byPost.body).toBe(200);
    expect(keys(byPost.json() as Bundle)).toHaveLength(8);
  });

  it('leaves out what the caller may not read', async () => {
    const token = await t.tokenFor('system/Composition.rs system/Patient.rs');
    const res = await t.request({ method: 'GET', url: `/fhir/Composition/${ids.composition}/$document`, headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode, res.body).toBe(200);
    expect(new Set(keys(res.json() as Bundle))).toEqual(new Set([`Composition/${ids.composition}`, `Patient/${ids.patient}`]));
    const noComposition = await t.tokenFor('system/Patient.rs');
    expect((await t.request({ method: 'GET', url: `/fhir/Composition/${ids.composition}/$document`, headers: { authorization: `Bearer ${noComposition}` } })).statusCode).toBe(403);
  });

  it('persist=true stores the document as a Bundle and says where', async () => {
    const res = await t.request({ method: 'GET', url: `/fhir/Composition/${ids.composition}/$document?persist=true` });
    expect(res.statusCode, res.body).toBe(200);
    const location = String(res.headers.location);
    expect(location).toMatch(/\/Bundle\/[A-Za-z0-9\-.]+\/_history\/1$/);
    const doc = res.json() as Bundle;
    const stored = (await t.request({ method: 'GET', url: `/fhir/Bundle/${doc.id}` })).json() as Bundle;
    expect(stored.type).toBe('document');
    expect(stored.identifier).toEqual(doc.identifier);
    expect(keys(stored)).toEqual(keys(doc));
    // Storing needs create rights on Bundle.
    const reader = await t.tokenFor('system/*.rs');
    expect((await t.request({ method: 'GET', url: `/fhir/Composition/${ids.composition}/$document?persist=true`, headers: { authorization: `Bearer ${reader}` } })).statusCode).toBe(403);
  });

  it('refuses what it cannot do with a 4xx OperationOutcome', async () => {
    const cases: Array<[string, string, unknown, number]> = [
      ['GET', `/fhir/Composition/${ids.composition}/$document?graph=http://example.org/GraphDefinition/x`, undefined, 400],
      ['GET', `/fhir/Composition/${ids.composition}/$document?colour=blue`, undefined, 400],
      ['GET', `/fhir/Composition/${ids.composition}/$document?persist=maybe`, undefined, 400],
      ['GET', `/fhir/Composition/${ids.composition}/$document?id=${ids.composition}`, undefined, 400],
      ['GET', '/fhir/Composition/$document', undefined, 400],
      ['GET', '/fhir/Composition/$document?id=http://elsewhere.example.org/fhir/Composition/1', undefined, 400],
      ['GET', '/fhir/Composition/$document?id=not%20an%20id', undefined, 400],
      ['GET', '/fhir/Composition/no-such-composition/$document', undefined, 404],
      ['POST', '/fhir/Composition/$document', { resourceType: 'Patient' }, 400],
    ];
    for (const [method, url, payload, status] of cases) {
      const res = await t.request({ method: method as 'GET', url, ...(payload ? { payload: payload as object } : {}) });
      expect(res.statusCode, `${method} ${url}: ${res.body}`).toBe(status);
      expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
  });

  it('is declared in the CapabilityStatement', async () => {
    const cs = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as { rest: Array<{ resource: Array<{ type: string; operation?: Array<{ name: string }> }> }> };
    expect(cs.rest[0]!.resource.find((r) => r.type === 'Composition')?.operation?.map((o) => o.name)).toContain('document');
  });
});
