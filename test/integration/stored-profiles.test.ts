import type { CapabilityStatement, OperationOutcome, StructureDefinition } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Profiles from StructureDefinitions stored through the API (src/fhir/validation/stored-profiles.ts):
 * a hospital uploads its own profile and the server checks resources claiming it from then on,
 * invariants included; one it cannot use is stored with a warning saying why.
 */
const URL = 'http://hospital.example/StructureDefinition/discharged-encounter';

/** Differential only: the server builds the snapshot (src/fhir/validation/snapshot.ts). */
const discharged = (url = URL): StructureDefinition => ({
  resourceType: 'StructureDefinition',
  url,
  name: 'DischargedEncounter',
  status: 'active',
  kind: 'resource',
  abstract: false,
  type: 'Encounter',
  baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Encounter',
  derivation: 'constraint',
  differential: {
    element: [
      {
        id: 'Encounter',
        path: 'Encounter',
        constraint: [{ key: 'hosp-enc-1', severity: 'error', human: 'A finished encounter has an end', expression: "status = 'finished' implies period.end.exists()", source: url }],
      },
      { id: 'Encounter.subject', path: 'Encounter.subject', min: 1 },
    ],
  },
});

const encounter = (extra: Record<string, unknown> = {}) => ({
  resourceType: 'Encounter',
  meta: { profile: [URL] },
  status: 'finished',
  class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' },
  subject: { reference: 'Patient/example' },
  period: { start: '2024-05-01', end: '2024-05-04' },
  ...extra,
});

const diagnostics = (body: string) => ((JSON.parse(body) as OperationOutcome).issue ?? []).map((i) => i.diagnostics ?? '');

