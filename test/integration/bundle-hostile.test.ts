import fc from 'fast-check';
import type { Bundle, OperationOutcome } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Malformed Bundles posted to the base URL (issue 8, item 5): every shape a client can send gets
 * a 4xx OperationOutcome naming the element, or a proper batch/transaction response; a failed
 * transaction writes nothing.
 */
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

const post = (payload: unknown, url = '/fhir') =>
  t.request({ method: 'POST', url, payload: JSON.stringify(payload), headers: { 'content-type': 'application/fhir+json' } });

/** Every version ever written (system history total): a failed transaction must not move it. */
async function versionsWritten(): Promise<number> {
  const res = await t.request({ method: 'GET', url: '/fhir/_history?_count=0' });
  expect(res.statusCode).toBe(200);
  return (res.json() as Bundle).total!;
}

function expressions(body: string): string[] {
  const oo = JSON.parse(body) as OperationOutcome;
  expect(oo.resourceType).toBe('OperationOutcome');
  return oo.issue.flatMap((i) => i.expression ?? []);
}

describe('malformed Bundles at POST /fhir name the element in error', () => {
  it('the two reported 500s: entry not an array; empty type with resourceType true', async () => {
    const notArray = await post({ resourceType: 'Bundle', type: 'searchset', entry: { resourceType: 'Patient' } });
    expect(notArray.statusCode).toBe(400);
    expect(expressions(notArray.body)).toEqual(expect.arrayContaining(['Bundle.type', 'Bundle.entry']));

    const emptyType = await post({ resourceType: 'Bundle', type: '', entry: [{ resource: { resourceType: true }, request: { method: 'POST', url: 'Patient' } }] });
    expect(emptyType.statusCode).toBe(400);
    expect(expressions(emptyType.body)).toEqual(['Bundle.type', 'Bundle.entry[0].resource.resourceType']);
  });

  it('names the entry and element: method, url, fullUrl, request, resource', async () => {
    const ok = { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } };
    const cases: Array<[unknown, string]> = [
      [{ ...ok, request: { method: 'FOO', url: 'Patient' } }, 'Bundle.entry[3].request.method'],
      [{ ...ok, request: { method: 7, url: 'Patient' } }, 'Bundle.entry[3].request.method'],
      [{ ...ok, request: { method: 'POST', url: 42 } }, 'Bundle.entry[3].request.url'],
      [{ ...ok, request: { method: 'POST', url: '' } }, 'Bundle.entry[3].request.url'],
      [{ ...ok, request: { method: 'POST', url: 'Patient', ifNoneExist: ['x'] } }, 'Bundle.entry[3].request.ifNoneExist'],
      [{ ...ok, request: 'POST Patient' }, 'Bundle.entry[3].request'],
      [{ resource: { resourceType: 'Patient' } }, 'Bundle.entry[3].request'],
      [{ ...ok, fullUrl: 12 }, 'Bundle.entry[3].fullUrl'],
      [{ ...ok, fullUrl: 'urn:uuid:not-a-uuid' }, 'Bundle.entry[3].fullUrl'],
      [{ ...ok, resource: [] }, 'Bundle.entry[3].resource'],
      [{ ...ok, resource: { resourceType: null } }, 'Bundle.entry[3].resource.resourceType'],
      [{ request: { method: 'PUT', url: 'Patient/1' } }, 'Bundle.entry[3].resource'],
      [null, 'Bundle.entry[3]'],
      [[ok], 'Bundle.entry[3]'],
      ['entry', 'Bundle.entry[3]'],
    ];
    const before = await versionsWritten();
    for (const type of ['transaction', 'batch']) {
      for (const [bad, expression] of cases) {
        const res = await post({ resourceType: 'Bundle', type, entry: [ok, ok, ok, bad] });
        expect(res.statusCode, `${type} ${JSON.stringify(bad)}`).toBe(400);
        expect(expressions(res.body), JSON.stringify(bad)).toEqual([expression]);
      }
    }
    expect(await versionsWritten()).toBe(before);
  });

  it('refuses what is not a batch or transaction Bundle with 400', async () => {
    for (const body of [[], 'Bundle', 7, null, true, { resourceType: 'Patient' }, { type: 'batch' }, { resourceType: 'Bundle' }]) {
      const res = await post(body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(expressions(res.body).length, JSON.stringify(body)).toBeGreaterThan(0);
    }
    for (const type of ['collection', 'searchset', 'history', 'document', 'message', 'batch-response', 'TRANSACTION', 3]) {
      const res = await post({ resourceType: 'Bundle', type, entry: [] });
      expect(res.statusCode, String(type)).toBe(400);
      expect(expressions(res.body)).toEqual(['Bundle.type']);
    }
  });

  it('request URLs: a transaction with a bad one fails whole, naming it; a batch answers that entry', async () => {
    const patient = { resourceType: 'Patient', active: true };
    const urls = ['../Patient', 'Patient/../x', 'http://elsewhere.example/fhir/Patient', 'Nope', '?name=x', 'Patient/a b', 'Patient/x/_history/1/more'];
    const before = await versionsWritten();
    for (const url of urls) {
      const entry = [
        { resource: patient, request: { method: 'POST', url: 'Patient' } },
        { resource: patient, request: { method: 'PUT', url } },
      ];
      const tx = await post({ resourceType: 'Bundle', type: 'transaction', entry });
      expect(tx.statusCode, url).toBe(400);
      expect(expressions(tx.body), url).toEqual(['Bundle.entry[1].request.url']);
      expect(await versionsWritten()).toBe(before);
    }
    const batch = await post({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: patient, request: { method: 'POST', url: 'Patient' } },
        { resource: patient, request: { method: 'PUT', url: '../Patient' } },
        { request: { method: 'GET', url: 'http://elsewhere.example/fhir/Patient/1' } },
      ],
    });
    expect(batch.statusCode).toBe(200);
    const entries = (batch.json() as Bundle).entry!;
    expect(entries.map((e) => e.response?.status)).toEqual(['201 Created', '400', '400']);
    expect((entries[1].response?.outcome as OperationOutcome).issue[0].expression).toEqual(['Bundle.entry[1].request.url']);
    expect((entries[2].response?.outcome as OperationOutcome).issue[0].expression).toEqual(['Bundle.entry[2].request.url']);
  });

  it('a duplicate fullUrl in a transaction is a 400 naming the second one', async () => {
    const fullUrl = 'urn:uuid:0d8f3a5e-1111-4a4a-8b8b-000000000001';
    const entry = { fullUrl, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } };
    const res = await post({ resourceType: 'Bundle', type: 'transaction', entry: [entry, entry] });
    expect(res.statusCode).toBe(400);
    expect(expressions(res.body)).toEqual(['Bundle.entry[1].fullUrl']);
  });

  it('a Bundle resource created at /fhir/Bundle: invalid shape is 4xx, a valid searchset is stored', async () => {
    const invalid = await post({ resourceType: 'Bundle', type: 'searchset', entry: { resourceType: 'Patient' } }, '/fhir/Bundle');
    expect(invalid.statusCode).toBe(422);
    expect(expressions(invalid.body)).toEqual(['Bundle.entry']);
    const emptyType = await post({ resourceType: 'Bundle', type: '', entry: [{ resource: { resourceType: true } }] }, '/fhir/Bundle');
    expect(emptyType.statusCode).toBe(422);
    expect(expressions(emptyType.body)).toEqual(['Bundle.type', 'Bundle.entry[0].resource.resourceType']);
    const valid = await post({ resourceType: 'Bundle', type: 'searchset', entry: [{ fullUrl: 'http://x.example/Patient/1', resource: { resourceType: 'Patient', id: '1' } }] }, '/fhir/Bundle');
    expect(valid.statusCode).toBe(201);
    const read = await t.request({ method: 'GET', url: (valid.headers.location as string).split('/_history')[0].replace('http://localhost:8080', '') });
    expect(read.json().entry[0].resource.resourceType).toBe('Patient');
  });
});

