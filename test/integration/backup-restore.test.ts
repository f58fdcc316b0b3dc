/**
 * Issue 17 §5 and §8 (NFR-SEC-002 backups, moving data): a logical backup taken over the
 * server's schema and restored into a new database serves the same resources, versions, history,
 * searches, audit trail and clients. On the PostgreSQL run also the move path: the embedded
 * database copied into PostgreSQL by `npm run db:copy`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { Bundle } from 'fhir/r4.js';
import { sql } from 'kysely';
import { backupLines, restoreLines, RestoreRefused, analyzeRestored } from '../../src/storage/backup.js';
import { readLinesGzip, writeLinesGzip } from '../../src/storage/backup-file.js';
import { openDatabase } from '../../src/storage/db.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { dropTestSchema, startTestApp, type TestApp } from '../support/test-app.js';
import { registerClient } from './smart-helpers.js';

const POSTGRES = process.env.DATABASE_URL;
const work = mkdtempSync(join(tmpdir(), 'backup-test-'));
const schemas: string[] = [];

afterAll(async () => {
  for (const s of schemas) await dropTestSchema(s);
  rmSync(work, { recursive: true, force: true });
});

/** What the source served before the backup: the target must serve the same. */
interface Expected {
  reads: Map<string, unknown>;
  oldVersions: Map<string, unknown>;
  deleted: string;
  patientHistory: { url: string; versions: string[] };
  typeHistoryTotal: number;
  searches: Map<string, string[]>;
  auditEvents: number;
  client: { id: string; secret: string };
}

async function json<T>(t: TestApp, url: string): Promise<T> {
  const res = await t.request({ method: 'GET', url });
  expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
  return res.json() as T;
}

