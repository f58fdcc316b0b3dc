import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle, CapabilityStatement, OperationOutcome, Patient } from 'fhir/r4.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xmlToResource } from '../../src/fhir/xml/from-xml.js';
import { resourceToXml } from '../../src/fhir/xml/to-xml.js';
import { sharedDataDir } from '../support/shared-data.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * FHIR XML over the REST API (src/http/fhir-formats.ts): XML bodies in, XML answers out when
 * `_format` or Accept ask for it, JSON stays the default, and bad XML is a 400 OperationOutcome
 * that writes nothing.
 */

let t: TestApp;
const XML = 'application/fhir+xml';

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

const PATIENT = `<Patient xmlns="http://hl7.org/fhir">
  <identifier><system value="urn:test:xml"/><value value="XML-1"/></identifier>
  <name><family value="Ngata"/><given value="Aroha"/></name>
  <gender value="female"/>
  <birthDate value="1980-02-29"><extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime"><valueDateTime value="1980-02-29T06:10:00+13:00"/></extension></birthDate>
</Patient>`;

function fromXml<T>(body: string): T {
  return xmlToResource(body) as T;
}

describe('FHIR XML on the REST API', () => {
  let id = '';

  it('creates from an XML body and reads back the same resource as JSON and as XML', async () => {
    const created = await t.request({ method: 'POST', url: '/fhir/Patient', payload: PATIENT, headers: { 'content-type': `${XML}; charset=utf-8`, accept: XML } });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.headers['content-type']).toBe('application/fhir+xml; charset=utf-8');
    const echoed = fromXml<Patient>(created.body);
    id = echoed.id!;
    expect(echoed.name).toEqual([{ family: 'Ngata', given: ['Aroha'] }]);

    const json = (await t.request({ method: 'GET', url: `/fhir/Patient/${id}` })).json() as Patient;
    expect(json).toMatchObject({
      resourceType: 'Patient',
      gender: 'female',
      birthDate: '1980-02-29',
      _birthDate: { extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthTime', valueDateTime: '1980-02-29T06:10:00+13:00' }] },
    });

    for (const request of [{ url: `/fhir/Patient/${id}?_format=xml` }, { url: `/fhir/Patient/${id}?_format=application/fhir%2Bxml` }, { url: `/fhir/Patient/${id}`, headers: { accept: XML } }]) {
      const res = await t.request({ method: 'GET', ...request });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/fhir+xml; charset=utf-8');
      expect(res.body.startsWith('<Patient xmlns="http://hl7.org/fhir"><id value=')).toBe(true);
      expect(fromXml(res.body)).toEqual(json);
      expect(res.headers.etag).toBe(`W/"${json.meta!.versionId}"`);
    }
  });

  it('keeps JSON the default and follows the Accept ranking; _format wins over Accept', async () => {
    const read = (headers: Record<string, string>, query = '') => t.request({ method: 'GET', url: `/fhir/Patient/${id}${query}`, headers });
    const plain = await read({});
    expect(plain.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(String(plain.headers.vary)).toMatch(/\bAccept\b/);
    expect((await read({ accept: '*/*' })).headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect((await read({ accept: 'application/fhir+json;q=0.8, application/fhir+xml' })).headers['content-type']).toMatch(/^application\/fhir\+xml/);
    expect((await read({ accept: 'application/fhir+xml;q=0.5, application/fhir+json' })).headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect((await read({ accept: 'application/xml' })).headers['content-type']).toMatch(/^application\/fhir\+xml/);
    // A browser's navigation names application/xml beside text/html: it gets JSON.
    expect((await read({ accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' })).headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect((await read({ accept: XML }, '?_format=json')).headers['content-type']).toMatch(/^application\/fhir\+json/);
    const pretty = await read({}, '?_format=xml&_pretty=true');
    expect(pretty.body).toContain('\n  <id value=');
  });

  it('answers searches as XML Bundles, and the CapabilityStatement names both formats', async () => {
    const res = await t.request({ method: 'GET', url: '/fhir/Patient?identifier=urn:test:xml|XML-1&_format=xml' });
    expect(res.statusCode).toBe(200);
    const bundle = fromXml<Bundle>(res.body);
    expect(bundle.type).toBe('searchset');
    expect(bundle.entry?.map((e) => e.resource?.id)).toEqual([id]);

    // POST _search carries _format in its form body.
    const posted = await t.request({ method: 'POST', url: '/fhir/Patient/_search', payload: 'identifier=urn:test:xml|XML-1&_format=xml', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(posted.headers['content-type']).toMatch(/^application\/fhir\+xml/);
    expect(fromXml<Bundle>(posted.body).entry?.map((e) => e.resource?.id)).toEqual([id]);

    const metadata = await t.request({ method: 'GET', url: '/fhir/metadata', headers: { accept: XML } });
    expect(metadata.headers['content-type']).toMatch(/^application\/fhir\+xml/);
    expect(fromXml<CapabilityStatement>(metadata.body).format).toEqual(expect.arrayContaining(['application/fhir+json', 'application/fhir+xml', 'xml']));
  });

  it('loads a Synthea patient sent as an XML transaction Bundle (conditional references included), as the same Bundle in JSON would', async () => {
    const dir = join(sharedDataDir, 'synthea');
    const bundleOf = (name: string) => JSON.parse(gunzipSync(readFileSync(join(dir, name))).toString('utf8')) as Bundle;
    const names = readdirSync(dir).filter((f) => f.endsWith('.json.gz'));
    // The practitioners and hospitals the patients' bundles refer to by identifier, first (JSON).
    for (const name of names.filter((f) => f.startsWith('0-'))) {
      expect((await t.request({ method: 'POST', url: '/fhir', payload: bundleOf(name) })).statusCode).toBe(200);
    }
    const patientBundle = bundleOf(names.filter((f) => !f.startsWith('0-')).sort()[0]!);
    const xml = resourceToXml(patientBundle as unknown as Record<string, unknown>);
    const res = await t.request({ method: 'POST', url: '/fhir', payload: xml, headers: { 'content-type': XML, accept: XML } });
    expect(res.statusCode, res.body.slice(0, 500)).toBe(200);
    const response = fromXml<Bundle>(res.body);
    expect(response.type).toBe('transaction-response');
    expect(response.entry).toHaveLength(patientBundle.entry!.length);
    expect(response.entry!.every((e) => e.response?.status.startsWith('201'))).toBe(true);
    // What was stored is what the JSON says, references resolved to the stored practitioners.
    const patientId = response.entry!.find((e) => e.response?.location?.startsWith('Patient/'))!.response!.location!.split('/')[1];
    const sourcePatient = patientBundle.entry!.find((e) => e.resource?.resourceType === 'Patient')!.resource as Patient;
    const stored = (await t.request({ method: 'GET', url: `/fhir/Patient/${patientId}` })).json() as Patient;
    expect(stored.name).toEqual(sourcePatient.name);
    expect(stored.text?.div).toBe(sourcePatient.text?.div);
    const encounters = (await t.request({ method: 'GET', url: `/fhir/Encounter?subject=Patient/${patientId}&_count=1&_total=accurate` })).json() as Bundle;
    expect(encounters.total).toBe(patientBundle.entry!.filter((e) => e.resource?.resourceType === 'Encounter').length);
    const participant = (encounters.entry![0]!.resource as { participant?: Array<{ individual?: { reference?: string } }> }).participant?.[0]?.individual?.reference;
    expect(participant).toMatch(/^Practitioner\/[^?]+$/);
  });

  it('validates an XML resource with $validate, answering in XML', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient/$validate', payload: PATIENT.replace('value="female"', 'value="W"'), headers: { 'content-type': XML, accept: XML } });
    const outcome = fromXml<OperationOutcome>(res.body);
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue.some((i) => i.severity === 'error' && /gender/.test(JSON.stringify(i)))).toBe(true);
  });

  it('applies a FHIRPath Patch sent as XML Parameters', async () => {
    const patch = `<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/><part><name value="type"/><valueCode value="replace"/></part><part><name value="path"/><valueString value="Patient.gender"/></part><part><name value="value"/><valueCode value="other"/></part></parameter></Parameters>`;
    const res = await t.request({ method: 'PATCH', url: `/fhir/Patient/${id}`, payload: patch, headers: { 'content-type': XML } });
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json() as Patient).gender).toBe('other');
  });
});

describe('bad XML is a 400 OperationOutcome and writes nothing', () => {
  const cases: Array<[string, string]> = [
    ['malformed', '<Patient xmlns="http://hl7.org/fhir"><name>'],
    ['an external entity (XXE)', '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><name><family value="&x;"/></name></Patient>'],
    ['an unknown element', '<Patient xmlns="http://hl7.org/fhir"><nickname value="Ro"/></Patient>'],
    ['no FHIR namespace', '<Patient><gender value="male"/></Patient>'],
    ['text instead of a value', '<Patient xmlns="http://hl7.org/fhir"><gender>male</gender></Patient>'],
    ['empty', '   '],
  ];
  for (const [what, body] of cases) {
    it(`${what}`, async () => {
      const before = (await t.request({ method: 'GET', url: '/fhir/Patient?_summary=count' })).json() as Bundle;
      const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: body, headers: { 'content-type': XML, accept: XML } });
      expect(res.statusCode).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/fhir\+xml/);
      const outcome = fromXml<OperationOutcome>(res.body);
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue[0]!.diagnostics).toMatch(/XML/);
      expect(res.body).not.toContain('root:');
      const after = (await t.request({ method: 'GET', url: '/fhir/Patient?_summary=count' })).json() as Bundle;
      expect(after.total).toBe(before.total);
    });
  }

  it('cut and spliced XML bodies never answer 500: 400 with an OperationOutcome, or a created resource (property-based)', async () => {
    const pieces = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('<', '>', '/>', '"', '&', '&amp;', ']]>', '<![CDATA[x]]>', '<!DOCTYPE x>', '<?pi x?>', '<extension url="u">', 'value="1"', 'xmlns="urn:x"', '\u0000', '\uFFFE'));
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: PATIENT.length }), fc.nat({ max: 40 }), pieces, async (at, cut, insert) => {
        const body = PATIENT.slice(0, at) + insert + PATIENT.slice(at + cut);
        const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: body, headers: { 'content-type': XML } });
        expect(res.statusCode, body).toBeLessThan(500);
        if (res.statusCode >= 400) expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
        else expect(res.statusCode).toBe(201);
      }),
      { numRuns: 200 },
    );
  });

  it('a resource the validator refuses is refused the same way in XML as in JSON', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: '<Patient xmlns="http://hl7.org/fhir"><gender value="W"/></Patient>', headers: { 'content-type': XML } });
    const json = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', gender: 'W' } });
    expect(res.statusCode).toBe(json.statusCode);
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.json()).toEqual(json.json());
  });

  it('a stored value XML cannot carry leaves in JSON rather than as broken XML', async () => {
    const created = await t.request({ method: 'POST', url: '/fhir/Basic', payload: { resourceType: 'Basic', code: { text: 'not XML \uFFFF' } } });
    expect(created.statusCode, created.body).toBe(201);
    const res = await t.request({ method: 'GET', url: `/fhir/Basic/${(created.json() as { id: string }).id}`, headers: { accept: XML } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect((res.json() as { code: { text: string } }).code.text).toBe('not XML \uFFFF');
  });

  it('a 404 asked for in XML is an XML OperationOutcome', async () => {
    const res = await t.request({ method: 'GET', url: '/fhir/Patient/no-such-patient', headers: { accept: XML } });
    expect(res.statusCode).toBe(404);
    expect(fromXml<OperationOutcome>(res.body).issue[0]!.code).toBe('not-found');
  });
});

