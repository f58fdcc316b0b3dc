import type { Bundle, Observation, OperationOutcome, Patient } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Parameters whose expression is exactly the union of other parameters' (Observation
 * `combo-code` = `code` | `component-code`, `combo-value-quantity`, `combo-code-value-quantity`;
 * Patient `phonetic` = `name`) keep no index rows of their own: searches read the rows of the
 * parameters they are made of (src/search/registry.ts, storedAs). They must find exactly what
 * their own rows found (https://hl7.org/fhir/R4/observation.html#search).
 */
let t: TestApp;
const LOINC = 'http://loinc.org';
const ids: Record<string, string> = {};

async function create<T extends Observation | Patient>(resource: T): Promise<T> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  expect(res.statusCode).toBe(201);
  return res.json() as T;
}

async function found(query: string): Promise<string[]> {
  const res = await t.request({ method: 'GET', url: `/fhir/${query}` });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.resource!.id!).sort();
}

const quantity = (value: number, code: string) => ({ value, unit: code, system: 'http://unitsofmeasure.org', code });

beforeAll(async () => {
  t = await startTestApp();
  // A blood pressure panel: its values are in components.
  ids.bp = (await create<Observation>({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: LOINC, code: '85354-9' }] },
    subject: { reference: 'Patient/derived-p1' },
    component: [
      { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: quantity(142, 'mm[Hg]') },
      { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: quantity(91, 'mm[Hg]') },
    ],
  })).id!;
  // A plain weight: code and value on the Observation itself.
  ids.weight = (await create<Observation>({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: LOINC, code: '29463-7' }] },
    subject: { reference: 'Patient/derived-p1' },
    valueQuantity: quantity(72, 'kg'),
  })).id!;
  ids.noCode = (await create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'free text only' } })).id!;
  ids.patient = (await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Derivedsmith', given: ['Ann'] }] })).id!;
});
afterAll(async () => {
  await t?.close();
});

describe('parameters derived from others (one set of index rows)', () => {
  it('stores no rows under combo-* or phonetic', async () => {
    const db = t.server.database.db;
    const rows = await sql<{ n: string }>`
      SELECT (SELECT count(*) FROM search_token WHERE param LIKE 'combo-%') + (SELECT count(*) FROM search_quantity WHERE param LIKE 'combo-%')
        + (SELECT count(*) FROM search_composite WHERE param LIKE 'combo-%') + (SELECT count(*) FROM search_string WHERE param = 'phonetic') AS n`.execute(db);
    expect(Number(rows.rows[0]!.n)).toBe(0);
    // … while the parameters they are made of have theirs.
    const own = await sql<{ n: string }>`SELECT count(*) AS n FROM search_token WHERE resource_id = ${ids.bp} AND param IN ('code', 'component-code')`.execute(db);
    expect(Number(own.rows[0]!.n)).toBe(3);
  });

  it('combo-code matches the code and every component code; code only the code', async () => {
    expect(await found(`Observation?combo-code=${LOINC}|8480-6`)).toEqual([ids.bp]);
    expect(await found(`Observation?combo-code=85354-9`)).toEqual([ids.bp]);
    expect(await found(`Observation?combo-code=8462-4,29463-7`)).toEqual([ids.bp, ids.weight].sort());
    expect(await found(`Observation?code=8480-6`)).toEqual([]);
    // (a code with text only has a row too: :text finds it)
    expect(await found(`Observation?combo-code:missing=true`)).toEqual([]);
    expect(await found(`Observation?combo-code:missing=false`)).toEqual([ids.bp, ids.noCode, ids.weight].sort());
    expect(await found(`Observation?combo-code:text=free text`)).toEqual([ids.noCode]);
    expect(await found(`Observation?combo-code:not=8480-6`)).toEqual([ids.noCode, ids.weight].sort());
  });

  it('combo-value-quantity and combo-code-value-quantity see component values too', async () => {
    expect(await found('Observation?combo-value-quantity=gt140')).toEqual([ids.bp]);
    expect(await found('Observation?combo-value-quantity=gt70')).toEqual([ids.bp, ids.weight].sort());
    expect(await found('Observation?value-quantity=gt140')).toEqual([]);
    expect(await found(`Observation?combo-code-value-quantity=${LOINC}|8480-6$gt140`)).toEqual([ids.bp]);
    expect(await found(`Observation?combo-code-value-quantity=${LOINC}|8462-4$gt140`)).toEqual([]);
    expect(await found(`Observation?combo-code-value-quantity=${LOINC}|29463-7$lt80`)).toEqual([ids.weight]);
    // chained from the patient's side with _has
    expect(await found(`Observation?combo-code=8480-6&subject=Patient/derived-p1`)).toEqual([ids.bp]);
  });

  it('phonetic reads the name rows', async () => {
    expect(await found('Patient?phonetic=derivedsmith')).toEqual([ids.patient]);
    expect(await found('Patient?phonetic=nobody-like-this')).toEqual([]);
  });

  it('refuses _sort on a derived parameter with a 400 naming the parameters to sort on', async () => {
    const res = await t.request({ method: 'GET', url: '/fhir/Observation?_sort=combo-code' });
    expect(res.statusCode).toBe(400);
    expect((res.json() as OperationOutcome).issue[0]?.diagnostics).toMatch(/code, component-code|component-code, code/);
  });

  it('a resource indexed before (with rows of its own under combo-code) is found, and loses them when written again', async () => {
    const db = t.server.database.db;
    // The layout of earlier versions: the same token under combo-code as well.
    await sql`INSERT INTO search_token (resource_type, resource_id, param, system, code, sort_asc, sort_desc)
      VALUES ('Observation', ${ids.weight}, 'combo-code', ${LOINC}, '29463-7', true, true)`.execute(db);
    expect(await found(`Observation?combo-code=29463-7`)).toEqual([ids.weight]);
    const current = (await t.request({ method: 'GET', url: `/fhir/Observation/${ids.weight}` })).json() as Observation;
    const res = await t.request({ method: 'PUT', url: `/fhir/Observation/${ids.weight}`, payload: { ...current, status: 'amended' } });
    expect(res.statusCode).toBe(200);
    const stale = await sql<{ n: string }>`SELECT count(*) AS n FROM search_token WHERE resource_id = ${ids.weight} AND param = 'combo-code'`.execute(db);
    expect(Number(stale.rows[0]!.n)).toBe(0);
    expect(await found(`Observation?combo-code=29463-7`)).toEqual([ids.weight]);
  });
});
