import type { Bundle } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 17 §6: a SearchParameter created at run time on one server process reaches the other
 * processes on the same database without a restart (each looks for SearchParameters it has not
 * activated, every 2 s; src/search/runtime-parameters.ts). Two server instances with their own
 * registries and pools stand for two processes, as in scale-out.test.ts. The embedded database
 * serves one process only: nothing to propagate there.
 */
describe.skipIf(!process.env.DATABASE_URL)('run-time SearchParameters across processes (PostgreSQL)', () => {
  const apps: TestApp[] = [];
  beforeAll(async () => {
    apps.push(await startTestApp());
    apps.push(await startTestApp({ DATABASE_SCHEMA: apps[0].config.databaseSchema! }));
  }, 240_000);
  afterAll(async () => {
    await apps[1]?.close();
    await apps[0]?.close();
  });

  it('a SearchParameter stored through one process is used by the other without a restart', async () => {
    const EXT = 'http://hospital.example/StructureDefinition/blood-group';
    const [a, b] = apps;
    const written = await b.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', extension: [{ url: EXT, valueString: 'AB-negative' }] } });
    expect(written.statusCode).toBe(201);
    const created = await a.request({
      method: 'POST',
      url: '/fhir/SearchParameter',
      payload: { resourceType: 'SearchParameter', url: 'http://hospital.example/sp/blood-group', name: 'blood-group', status: 'active', description: 'Patient by blood group extension', code: 'blood-group', base: ['Patient'], type: 'string', expression: `Patient.extension('${EXT}').value` },
    });
    expect(created.statusCode, created.body).toBe(201);
    // Process b: refused as unknown at first, then found once it has picked the parameter up.
    const deadline = Date.now() + 60_000;
    let found: Bundle | undefined;
    while (Date.now() < deadline) {
      const res = await b.request({ method: 'GET', url: '/fhir/Patient?blood-group=ab-neg', headers: { prefer: 'handling=strict' } });
      if (res.statusCode === 200) {
        found = res.json() as Bundle;
        break;
      }
      expect(res.statusCode, res.body).toBe(400);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(found?.entry?.map((e) => e.resource?.id)).toEqual([(written.json() as { id: string }).id]);
    expect(b.server.searchParameters.status().map((s) => s.url)).toContain('http://hospital.example/sp/blood-group');
    // Writes through b are indexed for it from now on.
    const later = await b.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', extension: [{ url: EXT, valueString: 'AB-negative' }] } });
    await b.server.searchParameters.idle();
    const both = (await b.request({ method: 'GET', url: '/fhir/Patient?blood-group=ab-neg' })).json() as Bundle;
    expect(both.entry?.map((e) => e.resource?.id).sort()).toEqual([(written.json() as { id: string }).id, (later.json() as { id: string }).id].sort());
  }, 120_000);
});