describe('the FHIR version on the wire (fhirVersion MIME parameter) and $versions', () => {
  it('answers an Accept naming R4 and says so; refuses one naming other versions only (406)', async () => {
    const r4 = await t.request({ method: 'GET', url: '/fhir/metadata', headers: { accept: 'application/fhir+json; fhirVersion=4.0.1' } });
    expect(r4.statusCode).toBe(200);
    expect(r4.headers['content-type']).toBe('application/fhir+json; fhirVersion=4.0; charset=utf-8');
    const choice = await t.request({ method: 'GET', url: '/fhir/metadata', headers: { accept: 'application/fhir+json; fhirVersion=3.0, application/fhir+xml; fhirVersion=4.0; q=0.5' } });
    expect(choice.statusCode).toBe(200);
    expect(choice.headers['content-type']).toBe('application/fhir+xml; fhirVersion=4.0; charset=utf-8');
    expect(fromXml<CapabilityStatement>(choice.body).fhirVersion).toBe('4.0.1');
    const stu3 = await t.request({ method: 'GET', url: '/fhir/Patient?_count=1', headers: { accept: 'application/fhir+json; fhirVersion=3.0' } });
    expect(stu3.statusCode).toBe(406);
    expect((stu3.json() as OperationOutcome).issue[0]!.diagnostics).toMatch(/FHIR 4\.0/);
    // A wildcard beside it can still be answered in R4.
    expect((await t.request({ method: 'GET', url: '/fhir/Patient?_count=1', headers: { accept: 'application/fhir+json; fhirVersion=3.0, */*; q=0.1' } })).statusCode).toBe(200);
  });

  it('refuses a body declared in another FHIR version (415) and stores nothing', async () => {
    const before = (await t.request({ method: 'GET', url: '/fhir/Patient?_summary=count' })).json() as Bundle;
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', gender: 'male' }, headers: { 'content-type': 'application/fhir+json; fhirVersion=5.0' } });
    expect(res.statusCode).toBe(415);
    expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    expect(((await t.request({ method: 'GET', url: '/fhir/Patient?_summary=count' })).json() as Bundle).total).toBe(before.total);
    const r4 = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', gender: 'male' }, headers: { 'content-type': 'application/fhir+json; fhirVersion=4.0' } });
    expect(r4.statusCode).toBe(201);
  });

  it('$versions answers without a token, as Parameters or in the plain JSON and XML forms, and is declared', async () => {
    const parameters = await t.server.http.inject({ method: 'GET', url: '/fhir/$versions', headers: { accept: 'application/fhir+json' } });
    expect(parameters.statusCode).toBe(200);
    expect(parameters.json()).toEqual({ resourceType: 'Parameters', parameter: [{ name: 'version', valueCode: '4.0' }, { name: 'default', valueCode: '4.0' }] });
    const plainJson = await t.server.http.inject({ method: 'GET', url: '/fhir/$versions', headers: { accept: 'application/json' } });
    expect(plainJson.json()).toEqual({ versions: ['4.0'], default: '4.0' });
    const plainXml = await t.server.http.inject({ method: 'GET', url: '/fhir/$versions', headers: { accept: 'application/xml' } });
    expect(plainXml.body).toBe('<versions><version>4.0</version><default>4.0</default></versions>');
    const fhirXml = await t.server.http.inject({ method: 'GET', url: '/fhir/$versions', headers: { accept: XML } });
    expect(fromXml(fhirXml.body)).toEqual(parameters.json());
    const metadata = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    expect(metadata.rest![0]!.operation).toContainEqual({ name: 'versions', definition: 'http://hl7.org/fhir/OperationDefinition/CapabilityStatement-versions' });
  });
});