// ---- generated Bundle shapes -------------------------------------------------------------

const junk = fc.oneof(fc.constant(null), fc.integer(), fc.boolean(), fc.string({ maxLength: 8 }), fc.constant([]), fc.constant({}), fc.jsonValue({ maxDepth: 2 }));

const fullUrl = fc.oneof(
  fc.uuid().map((u) => `urn:uuid:${u}`),
  fc.constantFrom('urn:uuid:shared-0001', 'urn:uuid:0d8f3a5e-2222-4a4a-8b8b-000000000001', 'urn:uuid:', 'http://localhost:8080/fhir/Patient/gen1', 'Patient/gen2', '', 'http://elsewhere.example/Patient/1'),
  junk,
);

const method = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH') }, { weight: 1, arbitrary: fc.oneof(fc.constantFrom('get', 'FOO', '', 'OPTIONS'), junk) });

const url = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('Patient', 'Observation', 'Patient/gen1', 'Patient/gen2', 'Patient?identifier=x|1', 'Observation?code=abc', 'Patient/gen1/_history/1', 'http://localhost:8080/fhir/Patient/gen1') },
  {
    weight: 2,
    arbitrary: fc.constantFrom('', '?name=x', '../Patient', 'Patient/../Observation/1', '/Patient', '//', 'http://elsewhere.example/Patient', 'Nope/1', 'Patient/a b', 'Patient/_history', 'metadata', '$export', 'Patient/%00', 'urn:uuid:x'),
  },
  { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 20 }), junk) },
);