/** Creates, updates, deletes, a transaction, AuditEvents and a client; returns what they look like. */
async function buildData(t: TestApp): Promise<Expected> {
  const family = `Backup${randomBytes(3).toString('hex')}`;
  const created = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family, given: ['Ada'] }], birthDate: '1970-01-01' } });
  expect(created.statusCode, created.body).toBe(201);
  const patient = created.json() as { id: string };
  for (const given of ['Ada Maria', 'Ada Marie']) {
    const updated = await t.request({ method: 'PUT', url: `/fhir/Patient/${patient.id}`, payload: { resourceType: 'Patient', id: patient.id, name: [{ family, given: [given] }], birthDate: '1970-01-01' } });
    expect(updated.statusCode, updated.body).toBe(200);
  }
  const gone = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family: `${family}Gone` }] } });
  const goneId = (gone.json() as { id: string }).id;
  expect((await t.request({ method: 'DELETE', url: `/fhir/Patient/${goneId}` })).statusCode).toBe(204);
  const bundle = await t.request({
    method: 'POST',
    url: '/fhir',
    payload: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:6d3c1c1e-8c43-4d2a-9a43-1f2b3c4d5e6f', resource: { resourceType: 'Patient', name: [{ family, given: ['Bob'] }] }, request: { method: 'POST', url: 'Patient' } },
        {
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
            subject: { reference: 'urn:uuid:6d3c1c1e-8c43-4d2a-9a43-1f2b3c4d5e6f' },
            effectiveDateTime: '2026-01-02T10:00:00Z',
            valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
          },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    },
  });
  expect(bundle.statusCode, bundle.body).toBe(200);
  const ids = ((bundle.json() as Bundle).entry ?? []).map((e) => e.response?.location?.split('/_history')[0] ?? '');
  const [bob, observation] = ids as [string, string];

  const client = await registerClient(t, { client_name: 'backup test', grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', scope: 'system/Patient.rs' });

  const reads = new Map<string, unknown>();
  for (const url of [`Patient/${patient.id}`, bob, observation]) reads.set(url, await json(t, `/fhir/${url}`));
  const oldVersions = new Map<string, unknown>();
  oldVersions.set(`Patient/${patient.id}/_history/1`, await json(t, `/fhir/Patient/${patient.id}/_history/1`));
  const history = await json<Bundle>(t, `/fhir/Patient/${patient.id}/_history`);
  const typeHistory = await json<Bundle>(t, `/fhir/Patient/_history?_count=1&_total=accurate`);
  const searches = new Map<string, string[]>();
  for (const url of [`/fhir/Patient?family=${family}&_sort=_id`, `/fhir/Observation?subject=${bob}&code=http://loinc.org|8867-4`, `/fhir/Observation?value-quantity=gt70`, `/fhir/Patient?birthdate=1970-01-01&family=${family}`, `/fhir/Patient?_content=${family}`, '/fhir/Observation?_content=heart']) {
    searches.set(url, ((await json<Bundle>(t, url)).entry ?? []).map((e) => e.fullUrl ?? '').sort());
  }
  // The trail of every request above, written; counted without a request of its own.
  await t.server.audit.flush();
  const audit = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_event`.execute(t.server.database.db);
  return {
    reads,
    oldVersions,
    deleted: `Patient/${goneId}`,
    patientHistory: { url: `/fhir/Patient/${patient.id}/_history`, versions: (history.entry ?? []).map((e) => e.resource?.meta?.versionId ?? 'deleted') },
    typeHistoryTotal: typeHistory.total ?? -1,
    searches,
    auditEvents: audit.rows[0]?.n ?? -1,
    client: { id: client.client_id, secret: client.client_secret! },
  };
}

async function expectSame(t: TestApp, expected: Expected): Promise<void> {
  for (const [url, body] of expected.reads) expect(await json(t, `/fhir/${url}`), url).toEqual(body);
  for (const [url, body] of expected.oldVersions) expect(await json(t, `/fhir/${url}`), url).toEqual(body);
  expect((await t.request({ method: 'GET', url: `/fhir/${expected.deleted}` })).statusCode).toBe(410);
  const history = await json<Bundle>(t, expected.patientHistory.url);
  expect((history.entry ?? []).map((e) => e.resource?.meta?.versionId ?? 'deleted')).toEqual(expected.patientHistory.versions);
  expect(expected.patientHistory.versions).toEqual(['3', '2', '1']);
  expect((await json<Bundle>(t, `/fhir/Patient/_history?_count=1&_total=accurate`)).total).toBe(expected.typeHistoryTotal);
  for (const [url, ids] of expected.searches) {
    expect(ids.length, url).toBeGreaterThan(0);
    expect(((await json<Bundle>(t, url)).entry ?? []).map((e) => e.fullUrl ?? '').sort(), url).toEqual(ids);
  }
  expect(expected.auditEvents).toBeGreaterThan(0);
  expect((await json<Bundle>(t, '/fhir/AuditEvent?_summary=count')).total).toBe(expected.auditEvents);
  // The restored client signs in with its secret and reads.
  const token = await t.server.http.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${expected.client.id}:${expected.client.secret}`).toString('base64')}` },
    payload: 'grant_type=client_credentials&scope=system/Patient.rs',
  });
  expect(token.statusCode, token.body).toBe(200);
  const [first] = [...expected.reads.keys()];
  const read = await t.server.http.inject({ method: 'GET', url: `/fhir/${first}`, headers: { authorization: `Bearer ${(token.json() as { access_token: string }).access_token}` } });
  expect(read.statusCode, read.body).toBe(200);
}

/** A new, migrated database: a PGlite directory, or a schema of its own on PostgreSQL. */
function newTarget(): { env: Record<string, string>; open: () => ReturnType<typeof openDatabase> } {
  if (POSTGRES) {
    const schema = `t_bk_${randomBytes(5).toString('hex')}`;
    schemas.push(schema);
    return { env: { DATABASE_SCHEMA: schema }, open: () => openDatabase({ databaseUrl: POSTGRES, dataDir: 'memory', schema }) };
  }
  const dir = mkdtempSync(join(work, 'db-'));
  return { env: { DATA_DIR: dir }, open: () => openDatabase({ dataDir: dir }) };
}

describe('backup and restore (issue 17 §5, §8; NFR-SEC-002)', () => {
  it('NFR-SEC-002: a backup restored into a new database serves the same resources, versions, history, searches, audit trail and clients', async () => {
    const source = await startTestApp({ AUDIT_EVENTS: 'on' });
    const file = join(work, 'backup.ndjson.gz');
    let expected: Expected;
    try {
      expected = await buildData(source);
      await writeLinesGzip(backupLines(source.server.database.unlimitedDb, source.server.database.kind), file);
    } finally {
      await source.close();
    }
    const target = newTarget();
    const database = await target.open();
    try {
      await migrateToLatest(database.unlimitedDb);
      const summary = await restoreLines(database.unlimitedDb, readLinesGzip(file));
      expect(summary.rows).toBeGreaterThan(20);
      await analyzeRestored(database.unlimitedDb);
      // A second restore into the now full database is refused; a backup of a newer release, a
      // damaged and a cut-short one too, even with --force: in one transaction, so the restored
      // data stays whole (checked below).
      await expect(restoreLines(database.unlimitedDb, readLinesGzip(file))).rejects.toBeInstanceOf(RestoreRefused);
      const lines: string[] = [];
      for await (const line of readLinesGzip(file)) lines.push(line);
      const header = JSON.parse(lines[0]!) as { migrations: string[] };
      const newer = JSON.stringify({ ...header, migrations: [...header.migrations, '9999-future'] });
      await expect(restoreLines(database.unlimitedDb, toLines([newer, ...lines.slice(1)]), { force: true })).rejects.toThrow(/newer release/);
      await expect(restoreLines(database.unlimitedDb, toLines(lines.slice(0, Math.floor(lines.length / 2))), { force: true })).rejects.toThrow(/incomplete/);
      await expect(restoreLines(database.unlimitedDb, toLines(['not json']), { force: true })).rejects.toThrow();
      // A backup made before search_text was partitioned (migration 0038) names one table
      // search_text: restored (here over the same data, with --force) through the partitioned
      // table, which routes each row to its partition. The searches below then read those rows.
      const textRows = async () => Number((await sql<{ n: string }>`SELECT count(*)::text AS n FROM search_text`.execute(database.unlimitedDb)).rows[0]!.n);
      const restoredTextRows = await textRows();
      expect(restoredTextRows).toBeGreaterThan(0);
      await restoreLines(database.unlimitedDb, toLines(asOneSearchTextTable(lines)), { force: true });
      expect(await textRows()).toBe(restoredTextRows);
    } finally {
      await database.close();
    }
    const restored = await startTestApp(target.env);
    try {
      await expectSame(restored, expected);
      // The restored database keeps working: new writes get new ids and versions go on.
      const [patientUrl] = [...expected.reads.keys()];
      const body = expected.reads.get(patientUrl!) as { id: string; name: unknown };
      const updated = await restored.request({ method: 'PUT', url: `/fhir/${patientUrl}`, payload: { resourceType: 'Patient', id: body.id, name: body.name } });
      expect(updated.statusCode, updated.body).toBe(200);
      expect((updated.json() as { meta: { versionId: string } }).meta.versionId).toBe('4');
    } finally {
      await restored.close();
    }
  }, 240_000);

  it.runIf(POSTGRES)('moves the embedded database to PostgreSQL with npm run db:copy, keeping ids, versions, history and clients', async () => {
    const dataDir = mkdtempSync(join(work, 'embedded-'));
    const source = await startTestApp({ DATABASE_URL: '', DATA_DIR: dataDir, AUDIT_EVENTS: 'on' });
    let expected: Expected;
    try {
      expected = await buildData(source);
    } finally {
      await source.close();
    }
    const target = newTarget();
    const { stdout } = await promisify(execFile)('npx', ['tsx', 'scripts/db-copy.ts', '--from-data-dir', dataDir, '--to', POSTGRES!, '--to-schema', target.env.DATABASE_SCHEMA!, '--quiet'], {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, DATABASE_URL: '' },
    });
    expect(stdout).toMatch(/copied embedded database .* to PostgreSQL .*: \d+ tables, \d+ rows/);
    const moved = await startTestApp(target.env);
    try {
      await expectSame(moved, expected);
    } finally {
      await moved.close();
    }
  }, 300_000);
});

async function* toLines(lines: string[]): AsyncGenerator<string> {
  yield* lines;
}

/**
 * The backup's lines as a release before migration 0038 wrote them: the partitions of
 * search_text (dumped one after the other) as the one table search_text.
 */
function asOneSearchTextTable(lines: string[]): string[] {
  const partition = (name: string | undefined) => name !== undefined && name.startsWith('search_text_');
  const header = JSON.parse(lines[0]!) as { tables: { name: string; rows: number }[] };
  const partitions = header.tables.filter((t) => partition(t.name));
  const tables = [...header.tables.filter((t) => !partition(t.name)), { name: 'search_text', rows: partitions.reduce((a, t) => a + t.rows, 0) }];
  const out = [JSON.stringify({ ...header, tables })];
  let opened = false;
  for (const line of lines.slice(1)) {
    const item = JSON.parse(line) as { '@table'?: string; '@end'?: string; columns?: string[] };
    if (partition(item['@table'])) {
      if (!opened) out.push(JSON.stringify({ '@table': 'search_text', columns: item.columns }));
      opened = true;
    } else if (partition(item['@end'])) {
      if (item['@end'] === partitions.at(-1)!.name) out.push(JSON.stringify({ '@end': 'search_text', rows: tables.at(-1)!.rows }));
    } else {
      out.push(line);
    }
  }
  return out;
}
