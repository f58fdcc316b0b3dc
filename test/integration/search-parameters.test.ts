import type { Bundle, CapabilityStatement, Parameters } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

const sp = (url: string, expression: string) => ({
  resourceType: 'SearchParameter',
  url,
  name: 'mothers-maiden-name',
  status: 'active',
  description: 'Patient by mother’s maiden name extension',
  code: 'mothers-maiden-name',
  base: ['Patient'],
  type: 'string',
  expression,
});
const EXT = 'http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName';

describe('SearchParameters created at run time (R4 searchparameter.html)', () => {
  it('an existing resource becomes searchable by the new parameter after the background reindex', async () => {
    const patientParams = async () =>
      ((await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement).rest![0]!.resource!.find((r) => r.type === 'Patient')!.searchParam!.map((p) => p.name);
    // The CapabilityStatement was built before the parameter existed…
    expect(await patientParams()).not.toContain('mothers-maiden-name');
    const before = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', extension: [{ url: EXT, valueString: 'Öberg' }] } });
    expect(before.statusCode).toBe(201);
    const created = await t.request({ method: 'POST', url: '/fhir/SearchParameter', payload: sp('http://hospital.example/sp/mmn', `Patient.extension('${EXT}').value`) });
    expect(created.statusCode).toBe(201);
    // Until the reindex is done the parameter is refused with a clear message, never half-answered.
    const early = await t.request({ method: 'GET', url: '/fhir/Patient?mothers-maiden-name=oberg', headers: { prefer: 'handling=strict' } });
    if (early.statusCode !== 200) {
      expect(early.statusCode).toBe(400);
      expect(early.body).toContain('mothers-maiden-name');
    }
    await t.server.searchParameters.idle();
    const status = (await t.request({ method: 'GET', url: '/fhir/SearchParameter/$reindex-status' })).json() as Parameters;
    const mine = status.parameter?.find((p) => p.part?.some((x) => x.valueUri === 'http://hospital.example/sp/mmn'));
    expect(mine?.part?.find((x) => x.name === 'state')?.valueCode).toBe('ready');
    // …and declares it once it is ready.
    expect(await patientParams()).toContain('mothers-maiden-name');
    const foundRes = await t.request({ method: 'GET', url: '/fhir/Patient?mothers-maiden-name=oberg' });
    const found = foundRes.json() as Bundle;
    if (!found.entry) console.log(foundRes.body.slice(0, 600));
    expect(found.entry?.map((e) => e.resource?.id)).toEqual([before.json().id]);
    // New writes are indexed directly.
    const after = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', extension: [{ url: EXT, valueString: 'Oberg-Smith' }] } });
    const both = (await t.request({ method: 'GET', url: '/fhir/Patient?mothers-maiden-name=oberg' })).json() as Bundle;
    expect(both.entry?.map((e) => e.resource?.id).sort()).toEqual([before.json().id, after.json().id].sort());
  });

  it('a SearchParameter whose expression cannot be used is refused with 422', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/SearchParameter', payload: sp('http://hospital.example/sp/broken', 'Patient.name.where(((') });
    expect(res.statusCode).toBe(422);
    expect(res.json().issue[0].expression).toEqual(['SearchParameter.expression']);
  });
});
