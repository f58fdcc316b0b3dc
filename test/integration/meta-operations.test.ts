import type { Bundle, CapabilityStatement, Meta, OperationOutcome, Parameters, Patient } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/**
 * `$meta`, `$meta-add` and `$meta-delete` (src/interactions/meta.ts, src/search/meta-summary.ts;
 * https://hl7.org/fhir/R4/resource-operation-meta.html): tags, profiles and security labels read
 * and changed without sending the resource, at system, type, instance and version level.
 */

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

const RUN = `m${Date.now().toString(36)}`;
const TAG_SYSTEM = `https://tags.example.org/${RUN}`;
const HOLD = { system: 'https://fhir.hospital.example.org/CodeSystem/record-hold', code: 'legal-hold' };

const metaIn = (meta: Meta): Parameters => ({ resourceType: 'Parameters', parameter: [{ name: 'meta', valueMeta: meta }] });
const returned = (body: unknown): Meta => {
  const p = body as Parameters;
  expect(p.resourceType).toBe('Parameters');
  expect(p.parameter?.map((x) => x.name)).toEqual(['return']);
  return p.parameter![0]!.valueMeta!;
};

async function createPatient(family: string, meta?: Meta): Promise<string> {
  const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', ...(meta ? { meta } : {}), name: [{ family }] } });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as Patient).id!;
}

