import type { Bundle, Observation } from 'fhir/r4.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { indexTables } from '../../src/search/index-tables.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * A new version's index rows are written as a difference from the replaced version's (only
 * changed rows are deleted and inserted, src/storage/write-sql.ts). Whatever the path (blind
 * PUT, If-Match PUT, transaction Bundle, delete, re-create), the rows must end up exactly
 * those of the same content freshly created.
 */
let app: TestApp;

beforeAll(async () => {
  app = await startTestApp();
});
afterAll(async () => {
  await app?.close();
});

function observation(code: string, value: number, date: string, extra: Partial<Observation> = {}): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    code: { coding: [{ system: 'http://loinc.org', code, display: `code ${code}` }], text: `code ${code}` },
    subject: { reference: 'Patient/p1' },
    effectiveDateTime: date,
    valueQuantity: { value, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
    ...extra,
  };
}

/** Every index row of a resource, without its id, as sorted JSON lines (a multiset). */
async function indexRows(id: string): Promise<string[]> {
  const out: string[] = [];
  for (const t of indexTables) {
    const r = await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(t.table)} WHERE resource_type = 'Observation' AND resource_id = ${id}`.execute(app.server.database.db);
    for (const row of r.rows) {
      const { resource_id: _id, ...rest } = row;
      const normalized = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v === null ? null : String(v)]));
      out.push(`${t.table} ${JSON.stringify(normalized)}`);
    }
  }
  return out.sort();
}

async function create(body: Observation): Promise<string> {
  const res = await app.request({ method: 'POST', url: '/fhir/Observation', payload: body });
  expect(res.statusCode).toBe(201);
  return (res.json() as Observation).id!;
}

/** The rows the content would have if it were created now. */
async function freshRows(body: Observation): Promise<string[]> {
  return indexRows(await create(body));
}

async function ids(query: string): Promise<string[]> {
  const res = await app.request({ method: 'GET', url: `/fhir/Observation?${query}` });
  expect(res.statusCode).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.resource!.id!).sort();
}

describe('index rows of a new version', () => {
  it('a blind PUT leaves exactly the rows of the new content; searches see the change', async () => {
    const id = await create(observation('1111-1', 5, '2020-01-01'));
    const next = observation('2222-2', 7, '2021-06-01');
    const res = await app.request({ method: 'PUT', url: `/fhir/Observation/${id}`, payload: { ...next, id } });
    expect(res.statusCode).toBe(200);
    expect(await indexRows(id)).toEqual(await freshRows(next));
    expect(await ids('code=1111-1')).not.toContain(id);
    expect(await ids('code=2222-2')).toContain(id);
    expect(await ids('value-quantity=5||kg')).not.toContain(id);
    expect(await ids('value-quantity=7||kg')).toContain(id);
    expect(await ids('category=vital-signs&status=final&date=2021-06-01')).toContain(id);
    expect(await ids('date=2020-01-01')).not.toContain(id);
  });

  it('an If-Match PUT of the same content keeps the rows; a change of one value changes one row', async () => {
    const first = observation('3333-3', 5, '2020-01-01');
    const id = await create(first);
    const same = await app.request({ method: 'PUT', url: `/fhir/Observation/${id}`, headers: { 'if-match': 'W/"1"' }, payload: { ...first, id } });
    expect(same.statusCode).toBe(200);
    expect(await indexRows(id)).toEqual(await freshRows(first));
    const amended = { ...first, status: 'amended' as const };
    const changed = await app.request({ method: 'PUT', url: `/fhir/Observation/${id}`, headers: { 'if-match': 'W/"2"' }, payload: { ...amended, id } });
    expect(changed.statusCode).toBe(200);
    expect(await indexRows(id)).toEqual(await freshRows(amended));
    expect(await ids('code=3333-3&status=final')).not.toContain(id);
    expect(await ids('code=3333-3&status=amended')).toContain(id);
  });

  it('updates in one transaction Bundle, a row dropped and a row added (multi-valued params, sort flags)', async () => {
    const a = observation('4444-4', 5, '2020-01-01');
    const b = observation('5555-5', 6, '2020-02-01');
    const idA = await create(a);
    const idB = await create(b);
    // A gains a second code (sort flags of `code` move), B loses its category and value.
    const a2 = observation('4444-4', 5, '2020-01-01', {
      code: { coding: [{ system: 'http://loinc.org', code: '4444-4' }, { system: 'http://loinc.org', code: '0000-1' }] },
    });
    const { category: _c, valueQuantity: _v, ...b2 } = observation('5555-5', 6, '2020-02-01');
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { ...a2, id: idA }, request: { method: 'PUT', url: `Observation/${idA}` } },
        { resource: { ...b2, id: idB } as Observation, request: { method: 'PUT', url: `Observation/${idB}` } },
      ],
    };
    const res = await app.request({ method: 'POST', url: '/fhir', payload: bundle });
    expect(res.statusCode).toBe(200);
    expect(await indexRows(idA)).toEqual(await freshRows(a2));
    expect(await indexRows(idB)).toEqual(await freshRows(b2 as Observation));
    expect(await ids('code=0000-1')).toContain(idA);
    expect(await ids('value-quantity=6||kg')).not.toContain(idB);
  });

  it('a delete removes every row and an update of the deleted resource writes them again', async () => {
    const body = observation('6666-6', 5, '2020-01-01');
    const id = await create(body);
    expect((await app.request({ method: 'DELETE', url: `/fhir/Observation/${id}` })).statusCode).toBeLessThan(300);
    expect(await indexRows(id)).toEqual([]);
    const again = await app.request({ method: 'PUT', url: `/fhir/Observation/${id}`, payload: { ...body, id } });
    expect(again.statusCode).toBe(201);
    expect(await indexRows(id)).toEqual(await freshRows(body));
  });
});