const resource = fc.oneof(
  { weight: 4, arbitrary: fc.record({ resourceType: fc.constant('Patient'), active: fc.boolean() }) },
  { weight: 2, arbitrary: fc.constant({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'urn:uuid:shared-0001' } }) },
  { weight: 1, arbitrary: fc.constantFrom({ resourceType: 'Patient', birthDate: 'not a date' }, { resourceType: 'Patient', id: 'gen1' }, { resourceType: 'Parameters' }, { resourceType: 'Nope' }) },
  { weight: 1, arbitrary: fc.oneof(fc.record({ resourceType: junk }), junk) },
);

const request = fc.oneof(
  { weight: 8, arbitrary: fc.record({ method, url, ifMatch: fc.oneof(fc.constantFrom('W/"1"', 'garbage', ''), junk), ifNoneExist: fc.oneof(fc.constantFrom('identifier=x|1', ''), junk) }, { requiredKeys: ['method', 'url'] }) },
  { weight: 1, arbitrary: junk },
);

const entry = fc.oneof(
  { weight: 8, arbitrary: fc.record({ fullUrl, resource, request }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: junk },
);

const bundle = fc.record(
  {
    resourceType: fc.oneof({ weight: 9, arbitrary: fc.constant('Bundle') }, { weight: 1, arbitrary: junk }),
    type: fc.oneof({ weight: 8, arbitrary: fc.constantFrom('transaction', 'batch') }, { weight: 1, arbitrary: fc.constantFrom('searchset', 'collection', 'history', '') }, { weight: 1, arbitrary: junk }),
    entry: fc.oneof({ weight: 8, arbitrary: fc.array(entry, { maxLength: 5 }) }, { weight: 1, arbitrary: junk }),
  },
  { requiredKeys: ['resourceType'] },
);

describe('generated Bundle shapes (property)', () => {
  it('never a 500: a 4xx OperationOutcome or a batch/transaction response; a failed transaction writes nothing', async () => {
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(bundle, async (body) => {
        const before = await versionsWritten();
        const res = await post(body);
        outcomes.set(String(res.statusCode), (outcomes.get(String(res.statusCode)) ?? 0) + 1);
        expect(res.statusCode, res.body.slice(0, 300)).toBeLessThan(500);
        const answer = JSON.parse(res.body) as Bundle | OperationOutcome;
        if (res.statusCode >= 400) {
          expect(answer.resourceType).toBe('OperationOutcome');
          expect((answer as OperationOutcome).issue.length).toBeGreaterThan(0);
          expect(await versionsWritten()).toBe(before);
          return;
        }
        expect(res.statusCode).toBe(200);
        const sent = body as { type: string; entry?: unknown[] };
        expect(answer).toMatchObject({ resourceType: 'Bundle', type: `${sent.type}-response` });
        expect((answer as Bundle).entry?.length ?? 0).toBe(sent.entry?.length ?? 0);
      }),
      { numRuns: Number(process.env.BUNDLE_PROPERTY_RUNS ?? 1000) },
    );
    // The generator must reach both outcomes, or the property says little.
    expect(outcomes.get('200') ?? 0).toBeGreaterThan(20);
    expect(outcomes.get('400') ?? 0).toBeGreaterThan(20);
  }, 600_000);
});