describe('$meta at instance and version level', () => {
  it('returns the meta a read returns, for the current version and for an older one', async () => {
    const id = await createPatient('MetaRead', { tag: [{ system: TAG_SYSTEM, code: 'first', display: 'First' }], profile: ['http://example.org/StructureDefinition/p1'] });
    const read = (await t.request({ method: 'GET', url: `/fhir/Patient/${id}` })).json() as Patient;
    for (const method of ['GET', 'POST'] as const) {
      const res = await t.request({ method, url: `/fhir/Patient/${id}/$meta` });
      expect(res.statusCode, res.body).toBe(200);
      expect(returned(res.json())).toEqual(read.meta);
      expect(res.headers.etag).toBe('W/"1"');
    }
    await t.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, name: [{ family: 'MetaRead2' }] } });
    const v1 = await t.request({ method: 'GET', url: `/fhir/Patient/${id}/_history/1/$meta` });
    expect(v1.statusCode).toBe(200);
    expect(returned(v1.json())).toEqual(read.meta);
    const current = returned((await t.request({ method: 'GET', url: `/fhir/Patient/${id}/$meta` })).json());
    expect(current.versionId).toBe('2');
    expect(current.tag).toBeUndefined();
  });

  it('answers 404 for an unknown resource or version, 410 for a deleted resource, 400 for a bad id', async () => {
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/no-such-patient/$meta' })).statusCode).toBe(404);
    const id = await createPatient('MetaGone');
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${id}/_history/9/$meta` })).statusCode).toBe(404);
    await t.request({ method: 'DELETE', url: `/fhir/Patient/${id}` });
    const gone = await t.request({ method: 'GET', url: `/fhir/Patient/${id}/$meta` });
    expect(gone.statusCode).toBe(410);
    expect((gone.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/bad$id/$meta' })).statusCode).toBe(400);
  });
});

describe('$meta-add and $meta-delete', () => {
  it('adds tags, labels and profiles as sets (system + code; version and display ignored) in a new version', async () => {
    const id = await createPatient('MetaAdd', { tag: [{ system: TAG_SYSTEM, code: 'a', display: 'A' }] });
    const res = await t.request({
      method: 'POST',
      url: `/fhir/Patient/${id}/$meta-add`,
      payload: metaIn({
        tag: [{ system: TAG_SYSTEM, code: 'a', display: 'other display', version: '2' }, { system: TAG_SYSTEM, code: 'b' }],
        security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }],
        profile: ['http://example.org/StructureDefinition/p2'],
      }),
    });
    expect(res.statusCode, res.body).toBe(200);
    const meta = returned(res.json());
    expect(meta.tag).toEqual([{ system: TAG_SYSTEM, code: 'a', display: 'A' }, { system: TAG_SYSTEM, code: 'b' }]);
    expect(meta.security).toEqual([{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }]);
    expect(meta.profile).toEqual(['http://example.org/StructureDefinition/p2']);
    expect(meta.versionId).toBe('2');
    expect(res.headers.etag).toBe('W/"2"');
    // The resource itself carries it, history keeps version 1, and the search index sees it.
    const read = (await t.request({ method: 'GET', url: `/fhir/Patient/${id}` })).json() as Patient;
    expect(read.meta).toEqual(meta);
    expect(read.name).toEqual([{ family: 'MetaAdd' }]);
    const history = (await t.request({ method: 'GET', url: `/fhir/Patient/${id}/_history` })).json() as Bundle;
    expect(history.total).toBe(2);
    const found = (await t.request({ method: 'GET', url: `/fhir/Patient?_tag=${encodeURIComponent(`${TAG_SYSTEM}|b`)}` })).json() as Bundle;
    expect(found.entry?.map((e) => e.resource?.id)).toEqual([id]);
  });

  it('adding what is there already writes no version', async () => {
    const id = await createPatient('MetaSame', { tag: [{ system: TAG_SYSTEM, code: 'same' }] });
    const res = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-add`, payload: metaIn({ tag: [{ system: TAG_SYSTEM, code: 'same', display: 'ignored' }] }) });
    expect(res.statusCode).toBe(200);
    expect(returned(res.json()).versionId).toBe('1');
    expect(((await t.request({ method: 'GET', url: `/fhir/Patient/${id}/_history` })).json() as Bundle).total).toBe(1);
  });

  it('deletes by system + code and by profile URL; deleting what is absent is no error and no version', async () => {
    const id = await createPatient('MetaDelete', {
      tag: [{ system: TAG_SYSTEM, code: 'keep' }, { system: TAG_SYSTEM, code: 'drop', display: 'Drop' }],
      profile: ['http://example.org/StructureDefinition/p3'],
    });
    const absent = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-delete`, payload: metaIn({ tag: [{ system: TAG_SYSTEM, code: 'never-there' }] }) });
    expect(absent.statusCode).toBe(200);
    expect(returned(absent.json()).versionId).toBe('1');
    const res = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-delete`, payload: metaIn({ tag: [{ system: TAG_SYSTEM, code: 'drop' }], profile: ['http://example.org/StructureDefinition/p3'] }) });
    expect(res.statusCode, res.body).toBe(200);
    const meta = returned(res.json());
    expect(meta.tag).toEqual([{ system: TAG_SYSTEM, code: 'keep' }]);
    expect(meta.profile).toBeUndefined();
    expect(meta.versionId).toBe('2');
    const found = (await t.request({ method: 'GET', url: `/fhir/Patient?_tag=${encodeURIComponent(`${TAG_SYSTEM}|drop`)}` })).json() as Bundle;
    expect(found.entry ?? []).toEqual([]);
  });

  it('on a version: the current one is changed; an older one is refused (history is append-only) and stays as it was', async () => {
    const id = await createPatient('MetaVersion');
    await t.request({ method: 'PUT', url: `/fhir/Patient/${id}`, payload: { resourceType: 'Patient', id, name: [{ family: 'MetaVersion2' }] } });
    const current = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/_history/2/$meta-add`, payload: metaIn({ tag: [{ system: TAG_SYSTEM, code: 'v' }] }) });
    expect(current.statusCode, current.body).toBe(200);
    expect(returned(current.json()).versionId).toBe('3');
    const old = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/_history/1/$meta-add`, payload: metaIn({ tag: [{ system: TAG_SYSTEM, code: 'v' }] }) });
    expect(old.statusCode).toBe(400);
    expect((old.json() as OperationOutcome).issue[0]?.code).toBe('not-supported');
    expect(returned((await t.request({ method: 'GET', url: `/fhir/Patient/${id}/_history/1/$meta` })).json()).tag).toBeUndefined();
  });

  it('refuses malformed input with a 400 naming it, and writes nothing', async () => {
    const id = await createPatient('MetaBad');
    const bodies: unknown[] = [
      { resourceType: 'Patient' },
      { resourceType: 'Parameters' },
      { resourceType: 'Parameters', parameter: [{ name: 'meta', valueString: 'x' }] },
      metaIn({ tag: [{ system: TAG_SYSTEM }] }),
      { resourceType: 'Parameters', parameter: [{ name: 'meta', valueMeta: { tag: 'not-a-list' } }] },
      { resourceType: 'Parameters', parameter: [{ name: 'meta', valueMeta: { profile: [42] } }] },
      { resourceType: 'Parameters', parameter: [{ name: 'meta', valueMeta: {} }, { name: 'mode', valueCode: 'add' }] },
      { resourceType: 'Parameters', parameter: [{ name: 'meta', valueMeta: {} }, { name: 'meta', valueMeta: {} }] },
    ];
    for (const payload of bodies) {
      const res = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-add`, payload: payload as object });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
    expect(((await t.request({ method: 'GET', url: `/fhir/Patient/${id}/_history` })).json() as Bundle).total).toBe(1);
    expect((await t.request({ method: 'POST', url: '/fhir/Patient/no-such-patient/$meta-add', payload: metaIn({ tag: [{ system: TAG_SYSTEM, code: 'x' }] }) })).statusCode).toBe(404);
  });

  it('needs the right to update the type; a legal hold is lifted by an ADMIN only, as with any update', async () => {
    const id = await createPatient('MetaRights');
    const reader = await t.tokenFor('system/Patient.rs');
    const refused = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-add`, payload: metaIn({ tag: [{ system: TAG_SYSTEM, code: 'x' }] }), headers: { authorization: `Bearer ${reader}` } });
    expect(refused.statusCode).toBe(403);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${id}/$meta`, headers: { authorization: `Bearer ${reader}` } })).statusCode).toBe(200);

    const receptionist = (await signInAs(t, 'RECEPTIONIST', 'Practitioner/rec-meta')).token;
    const admin = (await signInAs(t, 'ADMIN', 'Practitioner/adm-meta')).token;
    const hold = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-add`, payload: metaIn({ security: [HOLD] }), headers: { authorization: `Bearer ${receptionist}` } });
    expect(hold.statusCode, hold.body).toBe(200);
    const lift = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-delete`, payload: metaIn({ security: [HOLD] }), headers: { authorization: `Bearer ${receptionist}` } });
    expect(lift.statusCode).toBe(403);
    expect(returned((await t.request({ method: 'GET', url: `/fhir/Patient/${id}/$meta` })).json()).security).toEqual([HOLD]);
    const lifted = await t.request({ method: 'POST', url: `/fhir/Patient/${id}/$meta-delete`, payload: metaIn({ security: [HOLD] }), headers: { authorization: `Bearer ${admin}` } });
    expect(lifted.statusCode, lifted.body).toBe(200);
    expect(returned(lifted.json()).security).toBeUndefined();
  });
});

describe('$meta over a type and the whole system', () => {
  it('lists the tags, labels and profiles in use on current resources, and drops what no current version carries', async () => {
    const a = await createPatient('MetaSumA', { tag: [{ system: TAG_SYSTEM, code: 'sum-1' }], profile: [`http://example.org/StructureDefinition/${RUN}`] });
    await createPatient('MetaSumB', { tag: [{ system: TAG_SYSTEM, code: 'sum-1' }, { system: TAG_SYSTEM, code: 'sum-2' }], security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }] });
    const obs = await t.request({ method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', meta: { tag: [{ system: TAG_SYSTEM, code: 'obs-only' }] }, status: 'final', code: { text: 'x' } } });
    expect(obs.statusCode).toBe(201);

    const patients = returned((await t.request({ method: 'GET', url: '/fhir/Patient/$meta' })).json());
    const ours = (m: Meta) => (m.tag ?? []).filter((c) => c.system === TAG_SYSTEM).map((c) => c.code);
    expect(ours(patients)).toContain('sum-1');
    expect(ours(patients)).toContain('sum-2');
    expect(ours(patients)).not.toContain('obs-only');
    expect(ours(patients).filter((c) => c === 'sum-1')).toHaveLength(1);
    expect(patients.profile).toContain(`http://example.org/StructureDefinition/${RUN}`);
    expect(patients.security).toContainEqual({ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' });
    expect(patients.versionId).toBeUndefined();

    const system = returned((await t.request({ method: 'GET', url: '/fhir/$meta' })).json());
    expect(ours(system)).toEqual(expect.arrayContaining(['sum-1', 'sum-2', 'obs-only']));

    // Once no current version carries the profile, it is no longer listed.
    await t.request({ method: 'POST', url: `/fhir/Patient/${a}/$meta-delete`, payload: metaIn({ profile: [`http://example.org/StructureDefinition/${RUN}`] }) });
    expect(returned((await t.request({ method: 'POST', url: '/fhir/Patient/$meta' })).json()).profile ?? []).not.toContain(`http://example.org/StructureDefinition/${RUN}`);
  });

  it('is refused to a token that sees part of the type only, and covers only the types a token may read', async () => {
    const patientId = await createPatient('MetaScoped');
    const patientToken = (await signInAs(t, 'PATIENT', `Patient/${patientId}`)).token;
    const typeLevel = await t.request({ method: 'GET', url: '/fhir/Patient/$meta', headers: { authorization: `Bearer ${patientToken}` } });
    expect(typeLevel.statusCode).toBe(403);
    expect((await t.request({ method: 'GET', url: '/fhir/$meta', headers: { authorization: `Bearer ${patientToken}` } })).statusCode).toBe(403);
    // Its own record's meta it may read.
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${patientId}/$meta`, headers: { authorization: `Bearer ${patientToken}` } })).statusCode).toBe(200);

    const observationsOnly = await t.tokenFor('system/Observation.rs');
    const system = returned((await t.request({ method: 'GET', url: '/fhir/$meta', headers: { authorization: `Bearer ${observationsOnly}` } })).json());
    const codes = (system.tag ?? []).filter((c) => c.system === TAG_SYSTEM).map((c) => c.code);
    expect(codes).toContain('obs-only');
    expect(codes).not.toContain('sum-2');
  });

  it('is declared in the CapabilityStatement', async () => {
    const cs = (await t.request({ method: 'GET', url: '/fhir/metadata' })).json() as CapabilityStatement;
    const rest = cs.rest![0]!;
    expect(rest.operation?.map((o) => o.name)).toContain('meta');
    const patient = rest.resource?.find((r) => r.type === 'Patient');
    expect(patient?.operation?.map((o) => o.name)).toEqual(expect.arrayContaining(['meta', 'meta-add', 'meta-delete']));
  });
});