describe('profiles from stored StructureDefinitions', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  const supported = async (type: string) =>
    ((await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement).rest![0]!.resource!.find((r) => r.type === type)!.supportedProfile ?? [];

  it('a stored profile is enforced from its commit on, with its invariants; deleting it takes it away', async () => {
    // The CapabilityStatement lists the profiles the server checks: the hospital's own, and stored ones once stored.
    expect(await supported('Patient')).toContain('https://fhir.hospital.example.org/StructureDefinition/hospital-patient');
    expect(await supported('Encounter')).not.toContain(URL);
    // Before: an unknown profile, a warning only.
    const { period: _, ...open } = encounter();
    expect((await t.request({ method: 'POST', url: '/fhir/Encounter', payload: { ...open, period: { start: '2024-05-01' } } })).statusCode).toBe(201);

    const stored = await t.request({ method: 'POST', url: '/fhir/StructureDefinition', payload: discharged() });
    expect(stored.statusCode, stored.body).toBe(201);
    const id = (stored.json() as { id: string }).id;
    expect(await supported('Encounter')).toContain(URL);

    const unended = await t.request({ method: 'POST', url: '/fhir/Encounter', payload: encounter({ period: { start: '2024-05-01' } }) });
    expect(unended.statusCode, unended.body).toBe(422);
    expect(diagnostics(unended.body)).toContain(`hosp-enc-1: A finished encounter has an end (profile ${URL})`);
    const { subject: _s, ...noSubject } = encounter();
    const unowned = await t.request({ method: 'POST', url: '/fhir/Encounter', payload: noSubject });
    expect(unowned.statusCode).toBe(422);
    expect((unowned.json() as OperationOutcome).issue).toContainEqual(expect.objectContaining({ code: 'required', expression: ['Encounter.subject'] }));
    expect((await t.request({ method: 'POST', url: '/fhir/Encounter', payload: encounter() })).statusCode).toBe(201);

    // $validate against it without claiming it.
    const { meta: _m, ...unclaimed } = encounter({ period: { start: '2024-05-01' } });
    const validated = await t.request({ method: 'POST', url: `/fhir/Encounter/$validate?profile=${encodeURIComponent(URL)}`, payload: unclaimed });
    expect(diagnostics(validated.body).some((d) => d.startsWith('hosp-enc-1:'))).toBe(true);

    // An update that loosens the profile applies at once.
    const loosened = discharged();
    loosened.differential!.element = loosened.differential!.element.slice(1);
    expect((await t.request({ method: 'PUT', url: `/fhir/StructureDefinition/${id}`, payload: { ...loosened, id } })).statusCode).toBe(200);
    expect((await t.request({ method: 'POST', url: '/fhir/Encounter', payload: encounter({ period: { start: '2024-05-01' } }) })).statusCode).toBe(201);

    expect((await t.request({ method: 'DELETE', url: `/fhir/StructureDefinition/${id}` })).statusCode).toBe(204);
    expect(await supported('Encounter')).not.toContain(URL);
    const afterDelete = await t.request({ method: 'POST', url: '/fhir/Encounter', payload: noSubject, headers: { prefer: 'return=OperationOutcome' } });
    expect(afterDelete.statusCode).toBe(201);
    expect(diagnostics(afterDelete.body).some((d) => d.includes(`Profile ${URL} is not known`))).toBe(true);
  });

  it('a StructureDefinition the server cannot use as a profile is stored with a warning saying why, and not enforced', async () => {
    const storedWithWarning = async (sd: StructureDefinition, why: RegExp) => {
      const res = await t.request({ method: 'POST', url: '/fhir/StructureDefinition', payload: sd, headers: { prefer: 'return=OperationOutcome' } });
      expect(res.statusCode, res.body).toBe(201);
      expect(diagnostics(res.body).join(' ')).toMatch(why);
      // Resources claiming it meet an unknown profile: stored, with that warning.
      const claim = await t.request({ method: 'POST', url: '/fhir/Encounter', payload: { ...encounter({ period: { start: '2024-05-01' } }), meta: { profile: [sd.url] } }, headers: { prefer: 'return=OperationOutcome' } });
      expect(claim.statusCode).toBe(201);
      expect(diagnostics(claim.body).join(' ')).toContain(`Profile ${sd.url} is not known`);
    };
    // An invariant the FHIRPath engine cannot compile.
    const broken = discharged('http://hospital.example/StructureDefinition/broken-invariant');
    broken.differential!.element[0]!.constraint![0]!.expression = "status = 'finished' implies (period.end.exists(";
    await storedWithWarning(broken, /not used as a profile: invariant hosp-enc-1 on Encounter cannot be evaluated/);
    // No snapshot, and a differential the server's snapshot generator does not cover.
    const unbuildable = discharged('http://hospital.example/StructureDefinition/unbuildable');
    unbuildable.differential!.element.push({ id: 'Encounter.nonsense', path: 'Encounter.nonsense', min: 1 });
    await storedWithWarning(unbuildable, /send it with a snapshot/);

    // The specification's own definitions (and the hospital's shipped profiles) are not replaced.
    const spoof = await t.request({ method: 'POST', url: '/fhir/StructureDefinition', payload: { ...discharged('http://hl7.org/fhir/StructureDefinition/vitalsigns'), type: 'Observation', baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Observation', differential: { element: [{ id: 'Observation', path: 'Observation' }] } }, headers: { prefer: 'return=OperationOutcome' } });
    expect(spoof.statusCode).toBe(201);
    expect(diagnostics(spoof.body).join(' ')).toMatch(/a definition the server ships/);
    const weight = { resourceType: 'Observation', meta: { profile: ['http://hl7.org/fhir/StructureDefinition/vitalsigns'] }, status: 'final', code: { text: 'weight' }, subject: { reference: 'Patient/example' }, effectiveDateTime: '2024-05-01' };
    expect((await t.request({ method: 'POST', url: '/fhir/Observation', payload: weight })).statusCode).toBe(422);

    // Not a profile (a logical model): stored without a word.
    const logical = { ...discharged('http://hospital.example/StructureDefinition/handover-note'), kind: 'logical', type: 'http://hospital.example/StructureDefinition/handover-note', derivation: 'specialization', baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Base', differential: { element: [{ id: 'HandoverNote', path: 'HandoverNote' }] } };
    const kept = await t.request({ method: 'POST', url: '/fhir/StructureDefinition', payload: logical, headers: { prefer: 'return=OperationOutcome' } });
    expect(kept.statusCode, kept.body).toBe(201);
    expect(diagnostics(kept.body).join(' ')).not.toMatch(/not used as a profile/);
  });
});

describe.skipIf(!process.env.DATABASE_URL)('stored profiles across processes (PostgreSQL)', () => {
  const apps: TestApp[] = [];
  beforeAll(async () => {
    apps.push(await startTestApp());
    apps.push(await startTestApp({ DATABASE_SCHEMA: apps[0]!.config.databaseSchema! }));
  }, 240_000);
  afterAll(async () => {
    await apps[1]?.close();
    await apps[0]?.close();
  });

  it('a profile stored through one process is enforced by the other without a restart, and by a process started later', async () => {
    const [a, b] = apps as [TestApp, TestApp];
    const url = 'http://hospital.example/StructureDefinition/discharged-encounter-shared';
    expect((await a.request({ method: 'POST', url: '/fhir/StructureDefinition', payload: discharged(url) })).statusCode).toBe(201);
    const claim = encounter({ meta: { profile: [url] }, period: { start: '2024-05-01' } });
    const deadline = Date.now() + 30_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await b.request({ method: 'POST', url: '/fhir/Encounter', payload: claim })).statusCode;
      if (status === 422) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toBe(422);
    const later = await startTestApp({ DATABASE_SCHEMA: a.config.databaseSchema! });
    try {
      expect((await later.request({ method: 'POST', url: '/fhir/Encounter', payload: claim })).statusCode).toBe(422);
    } finally {
      await later.server.close();
    }
  });
});
