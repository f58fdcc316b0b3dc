import type { Bundle, Encounter, Observation, Patient } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

const MRN = 'http://hospital.example/mrn';

async function count(type: string, query: string): Promise<number> {
  const res = await t.request({ method: 'GET', url: `/fhir/${type}?${query}&_summary=count` });
  expect(res.statusCode).toBe(200);
  return (res.json() as Bundle).total ?? -1;
}

describe('transaction (R4 http.html#transaction)', () => {
  it('resolves urn:uuid fullUrls everywhere: references, contained resources, extensions', async () => {
    const patientUrl = 'urn:uuid:7f8d1c1e-0000-4000-8000-000000000001';
    const encounterUrl = 'urn:uuid:7f8d1c1e-0000-4000-8000-000000000002';
    const value = `tx-${Date.now()}`;
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: encounterUrl,
          resource: { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: patientUrl } },
          request: { method: 'POST', url: 'Encounter' },
        },
        {
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { text: 'note' },
            subject: { reference: patientUrl },
            encounter: { reference: encounterUrl },
            // A contained resource has an id and is referenced from its container (dom-3).
            contained: [{ resourceType: 'Provenance', id: 'prov', target: [{ reference: patientUrl }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { display: 'x' } }] }],
            extension: [{ url: 'http://hospital.example/ext/about', valueReference: { reference: patientUrl } }, { url: 'http://hospital.example/ext/provenance', valueReference: { reference: '#prov' } }],
          } as Observation,
          request: { method: 'POST', url: 'Observation' },
        },
        { fullUrl: patientUrl, resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient' } },
      ],
    };
    const res = await t.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode).toBe(200);
    const response = res.json() as Bundle;
    expect(response.type).toBe('transaction-response');
    expect(response.entry?.map((e) => e.response?.status)).toEqual(['201 Created', '201 Created', '201 Created']);
    const [encounterLoc, observationLoc, patientLoc] = response.entry!.map((e) => e.response!.location!);
    const patientRef = patientLoc.split('/_history')[0];
    const encounterRef = encounterLoc.split('/_history')[0];
    const observation = (await t.request({ method: 'GET', url: `/fhir/${observationLoc.split('/_history')[0]}` })).json() as Observation;
    expect(observation.subject?.reference).toBe(patientRef);
    expect(observation.encounter?.reference).toBe(encounterRef);
    expect((observation.contained?.[0] as { target: Array<{ reference: string }> }).target[0].reference).toBe(patientRef);
    expect(observation.extension?.[0].valueReference?.reference).toBe(patientRef);
    const encounter = (await t.request({ method: 'GET', url: `/fhir/${encounterRef}` })).json() as Encounter;
    expect(encounter.subject?.reference).toBe(patientRef);
  });

  it('is all or nothing: a failure in the last entry leaves nothing behind', async () => {
    const value = `atomic-${Date.now()}`;
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:aaaaaaaa-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }], gender: 'robot' } as unknown as Patient, request: { method: 'POST', url: 'Patient' } },
      ],
    };
    const res = await t.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode).toBe(422);
    const outcome = res.json();
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(outcome)).toContain('Bundle.entry[1]');
    expect(await count('Patient', `identifier=${encodeURIComponent(`${MRN}|${value}`)}`)).toBe(0);
  });

  it('resolves conditional references; an ambiguous one fails the transaction with 412', async () => {
    const value = `cref-${Date.now()}`;
    const created = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', identifier: [{ system: MRN, value }] } });
    const id = created.json().id as string;
    const ok = await t.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?identifier=${MRN}|${value}` } }, request: { method: 'POST', url: 'Observation' } }],
      },
    });
    expect(ok.statusCode).toBe(200);
    const location = (ok.json() as Bundle).entry![0].response!.location!;
    const obs = (await t.request({ method: 'GET', url: `/fhir/${location.split('/_history')[0]}` })).json() as Observation;
    expect(obs.subject?.reference).toBe(`Patient/${id}`);

    await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', identifier: [{ system: MRN, value }] } });
    const ambiguous = await t.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?identifier=${MRN}|${value}` } }, request: { method: 'POST', url: 'Observation' } }],
      },
    });
    expect(ambiguous.statusCode).toBe(412);
  });

  it('processes DELETE before POST before PUT, and answers entries in request order', async () => {
    const victim = (await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', active: true } })).json() as Patient;
    const res = await t.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: { resourceType: 'Patient', id: 'tx-put-1', active: false }, request: { method: 'PUT', url: 'Patient/tx-put-1' } },
          { resource: { resourceType: 'Patient', active: true }, request: { method: 'POST', url: 'Patient' } },
          { request: { method: 'DELETE', url: `Patient/${victim.id}` } },
          { request: { method: 'GET', url: 'Patient/tx-put-1' } },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    const entries = (res.json() as Bundle).entry!;
    expect(entries.map((e) => e.response?.status)).toEqual(['201 Created', '201 Created', '204 No Content', '200 OK']);
    expect((entries[3].resource as Patient).active).toBe(false);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${victim.id}` })).statusCode).toBe(410);
  });

  it('two racing transactions with the same conditional create produce one resource', async () => {
    const value = `txrace-${Date.now()}`;
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${MRN}|${value}` } }],
    };
    const results = await Promise.all(Array.from({ length: 5 }, () => t.request({ method: 'POST', url: '/fhir', payload: bundle })));
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    expect(await count('Patient', `identifier=${encodeURIComponent(`${MRN}|${value}`)}`)).toBe(1);
  });

  it('racing updates with If-Match: exactly one wins, the others get 412', async () => {
    const p = (await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', active: true } })).json() as Patient;
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        t.request({
          method: 'POST',
          url: '/fhir',
          payload: { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { ...p, gender: i % 2 ? 'male' : 'female' }, request: { method: 'PUT', url: `Patient/${p.id}`, ifMatch: 'W/"1"' } }] },
        }),
      ),
    );
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 412, 412, 412, 412]);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${p.id}` })).json().meta.versionId).toBe('2');
  });
});

describe('batch (R4 http.html#transaction)', () => {
  it('runs every entry on its own and reports each outcome', async () => {
    const res = await t.request({
      method: 'POST',
      url: '/fhir',
      payload: {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { resource: { resourceType: 'Patient', active: true }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Patient', gender: 'robot' }, request: { method: 'POST', url: 'Patient' } },
          { request: { method: 'GET', url: 'Patient/does-not-exist' } },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    const entries = (res.json() as Bundle).entry!;
    expect(res.json().type).toBe('batch-response');
    expect(entries[0].response?.status).toBe('201 Created');
    expect(entries[1].response?.status).toBe('422');
    expect(entries[1].response?.outcome?.resourceType).toBe('OperationOutcome');
    expect(entries[2].response?.status).toBe('404');
  });

  it('refuses a Bundle that is not a batch or transaction', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir', payload: { resourceType: 'Bundle', type: 'collection' } });
    expect(res.statusCode).toBe(400);
  });
});
