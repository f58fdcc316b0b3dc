import type { Bundle, OperationOutcome, Patient } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

const patient = (family: string, extra: Partial<Patient> = {}): Patient => ({
  resourceType: 'Patient',
  name: [{ family, given: ['Ann'] }],
  gender: 'female',
  birthDate: '1980-04-02',
  ...extra,
});

async function createPatient(family: string, extra: Partial<Patient> = {}): Promise<Patient> {
  const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient(family, extra) });
  expect(res.statusCode).toBe(201);
  return res.json();
}

describe('create (R4 http.html#create)', () => {
  it('assigns id, versionId 1 and lastUpdated; answers Location and ETag', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient('Create', { id: 'client-chosen' }) });
    expect(res.statusCode).toBe(201);
    const body = res.json() as Patient;
    expect(body.id).toBeTruthy();
    expect(body.id).not.toBe('client-chosen');
    expect(body.meta?.versionId).toBe('1');
    expect(Date.parse(body.meta?.lastUpdated ?? '')).not.toBeNaN();
    expect(res.headers.location).toBe(`http://localhost:8080/fhir/Patient/${body.id}/_history/1`);
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.headers['content-type']).toMatch(/application\/fhir\+json/);
  });

  it('refuses a body of another type with 400', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Observation', payload: patient('Wrong') });
    expect(res.statusCode).toBe(400);
    expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
  });

  it('refuses an invalid resource with 422 naming the element', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', gender: 'robot', foo: 1 } });
    expect(res.statusCode).toBe(422);
    const oo = res.json() as OperationOutcome;
    const expressions = oo.issue.flatMap((i) => i.expression ?? []);
    expect(expressions.some((e) => e.includes('gender'))).toBe(true);
    expect(expressions.some((e) => e.includes('foo'))).toBe(true);
  });

  it('unknown resource type is 404', async () => {
    const res = await t.request({ method: 'POST', url: '/fhir/Spaceship', payload: { resourceType: 'Spaceship' } });
    expect(res.statusCode).toBe(404);
    expect(res.json().resourceType).toBe('OperationOutcome');
  });

  it('Prefer: return=minimal sends no body, return=OperationOutcome sends one', async () => {
    const minimal = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient('Min'), headers: { prefer: 'return=minimal' } });
    expect(minimal.statusCode).toBe(201);
    expect(minimal.body).toBe('');
    expect(minimal.headers.location).toMatch(/\/fhir\/Patient\/[^/]+\/_history\/1$/);
    const oo = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient('Oo'), headers: { prefer: 'return=OperationOutcome' } });
    expect(oo.statusCode).toBe(201);
    expect(oo.json().resourceType).toBe('OperationOutcome');
  });
});

