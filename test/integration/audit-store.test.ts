import type { AuditEvent, Bundle, OperationOutcome } from 'fhir/r4.js';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as m0014 from '../../migrations/0014-audit-events.js';
import { restAuditEvent, type AuditCaller } from '../../src/audit/audit-event.js';
import { indexTables } from '../../src/search/index-tables.js';
import { SearchIndexer } from '../../src/search/indexer.js';
import { AuditStore } from '../../src/storage/audit-store.js';
import { pgErrorCode } from '../../src/storage/pg-errors.js';
import { writeStatements } from '../../src/storage/write-sql.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { downloadAll, exportManifest } from './bulk-export-helpers.js';

let t: TestApp;
const source = { baseUrl: 'http://localhost:8080' };
const doctor: AuditCaller = { kind: 'user', subject: 'u-doc', clientId: 'app-1', fhirUser: 'Practitioner/doc-1', role: 'DOCTOR' };
const nurse: AuditCaller = { kind: 'user', subject: 'u-nurse', clientId: 'app-1', fhirUser: 'Practitioner/nurse-1', role: 'NURSE' };
const backend: AuditCaller = { kind: 'client', subject: 'backend-1', clientId: 'backend-1' };

/** 30 events: 3 callers × 10, patients pa/pb alternating, January 2026 day by day (X-Request-Id seed-i). */
const seeded: AuditEvent[] = [];

beforeAll(async () => {
  t = await startTestApp({ AUDIT_EVENTS: 'on' });
  for (let i = 0; i < 30; i++) {
    const caller = [doctor, nurse, backend][i % 3]!;
    const day = String(1 + i).padStart(2, '0');
    seeded.push(
      restAuditEvent(
        {
          interaction: i % 5 === 0 ? 'search-type' : 'read',
          action: 'R',
          status: i % 7 === 0 ? 404 : 200,
          caller,
          resources: [`Observation/obs-${i}`],
          ...(i % 5 === 0 ? { query: 'code=1', queryType: 'Observation' } : {}),
          patient: i % 2 ? 'pa' : 'pb',
          requestId: `seed-${i}`,
          recorded: `2026-01-${day}T12:00:00.000Z`,
        },
        source,
      ),
    );
  }
  for (const e of seeded) t.server.audit.record(e);
  await t.server.audit.flush();
}, 180_000);
afterAll(async () => {
  await t?.close();
});

async function search(query: string, status = 200): Promise<Bundle> {
  const res = await t.request({ method: 'GET', url: `/fhir/AuditEvent?${query}` });
  expect(res.statusCode, res.body).toBe(status);
  return res.json() as Bundle;
}
const ids = (b: Bundle) => (b.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!);
/** Which of the seeded events (by their X-Request-Id entity) a search found. */
const requestsOf = (b: Bundle) =>
  (b.entry ?? [])
    .map((e) => (e.resource as AuditEvent).entity?.find((x) => x.description === 'X-Request-Id')?.what?.identifier?.value)
    .filter((v): v is string => v?.startsWith('seed-') ?? false)
    .map((v) => Number(v.slice(5)))
    .sort((a, b) => a - b);
const expected = (keep: (i: number) => boolean) => seeded.map((_, i) => i).filter(keep);
const db = () => t.server.database.db as unknown as Kysely<unknown>;

