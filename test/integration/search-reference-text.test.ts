import type { Bundle, Observation } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/** Issue 15 §3: `:text` on reference parameters searches Reference.display as token :text searches text. */
describe(':text on reference parameters', () => {
  let t: TestApp;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    t = await startTestApp();
    const tag = `reftext-${Date.now()}`;
    const create = async (name: string, o: Partial<Observation>) => {
      const res = await t.request({ method: 'POST', url: '/fhir/Observation', payload: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'urn:reftext', code: tag }] }, ...o } });
      expect(res.statusCode, res.body).toBe(201);
      ids[name] = res.json().id;
    };
    await create('both', { subject: { reference: 'Patient/ref-text-1', display: 'Nguyễn Thị Hương' }, performer: [{ reference: 'Practitioner/dr-1', display: 'Dr. Trần Minh' }] });
    await create('displayOnly', { performer: [{ display: 'Night Laboratory Team' }] });
    await create('none', { subject: { reference: 'Patient/ref-text-2' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  const found = async (query: string): Promise<string[]> => {
    const res = await t.request({ method: 'GET', url: `/fhir/Observation?code=urn:reftext|&${query}` });
    expect(res.statusCode, res.body).toBe(200);
    return ((res.json() as Bundle).entry ?? []).map((e) => e.resource!.id!).sort();
  };
  const named = (...names: string[]) => names.map((n) => ids[n]!).sort();

  it('matches the start of any word of the display, without case or accents', async () => {
    expect(await found('subject:text=huong')).toEqual(named('both'));
    expect(await found('subject:text=NGUY')).toEqual(named('both'));
    expect(await found('performer:text=tran')).toEqual(named('both'));
    expect(await found('performer:text=laboratory')).toEqual(named('displayOnly'));
    expect(await found('performer:text=night lab')).toEqual(named('displayOnly'));
    expect(await found('subject:text=ong')).toEqual([]);
  });

  it('a reference with only a display is present (:missing) but matches no id', async () => {
    expect(await found('performer:missing=false')).toEqual(named('both', 'displayOnly'));
    expect(await found('performer:missing=true')).toEqual(named('none'));
    expect(await found('performer=Practitioner/dr-1')).toEqual(named('both'));
  });

  it('an update that changes the display is found by the new text only', async () => {
    const current = (await t.request({ method: 'GET', url: `/fhir/Observation/${ids.both}` })).json() as Observation;
    const res = await t.request({ method: 'PUT', url: `/fhir/Observation/${ids.both}`, payload: { ...current, subject: { reference: 'Patient/ref-text-1', display: 'Lê Văn Bình' } } });
    expect(res.statusCode, res.body).toBe(200);
    expect(await found('subject:text=huong')).toEqual([]);
    expect(await found('subject:text=binh')).toEqual(named('both'));
  });
});