describe('read and vread (http.html#read, #vread)', () => {
  it('reads the current version with ETag and Last-Modified', async () => {
    const created = await createPatient('Read');
    const res = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(created);
    expect(res.headers.etag).toBe('W/"1"');
    expect(new Date(res.headers['last-modified'] as string).getTime()).toBe(Math.floor(Date.parse(created.meta!.lastUpdated!) / 1000) * 1000);
  });

  it('404 for an unknown id, 400 for a malformed id', async () => {
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/does-not-exist' })).statusCode).toBe(404);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${'x'.repeat(65)}` })).statusCode).toBe(400);
  });

  it('conditional read: If-None-Match and If-Modified-Since give 304', async () => {
    const created = await createPatient('Cread');
    const etag = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}`, headers: { 'if-none-match': 'W/"1"' } });
    expect(etag.statusCode).toBe(304);
    const stale = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}`, headers: { 'if-none-match': 'W/"0"' } });
    expect(stale.statusCode).toBe(200);
    const later = new Date(Date.now() + 60_000).toUTCString();
    const since = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}`, headers: { 'if-modified-since': later } });
    expect(since.statusCode).toBe(304);
    const earlier = new Date(Date.now() - 3_600_000).toUTCString();
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}`, headers: { 'if-modified-since': earlier } })).statusCode).toBe(200);
  });

  it('_summary, _elements and _pretty shape the read', async () => {
    const created = await createPatient('Shape', { text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' } });
    const elements = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}?_elements=gender` });
    const body = elements.json() as Patient;
    expect(body.gender).toBe('female');
    expect(body.name).toBeUndefined();
    expect(body.meta?.tag?.some((tag) => tag.code === 'SUBSETTED')).toBe(true);
    const data = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}?_summary=data` })).json() as Patient;
    expect(data.text).toBeUndefined();
    expect(data.name).toBeDefined();
    const pretty = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}?_pretty=true` });
    expect(pretty.body).toContain('\n  "');
  });

  it('vread returns each version; an unknown version is 404', async () => {
    const created = await createPatient('Vread');
    await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, gender: 'male' } });
    const v1 = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/1` });
    const v2 = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/2` });
    expect((v1.json() as Patient).gender).toBe('female');
    expect((v2.json() as Patient).gender).toBe('male');
    expect(v2.headers.etag).toBe('W/"2"');
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/9` })).statusCode).toBe(404);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/abc` })).statusCode).toBe(404);
  });
});

describe('update (http.html#update)', () => {
  it('stores a new version', async () => {
    const created = await createPatient('Upd');
    const res = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, gender: 'other' } });
    expect(res.statusCode).toBe(200);
    expect(res.json().meta.versionId).toBe('2');
    expect(res.headers.etag).toBe('W/"2"');
  });

  it('If-Match with a stale version is 412 and changes nothing', async () => {
    const created = await createPatient('Stale');
    await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, gender: 'male' } });
    const res = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, gender: 'other' }, headers: { 'if-match': 'W/"1"' } });
    expect(res.statusCode).toBe(412);
    const current = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` })).json() as Patient;
    expect(current.gender).toBe('male');
    expect(current.meta?.versionId).toBe('2');
    const ok = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, gender: 'other' }, headers: { 'if-match': 'W/"2"' } });
    expect(ok.statusCode).toBe(200);
  });

  it('update-as-create with a client id answers 201', async () => {
    const res = await t.request({ method: 'PUT', url: '/fhir/Patient/client-id-1', payload: patient('Client', { id: 'client-id-1' }) });
    expect(res.statusCode).toBe(201);
    expect(res.headers.location).toBe('http://localhost:8080/fhir/Patient/client-id-1/_history/1');
  });

  it('id missing or different from the URL is 400', async () => {
    expect((await t.request({ method: 'PUT', url: '/fhir/Patient/abc', payload: patient('NoId') })).statusCode).toBe(400);
    expect((await t.request({ method: 'PUT', url: '/fhir/Patient/abc', payload: patient('Other', { id: 'xyz' }) })).statusCode).toBe(400);
  });

  it('an update of a deleted resource re-creates it (201) as the next version, searchable again', async () => {
    const created = await createPatient('Revived');
    expect((await t.request({ method: 'DELETE', url: `/fhir/Patient/${created.id}` })).statusCode).toBe(204);
    const res = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, name: [{ family: 'RevivedAgain' }] } });
    expect(res.statusCode).toBe(201);
    expect(res.json().meta.versionId).toBe('3');
    expect(res.headers.etag).toBe('W/"3"');
    expect(res.headers.location).toBe(`http://localhost:8080/fhir/Patient/${created.id}/_history/3`);
    const vread = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/3` });
    expect(vread.json().meta.versionId).toBe('3');
    const found = (await t.request({ method: 'GET', url: '/fhir/Patient?family=RevivedAgain' })).json() as Bundle;
    expect(found.entry?.map((e) => e.resource?.id)).toEqual([created.id]);
  });

  it('racing plain updates of one resource all land, as consecutive versions, with only the last one indexed', async () => {
    const created = await createPatient('RaceUpd');
    const n = 6;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, name: [{ family: `RaceUpd${i}` }] } })),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(n).fill(200));
    const versions = results.map((r) => Number(r.json().meta.versionId)).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: n }, (_, i) => i + 2));
    // each answer's body and ETag name the version that was stored under that number
    for (const r of results) {
      const v = r.json().meta.versionId as string;
      expect(r.headers.etag).toBe(`W/"${v}"`);
      const stored = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history/${v}` })).json() as Patient;
      expect(stored.name?.[0]?.family).toBe(r.json().name[0].family);
      expect(stored.meta?.versionId).toBe(v);
    }
    const current = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` })).json() as Patient;
    expect(current.meta?.versionId).toBe(String(n + 1));
    const history = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history` })).json() as Bundle;
    expect(history.total ?? history.entry?.length).toBe(n + 1);
    // the index holds the current version's names only
    const stale = (await t.request({ method: 'GET', url: '/fhir/Patient?family:exact=RaceUpd' })).json() as Bundle;
    expect(stale.entry ?? []).toEqual([]);
    const matches = (await t.request({ method: 'GET', url: `/fhir/Patient?_id=${created.id}&family=${current.name?.[0]?.family}` })).json() as Bundle;
    expect(matches.entry?.length).toBe(1);
    for (let i = 0; i < n; i++) {
      const family = `RaceUpd${i}`;
      const hits = (await t.request({ method: 'GET', url: `/fhir/Patient?_id=${created.id}&family:exact=${family}&_summary=count` })).json() as Bundle;
      expect(hits.total).toBe(family === current.name?.[0]?.family ? 1 : 0);
    }
  });

  it('plain updates of many resources at once (sent together as one statement) each get their own version and index rows', async () => {
    const system = 'http://hospital.example/basic';
    const tag = `many-${Date.now()}`;
    const basic = (i: number, round: number) => ({ resourceType: 'Basic', code: { text: 'many' }, identifier: [{ system, value: `${tag}-${i}-r${round}` }] });
    const created = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const res = await t.request({ method: 'POST', url: '/fhir/Basic', payload: basic(i, 0) });
        expect(res.statusCode).toBe(201);
        return res.json() as { id: string };
      }),
    );
    const before = t.server.store.combiner.sent.combinedTransactions;
    for (let round = 1; round <= 2; round++) {
      const results = await Promise.all(created.map((b, i) => t.request({ method: 'PUT', url: `/fhir/Basic/${b.id}`, payload: { ...basic(i, round), id: b.id } })));
      expect(results.map((r) => r.statusCode)).toEqual(created.map(() => 200));
      results.forEach((r, i) => {
        expect(r.json().id).toBe(created[i]!.id);
        expect(r.json().meta.versionId).toBe(String(round + 1));
        expect(r.headers.etag).toBe(`W/"${round + 1}"`);
      });
    }
    for (const [i, b] of created.entries()) {
      const now = (await t.request({ method: 'GET', url: `/fhir/Basic?identifier=${system}|${tag}-${i}-r2` })).json() as Bundle;
      expect(now.entry?.map((e) => e.resource?.id)).toEqual([b.id]);
      for (const round of [0, 1]) {
        const old = (await t.request({ method: 'GET', url: `/fhir/Basic?identifier=${system}|${tag}-${i}-r${round}&_summary=count` })).json() as Bundle;
        expect(old.total).toBe(0);
      }
      const history = (await t.request({ method: 'GET', url: `/fhir/Basic/${b.id}/_history` })).json() as Bundle;
      expect(history.entry?.map((e) => e.resource?.meta?.versionId)).toEqual(['3', '2', '1']);
    }
    // On PostgreSQL concurrent lone writes wait for each other and share statements (the
    // embedded database runs one transaction at a time: nothing waits there).
    if (process.env.DATABASE_URL) expect(t.server.store.combiner.sent.combinedTransactions).toBeGreaterThan(before);
  });

  it('an invalid update is 422 and keeps the old version', async () => {
    const created = await createPatient('Keep');
    const res = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, birthDate: '2020-13-45' } });
    expect(res.statusCode).toBe(422);
    const current = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` })).json() as Patient;
    expect(current.meta?.versionId).toBe('1');
  });
});

describe('patch (http.html#patch)', () => {
  it('applies a JSON Patch', async () => {
    const created = await createPatient('Jp');
    const res = await t.request({
      method: 'PATCH',
      url: `/fhir/Patient/${created.id}`,
      headers: { 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'replace', path: '/gender', value: 'male' }, { op: 'add', path: '/active', value: true }]),
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().gender).toBe('male');
    expect(res.json().active).toBe(true);
    expect(res.json().meta.versionId).toBe('2');
  });

  it('applies a FHIRPath Patch', async () => {
    const created = await createPatient('Fp');
    const res = await t.request({
      method: 'PATCH',
      url: `/fhir/Patient/${created.id}`,
      payload: {
        resourceType: 'Parameters',
        parameter: [
          {
            name: 'operation',
            part: [
              { name: 'type', valueCode: 'replace' },
              { name: 'path', valueString: 'Patient.birthDate' },
              { name: 'value', valueDate: '1990-01-01' },
            ],
          },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().birthDate).toBe('1990-01-01');
  });

  it('a patch that makes the resource invalid is 422; a malformed patch is 4xx; stale If-Match 412', async () => {
    const created = await createPatient('Bad');
    const invalid = await t.request({
      method: 'PATCH',
      url: `/fhir/Patient/${created.id}`,
      headers: { 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'add', path: '/gender', value: 'robot' }]),
    });
    expect(invalid.statusCode).toBe(422);
    const malformed = await t.request({
      method: 'PATCH',
      url: `/fhir/Patient/${created.id}`,
      headers: { 'content-type': 'application/json-patch+json' },
      payload: JSON.stringify([{ op: 'explode', path: '/gender' }]),
    });
    expect([400, 422]).toContain(malformed.statusCode);
    const stale = await t.request({
      method: 'PATCH',
      url: `/fhir/Patient/${created.id}`,
      headers: { 'content-type': 'application/json-patch+json', 'if-match': 'W/"7"' },
      payload: JSON.stringify([{ op: 'replace', path: '/gender', value: 'male' }]),
    });
    expect(stale.statusCode).toBe(412);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` })).json().meta.versionId).toBe('1');
  });
});