describe('the audit trail table (migration 0014)', () => {
  it('keeps its upkeep cheap (migration 0034): lz4 content where the database has it (PGlite keeps pglz), small ANALYZE samples', async () => {
    const { rows } = await sql<{ name: string; c: string | null; s: number | null }>`SELECT attname AS name, attcompression::text AS c, attstattarget::int AS s
      FROM pg_attribute WHERE attrelid = 'audit_event'::regclass AND attnum > 0 AND NOT attisdropped`.execute(db());
    const content = rows.find((r) => r.name === 'content');
    if (process.env.DATABASE_URL) expect(content?.c).toBe('l');
    else expect(content?.c).not.toBe('l');
    expect(content?.s).toBe(0);
    // Every column sampled at target 10: ANALYZE reads 300 × the largest target rows.
    expect(rows.filter((r) => r.name !== 'content').map((r) => [r.name, r.s])).toEqual(rows.filter((r) => r.name !== 'content').map((r) => [r.name, 10]));
    await sql`ANALYZE audit_event`.execute(db());
  });

  it('is analyzed and vacuumed less often than other tables, and its keys are lz4-compressed where the database has it (migration 0039)', async () => {
    const { rows } = await sql<{ options: string | null; keys: string | null }>`SELECT array_to_string(c.reloptions, ',') AS options,
      (SELECT attcompression::text FROM pg_attribute WHERE attrelid = c.oid AND attname = 'search_keys') AS keys
      FROM pg_class c WHERE c.oid = 'audit_event'::regclass`.execute(db());
    expect(rows[0]?.options?.split(',').sort()).toEqual(['autovacuum_analyze_scale_factor=0.5', 'autovacuum_vacuum_insert_scale_factor=1']);
    if (process.env.DATABASE_URL) expect(rows[0]?.keys).toBe('l');
    else expect(rows[0]?.keys).not.toBe('l');
  });

  it('stores AuditEvents in audit_event only: no resource or history row of their own, no generic index rows', async () => {
    const count = async (q: string) => Number((await sql.raw<{ n: string }>(q).execute(db())).rows[0]!.n);
    expect(await count(`SELECT count(*) AS n FROM audit_event`)).toBeGreaterThanOrEqual(30);
    expect(await count(`SELECT count(*) AS n FROM ONLY resource WHERE resource_type = 'AuditEvent'`)).toBe(0);
    expect(await count(`SELECT count(*) AS n FROM ONLY resource_history WHERE resource_type = 'AuditEvent'`)).toBe(0);
    for (const table of ['search_token', 'search_reference', 'search_date', 'search_string']) {
      expect(await count(`SELECT count(*) AS n FROM ${table} WHERE resource_type = 'AuditEvent'`)).toBe(0);
    }
    // append-only, even for SQL that goes around the API
    await expect(sql`UPDATE audit_event SET recorded = now()`.execute(db())).rejects.toThrow(/append-only/);
    await expect(sql`DELETE FROM resource WHERE resource_type = 'AuditEvent'`.execute(db())).rejects.toThrow(/append-only/);
  });

  it('one statement stores a batch, each event with its own id, time, keys and content; a malformed event fails its batch with a data error', async () => {
    const store = new AuditStore(t.server.database.db);
    const row = (id: string, extra = '') => ({
      id,
      recorded: `2026-02-0${id.slice(-1)}T08:00:00.000Z`,
      keys: JSON.stringify([`altid=|${id}`, 'action=|R']),
      head: `{"resourceType":"AuditEvent","action":"R","recorded":"2026-02-0${id.slice(-1)}T08:00:00.000Z"${extra},"id":"${id}"`,
    });
    await store.append([row('batch-1'), row('batch-2', ',"outcomeDesc":"a \\u001e b"'), row('batch-3')]);
    const { rows } = await sql<{ id: string; recorded: string; keys: string[]; cid: string; version: string; desc: string | null }>`SELECT id, to_char(recorded AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI') AS recorded, search_keys AS keys,
        content->>'id' AS cid, content->'meta'->>'versionId' AS version, content->>'outcomeDesc' AS desc
      FROM audit_event WHERE id LIKE 'batch-%' ORDER BY id`.execute(db());
    expect(rows).toEqual([
      { id: 'batch-1', recorded: '2026-02-01T08:00', keys: ['altid=|batch-1', 'action=|R'], cid: 'batch-1', version: '1', desc: null },
      { id: 'batch-2', recorded: '2026-02-02T08:00', keys: ['altid=|batch-2', 'action=|R'], cid: 'batch-2', version: '1', desc: 'a \u001e b' },
      { id: 'batch-3', recorded: '2026-02-03T08:00', keys: ['altid=|batch-3', 'action=|R'], cid: 'batch-3', version: '1', desc: null },
    ]);
    // Not JSON, or a raw U+001E (the events' separator in the statement): the whole batch is
    // refused with a data error (SQLSTATE class 22/23), which the writer isolates by halving.
    for (const bad of [{ ...row('batch-5'), head: '{"resourceType":"AuditEvent","id":' }, row('batch-6', ',"outcomeDesc":"a \u001e b"')]) {
      const error = await store.append([row('batch-4'), bad, row('batch-7')]).catch((e: unknown) => e);
      expect(pgErrorCode(error)).toMatch(/^(22|23)/);
    }
    const left = await sql<{ n: string }>`SELECT count(*) AS n FROM audit_event WHERE id IN ('batch-4', 'batch-5', 'batch-6', 'batch-7')`.execute(db());
    expect(Number(left.rows[0]!.n)).toBe(0);
  });

  it('reads, vreads and histories an AuditEvent as its one version; writes stay refused', async () => {
    const [first] = ids(await search('patient=pa&_count=1'));
    const read = await t.request({ method: 'GET', url: `/fhir/AuditEvent/${first}` });
    expect(read.statusCode).toBe(200);
    expect(read.json()).toMatchObject({ resourceType: 'AuditEvent', id: first, meta: { versionId: '1' } });
    expect((await t.request({ method: 'GET', url: `/fhir/AuditEvent/${first}/_history/1` })).json()).toEqual(read.json());
    expect((await t.request({ method: 'GET', url: `/fhir/AuditEvent/${first}/_history/2` })).statusCode).toBe(404);
    const history = (await t.request({ method: 'GET', url: `/fhir/AuditEvent/${first}/_history` })).json() as Bundle;
    expect(history.entry?.map((e) => e.resource?.id)).toEqual([first]);
    const typeHistory = (await t.request({ method: 'GET', url: `/fhir/AuditEvent/_history?_count=1000` })).json() as Bundle;
    expect(typeHistory.entry?.some((e) => e.resource?.id === first)).toBe(true);
    const put = await t.request({ method: 'PUT', url: `/fhir/AuditEvent/${first}`, payload: { ...(read.json() as AuditEvent), outcome: '8' } });
    expect(put.statusCode).toBe(403);
    expect((put.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    expect((await t.request({ method: 'DELETE', url: `/fhir/AuditEvent/${first}` })).statusCode).toBe(403);
  });

  it('searches patient, agent, entity, date, type, subtype, action, outcome, altid and _id (R4 AuditEvent search parameters)', async () => {
    expect(requestsOf(await search('patient=pa&_count=100'))).toEqual(expected((i) => i % 2 === 1));
    expect(requestsOf(await search('patient=Patient/pb&_count=100'))).toEqual(expected((i) => i % 2 === 0));
    expect(requestsOf(await search('agent=Practitioner/nurse-1&_count=100'))).toEqual(expected((i) => i % 3 === 1));
    expect(requestsOf(await search('agent:identifier=http://localhost:8080/auth/clients|backend-1&_count=100'))).toEqual(expected((i) => i % 3 === 2));
    expect(requestsOf(await search('altid=u-doc&_count=100'))).toEqual(expected((i) => i % 3 === 0));
    expect(requestsOf(await search('entity=Observation/obs-4'))).toEqual([4]);
    expect(requestsOf(await search('entity=obs-4,obs-5'))).toEqual([4, 5]);
    expect(requestsOf(await search('date=ge2026-01-10&date=lt2026-01-13&_count=100'))).toEqual([9, 10, 11]);
    expect(requestsOf(await search('date=2026-01-05'))).toEqual([4]);
    expect(requestsOf(await search('subtype=search-type&outcome=0&_count=100'))).toEqual(expected((i) => i % 5 === 0 && i % 7 !== 0));
    expect(requestsOf(await search('outcome=4&patient=pa&_count=100'))).toEqual(expected((i) => i % 7 === 0 && i % 2 === 1));
    expect(requestsOf(await search('outcome:not=0&action=R&type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest&_count=100'))).toEqual(expected((i) => i % 7 === 0));
    expect(requestsOf(await search('action=|R&date=lt2026-01-03&_count=100'))).toEqual([0, 1]);
    expect((await search('action=C&date=lt2026-02')).total).toBe(0);
    const [one] = ids(await search('entity=Observation/obs-8'));
    expect(ids(await search(`_id=${one}`))).toEqual([one]);
    // (this test's own requests are audited too, recorded now: the date keeps to the seeded ones)
    expect((await search('patient=pa&date=lt2026-02&_summary=count')).total).toBe(15);
    // the Patient compartment
    const compartment = await t.request({ method: 'GET', url: '/fhir/Patient/pb/AuditEvent?_count=100' });
    expect(requestsOf(compartment.json() as Bundle)).toEqual(expected((i) => i % 2 === 0));
  });

  it('pages with _count and next links (no duplicates, nothing missed), in _sort order', async () => {
    const all: number[] = [];
    let url: string | undefined = '/fhir/AuditEvent?patient=pa&date=lt2026-02&_count=4&_sort=-date';
    let first: Bundle | undefined;
    while (url) {
      const page = (await t.request({ method: 'GET', url: url.replace('http://localhost:8080', '') })).json() as Bundle;
      first ??= page;
      all.push(...requestsOf(page).reverse());
      url = page.link?.find((l) => l.relation === 'next')?.url;
    }
    expect(first?.total).toBe(15);
    expect(all).toEqual(expected((i) => i % 2 === 1).reverse());
  });

  it('$export of AuditEvent (Bulk Data, a backend client) carries the audit trail table', async () => {
    const exported = (await downloadAll(t, await exportManifest(t, '/fhir/$export?_type=AuditEvent'))) as AuditEvent[];
    const seededIds = new Set(ids(await search('date=lt2026-02&_count=100')));
    expect(seededIds.size).toBe(30);
    expect(exported.filter((e) => seededIds.has(e.id!))).toHaveLength(30);
  });

  it('answers what the key index cannot do with 400 OperationOutcomes, not wrong results', async () => {
    for (const query of ['patient.name=x', 'outcome:missing=true', 'subtype=http://hl7.org/fhir/restful-interaction|', '_sort=outcome', '_include=AuditEvent:entity', 'agent-name=x']) {
      const res = await t.request({ method: 'GET', url: `/fhir/AuditEvent?${query}`, headers: { prefer: 'handling=strict' } });
      expect(res.statusCode, query).toBe(400);
      expect((res.json() as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
  });

  it('AuditEvents stored before migration 0014 (resource, history and index rows) are moved and stay readable and searchable', async () => {
    // Back to the old layout: no audit_event table, an AuditEvent written by the general write path.
    await m0014.down(db());
    const old = { ...restAuditEvent({ interaction: 'read', action: 'R', status: 200, caller: doctor, resources: ['Observation/legacy-obs'], patient: 'legacy-p', recorded: '2025-06-01T08:00:00.000Z' }, source), id: 'legacy-audit-1', meta: { versionId: '1', lastUpdated: '2025-06-01T08:00:01.000Z' } };
    const indexer = new SearchIndexer(t.server.registry, { baseUrls: ['http://localhost:8080/fhir'] });
    const change = { method: 'POST' as const, resourceType: 'AuditEvent', id: old.id, versionId: '1', lastUpdated: old.meta.lastUpdated };
    for (const s of writeStatements(indexTables, [{ change, json: JSON.stringify(old), indexRows: indexer.extract(old) }])) {
      await t.server.database.db.executeQuery(CompiledQuery.raw(s.sql, s.parameters));
    }
    await m0014.up(db());
    expect((await t.request({ method: 'GET', url: '/fhir/AuditEvent/legacy-audit-1' })).json()).toEqual(old);
    expect(ids(await search('patient=legacy-p&entity=Observation/legacy-obs&agent=Practitioner/doc-1&subtype=read&date=2025-06-01'))).toEqual(['legacy-audit-1']);
    const moved = await sql<{ n: string }>`SELECT count(*) AS n FROM ONLY resource WHERE resource_type = 'AuditEvent'`.execute(db());
    expect(Number(moved.rows[0]!.n)).toBe(0);
    // and new events are written to the recreated table again
    t.server.audit.record(restAuditEvent({ interaction: 'read', action: 'R', status: 200, caller: nurse, resources: [], patient: 'after-migration', recorded: new Date().toISOString() }, source));
    await t.server.audit.flush();
    expect((await search('patient=after-migration')).total).toBe(1);
  });
});
