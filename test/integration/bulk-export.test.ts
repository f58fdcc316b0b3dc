import { gunzipSync } from 'node:zlib';
import type { CapabilityStatement, OperationOutcome, Patient } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EXPORT_TUNING } from '../../src/operations/export-run.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { BASE, downloadAll, exportManifest, kickOff, local, startExport, tokenWithScope, waitForExport, type Manifest } from './bulk-export-helpers.js';

/**
 * The Bulk Data kick-off / status / download / cancel protocol as the conformance kits check
 * it, run on the in-process job runner and, when REDIS_URL is set, on BullMQ too.
 */
const runners: Array<{ name: string; env: Record<string, string> }> = [
  { name: 'in-process runner', env: { REDIS_URL: '' } },
  ...(process.env.REDIS_URL ? [{ name: 'BullMQ runner', env: {} }] : []),
];

describe.each(runners)('Bulk Data export protocol ($name)', ({ env }) => {
  let t: TestApp;
  const patients: Patient[] = [];

  beforeAll(async () => {
    t = await startTestApp(env);
    for (const gender of ['male', 'female', 'other'] as const) {
      const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', gender } });
      patients.push(res.json() as Patient);
      for (let i = 0; i < 2; i++) {
        await t.request({
          method: 'POST',
          url: '/fhir/Observation',
          payload: { resourceType: 'Observation', status: 'final', code: { text: `obs ${i}` }, subject: { reference: `Patient/${patients.at(-1)!.id}` } },
        });
      }
    }
    await t.request({ method: 'POST', url: '/fhir/Practitioner', payload: { resourceType: 'Practitioner', name: [{ family: 'Doe' }] } });
    expect(t.server.jobs.kind).toBe(env.REDIS_URL === '' ? 'in-process' : 'bullmq');
  });
  afterAll(async () => {
    await t?.close();
  });

  const expectOutcome = (res: { statusCode: number; json(): unknown }, status: number) => {
    expect(res.statusCode).toBe(status);
    expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
  };

  it('needs a token for kick-off, status and download (401)', async () => {
    const manifest = await exportManifest(t, '/fhir/$export?_type=Patient');
    for (const url of ['/fhir/$export', '/fhir/Patient/$export', `/fhir/Group/x/$export`, local(manifest.output[0]!.url)]) {
      const res = await t.server.http.inject({ method: 'GET', url, headers: { prefer: 'respond-async', accept: 'application/fhir+json' } });
      expectOutcome(res, 401);
    }
    const status = await startExport(t, '/fhir/$export?_type=Patient');
    expectOutcome(await t.server.http.inject({ method: 'GET', url: status }), 401);
    expectOutcome(await t.server.http.inject({ method: 'DELETE', url: status }), 401);
    await waitForExport(t, status);
  });

  it('refuses a kick-off without Prefer: respond-async or without Accept (400 OperationOutcome)', async () => {
    for (const url of ['/fhir/$export', '/fhir/Patient/$export']) {
      expectOutcome(await t.request({ method: 'GET', url, headers: { accept: 'application/fhir+json' } }), 400);
      expectOutcome(await t.request({ method: 'GET', url, headers: { accept: 'application/fhir+json', prefer: 'return=minimal' } }), 400);
      expectOutcome(await t.request({ method: 'GET', url, headers: { prefer: 'respond-async' } }), 400);
      expectOutcome(await t.request({ method: 'POST', url, payload: { resourceType: 'Parameters' }, headers: { accept: 'application/fhir+json' } }), 400);
      expectOutcome(await t.request({ method: 'GET', url, headers: { prefer: 'respond-async', accept: 'text/html' } }), 406);
    }
  });

  it('accepts the three NDJSON _outputFormat spellings by GET and POST and refuses other formats', async () => {
    for (const format of ['application/fhir+ndjson', 'application/ndjson', 'ndjson']) {
      const get = await kickOff(t, `/fhir/$export?_type=Patient&_outputFormat=${encodeURIComponent(format)}`);
      expect(get.statusCode).toBe(202);
      const post = await kickOff(t, '/fhir/Patient/$export', {
        method: 'POST',
        payload: { resourceType: 'Parameters', parameter: [{ name: '_outputFormat', valueString: format }, { name: '_type', valueString: 'Patient' }] },
      });
      expect(post.statusCode).toBe(202);
      for (const res of [get, post]) expect((await t.request({ method: 'DELETE', url: local(String(res.headers['content-location'])) })).statusCode).toBe(202);
    }
    for (const format of ['application/xml', 'text/html', 'x-custom']) {
      expectOutcome(await kickOff(t, `/fhir/$export?_outputFormat=${encodeURIComponent(format)}`), 400);
      expectOutcome(await kickOff(t, '/fhir/$export', { method: 'POST', payload: { resourceType: 'Parameters', parameter: [{ name: '_outputFormat', valueString: format }] } }), 400);
    }
  });

  it('refuses unsupported parameters, bad or future _since and unknown _type (400 OperationOutcome)', async () => {
    for (const query of ['_elements=id', 'includeAssociatedData=LatestProvenanceResources', 'foo=bar', '_since=0000-60-01T30:70:80%2B05:00', '_since=2024-02-30', '_since=2057-01-01T00:00:00%2B05:00', '_type=MissingType', '_type=Patient&_typeFilter=Observation%3Fcode%3Dx', 'patient=Patient/1']) {
      expectOutcome(await kickOff(t, `/fhir/$export?${query}`), 400);
    }
    expectOutcome(await kickOff(t, '/fhir/Group/no-such-group/$export'), 404);
    expectOutcome(await kickOff(t, '/fhir/$export', { method: 'POST', payload: { resourceType: 'Patient' } }), 400);
  });

  it('answers 202 with X-Progress and Retry-After while running, then the manifest; files need the token and the scope', async () => {
    await t.server.jobs.pause();
    let status: string;
    try {
      status = await startExport(t, '/fhir/$export?_type=Patient,Observation');
      const running = await t.request({ method: 'GET', url: status });
      expect(running.statusCode).toBe(202);
      expect(running.headers['x-progress']).toBe('queued');
      expect(Number(running.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await t.server.jobs.resume();
    }
    const done = await waitForExport(t, status);
    expect(done.statusCode).toBe(200);
    expect(done.headers['content-type']).toMatch(/^application\/json/);
    expect(Date.parse(String(done.headers.expires))).toBeGreaterThan(Date.now());
    const manifest = done.json() as Manifest;
    expect(manifest.transactionTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    expect(manifest.request).toBe(`${BASE}/fhir/$export?_type=Patient,Observation`);
    expect(manifest.requiresAccessToken).toBe(true);
    expect(manifest.error).toEqual([]);
    expect(manifest.output.map((o) => [o.type, o.count])).toEqual([['Patient', 3], ['Observation', 6]]);
    const resources = await downloadAll(t, manifest);
    expect(new Set(resources.filter((r) => r.resourceType === 'Patient').map((r) => r.id))).toEqual(new Set(patients.map((p) => p.id)));

    const patientFile = local(manifest.output[0]!.url);
    const observationFile = local(manifest.output[1]!.url);
    expect((await t.server.http.inject({ method: 'GET', url: patientFile })).statusCode).toBe(401);
    const observationsOnly = await tokenWithScope(t, 'system/Observation.read', TEST_CLIENT.secret);
    const auth = { authorization: `Bearer ${observationsOnly}` };
    expect((await t.server.http.inject({ method: 'GET', url: patientFile, headers: auth })).statusCode).toBe(403);
    expect((await t.server.http.inject({ method: 'GET', url: observationFile, headers: auth })).statusCode).toBe(200);
    expect((await t.request({ method: 'GET', url: patientFile.replace(/\d+\.ndjson$/, '99.ndjson') })).statusCode).toBe(404);

    // gzip-capable clients get the stored gzip as is; the content is the same
    const plain = await t.request({ method: 'GET', url: observationFile });
    const zipped = await t.request({ method: 'GET', url: observationFile, headers: { 'accept-encoding': 'gzip, deflate' } });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(zipped.headers['content-type']).toBe('application/fhir+ndjson');
    expect(gunzipSync(zipped.rawPayload).toString('utf8')).toBe(plain.body);
  });

  it('DELETE on a finished export answers 202; afterwards its status and files are 404 OperationOutcomes', async () => {
    const manifest = await exportManifest(t, '/fhir/$export?_type=Patient');
    const file = local(manifest.output[0]!.url);
    const jobId = /\$export-output\/([^/]+)\//.exec(file)![1]!;
    const status = `/fhir/$export-status/${jobId}`;
    expect(await t.server.bulk.files.has(jobId)).toBe(true);
    expect((await t.request({ method: 'DELETE', url: status })).statusCode).toBe(202);
    expect(await t.server.bulk.files.has(jobId)).toBe(false);
    expectOutcome(await t.request({ method: 'GET', url: status }), 404);
    expectOutcome(await t.request({ method: 'GET', url: file }), 404);
    expectOutcome(await t.request({ method: 'DELETE', url: status }), 404);
    expectOutcome(await t.request({ method: 'GET', url: '/fhir/$export-status/not-a-job' }), 404);
  });

  it('DELETE while running stops the job at its next checkpoint and leaves no files', async () => {
    // One resource per page and a pause after each: the job is surely still running when cancelled.
    Object.assign(t.server.bulk.tuning, { chunkSize: 1, throttleMs: 150 });
    try {
      const status = await startExport(t, '/fhir/$export?_type=Observation');
      const jobId = status.split('/').pop()!;
      const deadline = Date.now() + 20_000;
      let progress = '';
      while (!progress.startsWith('exporting') || !/[1-9]\d* resources written/.test(progress)) {
        if (Date.now() > deadline) throw new Error(`export did not start: ${progress}`);
        const res = await t.request({ method: 'GET', url: status });
        expect(res.statusCode).toBe(202);
        progress = String(res.headers['x-progress']);
        await new Promise((r) => setTimeout(r, 20));
      }
      expect((await t.request({ method: 'DELETE', url: status })).statusCode).toBe(202);
      expectOutcome(await t.request({ method: 'GET', url: status }), 404);
      await new Promise((r) => setTimeout(r, 600));
      const job = await sql<{ status: string }>`SELECT status FROM job WHERE id = ${jobId}`.execute(t.server.database.db);
      expect(job.rows[0]?.status).toBe('cancelled');
      expect(await t.server.bulk.files.has(jobId)).toBe(false);
    } finally {
      Object.assign(t.server.bulk.tuning, DEFAULT_EXPORT_TUNING);
    }
  });

  it('exports the state at transactionTime: writes after the kick-off are left out', async () => {
    await t.server.jobs.pause();
    let status: string;
    try {
      status = await startExport(t, '/fhir/$export?_type=Patient');
      const changed = { ...patients[0]!, gender: 'unknown' as const };
      expect((await t.request({ method: 'PUT', url: `/fhir/Patient/${changed.id}`, payload: changed })).statusCode).toBe(200);
      expect((await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', gender: 'female' } })).statusCode).toBe(201);
    } finally {
      await t.server.jobs.resume();
    }
    const done = await waitForExport(t, status);
    const resources = (await downloadAll(t, done.json() as Manifest)) as Patient[];
    expect(resources.map((p) => p.id).sort()).toEqual(patients.map((p) => p.id).sort());
    const before = resources.find((p) => p.id === patients[0]!.id)!;
    expect(before.gender).toBe(patients[0]!.gender);
    expect(before.meta?.versionId).toBe(patients[0]!.meta?.versionId);
  });

  it('exports a resource updated while the export runs once, at its version as of transactionTime', async () => {
    const observations = (await downloadAll(t, await exportManifest(t, '/fhir/$export?_type=Observation'))).sort((a, b) => a.id!.localeCompare(b.id!));
    Object.assign(t.server.bulk.tuning, { chunkSize: 1, throttleMs: 100 });
    try {
      const status = await startExport(t, '/fhir/$export?_type=Observation');
      for (let progress = ''; !/[1-9]\d* resources written/.test(progress); ) {
        progress = String((await t.request({ method: 'GET', url: status })).headers['x-progress']);
        await new Promise((r) => setTimeout(r, 10));
      }
      // the first page is written by now, the last one not yet: update both
      for (const o of [observations[0]!, observations.at(-1)!]) {
        expect((await t.request({ method: 'PUT', url: `/fhir/Observation/${o.id}`, payload: { ...o, status: 'amended' } })).statusCode).toBe(200);
      }
      const exported = await downloadAll(t, (await waitForExport(t, status)).json() as Manifest);
      expect(exported.map((o) => o.id).sort()).toEqual(observations.map((o) => o.id));
      expect(exported.filter((o) => (o as { status?: string }).status === 'amended')).toEqual([]);
    } finally {
      Object.assign(t.server.bulk.tuning, DEFAULT_EXPORT_TUNING);
    }
  });

  it('splits a type into several files once one holds fileMaxResources', async () => {
    Object.assign(t.server.bulk.tuning, { chunkSize: 2, fileMaxResources: 4 });
    try {
      const manifest = await exportManifest(t, '/fhir/$export?_type=Observation');
      expect(manifest.output.map((o) => [o.type, o.count])).toEqual([['Observation', 4], ['Observation', 2]]);
      expect(new Set(manifest.output.map((o) => o.url)).size).toBe(2);
      expect(new Set((await downloadAll(t, manifest)).map((o) => o.id)).size).toBe(6);
    } finally {
      Object.assign(t.server.bulk.tuning, DEFAULT_EXPORT_TUNING);
    }
  });

  it('reports a failed export as an error status with an OperationOutcome', async () => {
    const group = (await t.request({ method: 'POST', url: '/fhir/Group', payload: { resourceType: 'Group', type: 'person', actual: true, member: [{ entity: { reference: `Patient/${patients[0]!.id}` } }] } })).json() as { id: string };
    await t.server.jobs.pause();
    let status: string;
    try {
      status = await startExport(t, `/fhir/Group/${group.id}/$export`);
      // the Group goes away before the job reads its members: nothing a retry could fix
      expect((await t.request({ method: 'DELETE', url: `/fhir/Group/${group.id}` })).statusCode).toBeLessThan(300);
    } finally {
      await t.server.jobs.resume();
    }
    const failed = await waitForExport(t, status);
    expect(failed.statusCode).toBe(500);
    const outcome = failed.json() as OperationOutcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(outcome)).toContain(`Group/${group.id}`);
  });

  it('declares the export and $everything operations in the CapabilityStatement', async () => {
    const cs = (await t.server.http.inject({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    expect(cs.instantiates).toContain('http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data');
    expect(cs.rest![0]!.operation).toContainEqual({ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' });
    const ops = (type: string) => cs.rest![0]!.resource!.find((r) => r.type === type)!.operation!.map((o) => o.definition);
    expect(ops('Patient')).toContain('http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export');
    expect(ops('Patient')).toContain('http://hl7.org/fhir/OperationDefinition/Patient-everything');
    expect(ops('Group')).toContain('http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export');
    expect(ops('Encounter')).toContain('http://hl7.org/fhir/OperationDefinition/Encounter-everything');
    expect(ops('Observation')).not.toContain('http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export');
  });

  it('exports only types the token may read; asking for others is 403', async () => {
    const patientsOnly = await tokenWithScope(t, 'system/Patient.rs', TEST_CLIENT.secret);
    const headers = { authorization: `Bearer ${patientsOnly}`, prefer: 'respond-async', accept: 'application/fhir+json' };
    expectOutcome(await t.server.http.inject({ method: 'GET', url: '/fhir/$export?_type=Observation', headers }), 403);
    const res = await t.server.http.inject({ method: 'GET', url: '/fhir/$export', headers });
    expect(res.statusCode).toBe(202);
    const status = local(String(res.headers['content-location']));
    // Jobs belong to the client that started them; the same client with another token sees them.
    const done = await waitForExport(t, status);
    const manifest = done.json() as Manifest;
    expect(manifest.output.map((o) => o.type)).toEqual(['Patient']);
  });
});