describe('delete (http.html#delete)', () => {
  it('deletes as a version: read gives 410, history shows the deletion', async () => {
    const created = await createPatient('Del');
    const del = await t.request({ method: 'DELETE', url: `/fhir/Patient/${created.id}` });
    expect(del.statusCode).toBe(204);
    const gone = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` });
    expect(gone.statusCode).toBe(410);
    expect(gone.json().resourceType).toBe('OperationOutcome');
    const again = await t.request({ method: 'DELETE', url: `/fhir/Patient/${created.id}` });
    expect(again.statusCode).toBe(204);
    const history = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history` })).json() as Bundle;
    expect(history.total).toBe(2);
    expect(history.entry?.[0].request?.method).toBe('DELETE');
    expect(history.entry?.[0].resource).toBeUndefined();
    expect(history.entry?.[1].resource?.id).toBe(created.id);
    // a deleted resource can be brought back by update: version 3
    const back = await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created } });
    expect(back.statusCode).toBe(201);
    expect(back.json().meta.versionId).toBe('3');
  });

  it('deleting an unknown resource is 404; a stale If-Match is 412', async () => {
    expect((await t.request({ method: 'DELETE', url: '/fhir/Patient/never-was' })).statusCode).toBe(404);
    const created = await createPatient('DelMatch');
    expect((await t.request({ method: 'DELETE', url: `/fhir/Patient/${created.id}`, headers: { 'if-match': 'W/"5"' } })).statusCode).toBe(412);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` })).statusCode).toBe(200);
  });
});

describe('history (http.html#history)', () => {
  it('instance, type and system history, newest first, paged without repeats', async () => {
    const marker = `Hist${Date.now()}`;
    const before = new Date().toISOString();
    const created = await createPatient(marker);
    for (let i = 0; i < 4; i++) {
      await t.request({ method: 'PUT', url: `/fhir/Patient/${created.id}`, payload: { ...created, active: i % 2 === 0 } });
    }
    const instance = (await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/_history` })).json() as Bundle;
    expect(instance.type).toBe('history');
    expect(instance.total).toBe(5);
    expect(instance.entry?.map((e) => e.resource?.meta?.versionId)).toEqual(['5', '4', '3', '2', '1']);
    expect(instance.entry?.[4].request?.method).toBe('POST');
    expect(instance.entry?.[0].response?.etag).toBe('W/"5"');

    const seen: string[] = [];
    let url: string | undefined = `/fhir/Patient/_history?_count=2&_since=${encodeURIComponent(before)}`;
    while (url) {
      const page = (await t.request({ method: 'GET', url })).json() as Bundle;
      expect(page.entry!.length).toBeLessThanOrEqual(2);
      for (const e of page.entry ?? []) seen.push(`${e.resource?.id ?? e.fullUrl}@${e.response?.etag}`);
      const next = page.link?.find((l) => l.relation === 'next')?.url;
      url = next ? next.replace('http://localhost:8080', '') : undefined;
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.filter((s) => s.startsWith(`${created.id}@`))).toHaveLength(5);

    const system = (await t.request({ method: 'GET', url: `/fhir/_history?_since=${encodeURIComponent(before)}&_count=100` })).json() as Bundle;
    expect(system.entry?.filter((e) => e.resource?.id === created.id)).toHaveLength(5);
  });

  it('rejects a malformed _since or _count with 400', async () => {
    expect((await t.request({ method: 'GET', url: '/fhir/_history?_since=yesterday' })).statusCode).toBe(400);
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/_history?_count=-1' })).statusCode).toBe(400);
    expect((await t.request({ method: 'GET', url: '/fhir/Patient/_history?_cursor=garbage' })).statusCode).toBe(400);
  });
});

