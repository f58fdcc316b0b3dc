import type { Specimen } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 8 review item: a rewrite by a writer that resends what may be stored (HL7 v2 upsert)
 * is compared with the current version AFTER the before-write hooks have filled in what the
 * server assigns (here a Specimen's accession number): the same content makes no new version.
 * A plain FHIR PUT keeps making a new version each time (our behaviour before, unchanged).
 */
let app: TestApp;

beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

const specimen: Specimen = { resourceType: 'Specimen', subject: { reference: 'Patient/p1' }, note: [{ text: 'first' }] };

async function createSpecimen(): Promise<string> {
  const res = await app.request({ method: 'POST', url: '/fhir/Specimen', payload: specimen });
  expect(res.statusCode, res.body).toBe(201);
  return (res.json() as Specimen).id as string;
}

/** updateIfChanged of `content` in a transaction of its own: the version written, or undefined. */
async function updateIfChanged(id: string, content: Specimen): Promise<string | undefined> {
  return app.server.store.transaction(async (tx) => {
    const current = await tx.readForUpdate('Specimen', id);
    if (!current) throw new Error('the specimen is gone');
    return (await tx.updateIfChanged({ ...content, id }, current, 'PUT'))?.versionId;
  });
}

async function versionOf(id: string): Promise<string | undefined> {
  return (await app.server.store.read('Specimen', id))?.versionId;
}

describe('issue 8: no new version when the content after the before-write hooks is unchanged', () => {
  it('issue 8: the same content without the server-assigned accession number makes no new version', async () => {
    const id = await createSpecimen();
    // The message has no accession number; the hook puts the stored one back, so nothing changed.
    expect(await updateIfChanged(id, specimen)).toBeUndefined();
    expect(await versionOf(id)).toBe('1');
    const history = await app.request({ method: 'GET', url: `/fhir/Specimen/${id}/_history` });
    expect((history.json() as { total?: number; entry?: unknown[] }).entry).toHaveLength(1);
  });

  it('issue 8: a real change still makes the next version, keeping the accession number', async () => {
    const id = await createSpecimen();
    const before = (await app.request({ method: 'GET', url: `/fhir/Specimen/${id}` })).json() as Specimen;
    expect(await updateIfChanged(id, { ...specimen, note: [{ text: 'haemolysed' }] })).toBe('2');
    const after = (await app.request({ method: 'GET', url: `/fhir/Specimen/${id}` })).json() as Specimen;
    expect(after.meta?.versionId).toBe('2');
    expect(after.note).toEqual([{ text: 'haemolysed' }]);
    expect(after.accessionIdentifier).toEqual(before.accessionIdentifier);
  });

  it('issue 8: a change of meta other than versionId / lastUpdated (a tag) is a change', async () => {
    const id = await createSpecimen();
    expect(await updateIfChanged(id, { ...specimen, meta: { tag: [{ system: 'urn:example:tags', code: 'x' }] } })).toBe('2');
  });

  it('issue 8: a plain PUT of identical content still makes a new version (FHIR update as before)', async () => {
    const id = await createSpecimen();
    const stored = (await app.request({ method: 'GET', url: `/fhir/Specimen/${id}` })).json() as Specimen;
    const res = await app.request({ method: 'PUT', url: `/fhir/Specimen/${id}`, payload: stored });
    expect(res.statusCode, res.body).toBe(200);
    expect(await versionOf(id)).toBe('2');
  });
});
