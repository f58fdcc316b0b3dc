import type { Binary, Bundle, OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { xmlToResource } from '../../src/fhir/xml/from-xml.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Binary content in its own format (src/http/binary-content.ts, https://hl7.org/fhir/R4/binary.html#rest):
 * a PDF posted as a PDF is stored as a Binary and read back as the same bytes, unless FHIR is asked for.
 */

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

// A small but real PDF header and some bytes no text encoding would keep (0x00, 0xff, …).
const PDF = Buffer.concat([Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1'), Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80, 10, 13]), Buffer.from('\n%%EOF\n')]);

describe('Binary content in its own format', () => {
  let id = '';

  it('a PDF POSTed as application/pdf is stored as a Binary of that type, the security context from X-Security-Context', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Binary', payload: PDF, headers: { 'content-type': 'application/pdf', 'x-security-context': 'Patient/example-1', accept: 'application/fhir+json' } });
    expect(res.statusCode, res.body).toBe(201);
    const stored = res.json() as Binary;
    id = stored.id!;
    expect(stored.contentType).toBe('application/pdf');
    expect(Buffer.from(stored.data!, 'base64').equals(PDF)).toBe(true);
    expect(stored.securityContext).toEqual({ reference: 'Patient/example-1' });
  });

  it('a read answers the bytes with their type unless FHIR is asked for', async () => {
    for (const headers of [{}, { accept: '*/*' }, { accept: 'application/pdf' }]) {
      const res = await t.request({ method: 'GET', url: `/fhir/Binary/${id}`, headers });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('application/pdf');
      expect(res.rawPayload.equals(PDF)).toBe(true);
      expect(res.headers.etag).toBe('W/"1"');
      expect(res.headers['content-security-policy']).toMatch(/sandbox/);
      expect(res.headers['x-security-context']).toBe('Patient/example-1');
      expect(String(res.headers.vary)).toMatch(/\bAccept\b/);
    }
    const vread = await t.request({ method: 'GET', url: `/fhir/Binary/${id}/_history/1` });
    expect(vread.rawPayload.equals(PDF)).toBe(true);
    // FHIR asked for: the resource.
    const json = await t.request({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: 'application/fhir+json' } });
    expect((json.json() as Binary).contentType).toBe('application/pdf');
    expect(((await t.request({ method: 'GET', url: `/fhir/Binary/${id}?_format=json` })).json() as Binary).resourceType).toBe('Binary');
    const xml = await t.request({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { accept: 'application/fhir+xml' } });
    expect((xmlToResource(xml.body) as unknown as Binary).data).toBe(PDF.toString('base64'));
    // A search is FHIR whatever the Accept.
    const search = await t.request({ method: 'GET', url: `/fhir/Binary?_id=${id}` });
    expect((search.json() as Bundle).entry?.[0]?.resource?.id).toBe(id);
  });

  it('a PUT of raw content is a new version of the Binary', async () => {
    const text = Buffer.from('scanned referral letter, page 1\n', 'utf8');
    const res = await t.request({ method: 'PUT', url: `/fhir/Binary/${id}`, payload: text, headers: { 'content-type': 'text/plain; charset=utf-8' } });
    expect(res.statusCode, res.body).toBe(200);
    const read = await t.request({ method: 'GET', url: `/fhir/Binary/${id}` });
    expect(read.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(read.headers.etag).toBe('W/"2"');
    expect(read.rawPayload.equals(text)).toBe(true);
    expect((await t.request({ method: 'GET', url: `/fhir/Binary/${id}/_history/1` })).rawPayload.equals(PDF)).toBe(true);
  });

  it('HTML content is served sandboxed, so a browser runs none of it', async () => {
    const html = '<html><script>alert(document.cookie)</script></html>';
    const created = await t.request({ method: 'POST', url: '/fhir/Binary', payload: html, headers: { 'content-type': 'text/html' } });
    expect(created.statusCode).toBe(201);
    const location = String(created.headers.location);
    const res = await t.request({ method: 'GET', url: location.slice(location.indexOf('/fhir/')).replace(/\/_history\/.*$/, '') });
    expect(res.headers['content-type']).toBe('text/html');
    expect(res.headers['content-security-policy']).toBe("sandbox; default-src 'none'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });

  it('other types keep their 415 outside Binary, and a token without Binary access gets no content', async () => {
    const patient = await t.request({ method: 'POST', url: '/fhir/Patient', payload: PDF, headers: { 'content-type': 'application/pdf' } });
    expect(patient.statusCode).toBe(415);
    expect((patient.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    const token = await t.tokenFor('system/Patient.rs');
    const denied = await t.server.http.inject({ method: 'GET', url: `/fhir/Binary/${id}`, headers: { authorization: `Bearer ${token}` } });
    expect(denied.statusCode).toBe(403);
    expect(denied.rawPayload.includes(Buffer.from('referral'))).toBe(false);
    const refusedWrite = await t.server.http.inject({ method: 'POST', url: '/fhir/Binary', payload: PDF, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/pdf' } });
    expect(refusedWrite.statusCode).toBe(403);
  });
});