describe('conditional interactions (http.html#ccreate, #cond-update, #cdelete)', () => {
  const system = 'http://hospital.example/mrn';

  it('conditional create returns the existing match instead of a duplicate', async () => {
    const value = `cc-${Date.now()}`;
    const first = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient('Cc', { identifier: [{ system, value }] }), headers: { 'if-none-exist': `identifier=${system}|${value}` } });
    expect(first.statusCode).toBe(201);
    const second = await t.request({ method: 'POST', url: '/fhir/Patient', payload: patient('Cc', { identifier: [{ system, value }] }), headers: { 'if-none-exist': `identifier=${system}|${value}` } });
    expect(second.statusCode).toBe(200);
    expect(second.json().id).toBe(first.json().id);
  });

  it('conditional create racing itself creates exactly one resource', async () => {
    const value = `race-${Date.now()}`;
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        t.request({ method: 'POST', url: '/fhir/Patient', payload: patient('Race', { identifier: [{ system, value }] }), headers: { 'if-none-exist': `identifier=${system}|${value}` } }),
      ),
    );
    expect(results.map((r) => r.statusCode).sort()).toEqual([200, 200, 200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.json().id)).size).toBe(1);
  });

  it('conditional update creates, then updates the single match; several matches are 412', async () => {
    const value = `cu-${Date.now()}`;
    const url = `/fhir/Patient?identifier=${encodeURIComponent(`${system}|${value}`)}`;
    const created = await t.request({ method: 'PUT', url, payload: patient('Cu', { identifier: [{ system, value }] }) });
    expect(created.statusCode).toBe(201);
    const updated = await t.request({ method: 'PUT', url, payload: patient('Cu', { identifier: [{ system, value }], gender: 'male' }) });
    expect(updated.statusCode).toBe(200);
    expect(updated.json().id).toBe(created.json().id);
    expect(updated.json().meta.versionId).toBe('2');
    await createPatient('Dup', { identifier: [{ system, value }] });
    expect((await t.request({ method: 'PUT', url, payload: patient('Cu', { identifier: [{ system, value }] }) })).statusCode).toBe(412);
  });

  it('conditional delete removes the single match', async () => {
    const value = `cd-${Date.now()}`;
    const created = await createPatient('Cd', { identifier: [{ system, value }] });
    const res = await t.request({ method: 'DELETE', url: `/fhir/Patient?identifier=${encodeURIComponent(`${system}|${value}`)}` });
    expect(res.statusCode).toBe(204);
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}` })).statusCode).toBe(410);
  });
});

describe('compartment search (R4 compartmentdefinition.html)', () => {
  it('Patient/x/* returns the patient and its compartment, and Patient/x/Observation only observations', async () => {
    const p = await createPatient('Compartment');
    const obs = await t.request({ method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${p.id}` } } });
    const enc = await t.request({ method: 'POST', url: '/fhir/Encounter', payload: { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: { reference: `Patient/${p.id}` } } });
    await createPatient('Other');
    const all = (await t.request({ method: 'GET', url: `/fhir/Patient/${p.id}/*` })).json() as Bundle;
    expect(all.entry?.map((e) => `${e.resource?.resourceType}/${e.resource?.id}`).sort()).toEqual(
      [`Patient/${p.id}`, `Observation/${obs.json().id}`, `Encounter/${enc.json().id}`].sort(),
    );
    const observations = (await t.request({ method: 'GET', url: `/fhir/Patient/${p.id}/Observation` })).json() as Bundle;
    expect(observations.entry?.map((e) => e.resource?.id)).toEqual([obs.json().id]);
  });
});

describe('$validate (resource-operation-validate)', () => {
  it('type level: OperationOutcome with errors and their locations', async () => {
    const ok = await t.request({ method: 'POST', url: '/fhir/Patient/$validate', payload: patient('Valid') });
    expect(ok.statusCode).toBe(200);
    expect((ok.json() as OperationOutcome).issue.every((i) => i.severity === 'information' || i.severity === 'warning')).toBe(true);
    const bad = await t.request({ method: 'POST', url: '/fhir/Patient/$validate', payload: { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', birthDate: 'soon' } }] } });
    expect(bad.statusCode).toBe(200);
    const issue = (bad.json() as OperationOutcome).issue.find((i) => i.severity === 'error');
    expect(issue?.expression?.[0]).toContain('birthDate');
  });

  it('instance level validates the stored resource', async () => {
    const created = await createPatient('ValInst');
    const res = await t.request({ method: 'GET', url: `/fhir/Patient/${created.id}/$validate` });
    expect(res.statusCode).toBe(200);
    expect((res.json() as OperationOutcome).issue.some((i) => i.severity === 'error')).toBe(false);
  });
});
