/**
 * Archiving the audit trail (`npm run audit:archive`, src/audit/audit-archive.ts): events
 * recorded before a cutoff go to gzip NDJSON files, are deleted from the server only once their
 * file is on disk, and the archival itself stays in the trail with each file's SHA-256. Every
 * other DELETE of an AuditEvent is still refused.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { AuditEvent, Bundle } from 'fhir/r4.js';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveAuditTrail } from '../../src/audit/audit-archive.js';
import { restAuditEvent, type AuditCaller } from '../../src/audit/audit-event.js';
import { AuditRenderer } from '../../src/audit/audit-render.js';
import { AuditStore } from '../../src/storage/audit-store.js';
import { openDatabase } from '../../src/storage/db.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { pgErrorCode } from '../../src/storage/pg-errors.js';
import { dropTestSchema, startTestApp, type TestApp } from '../support/test-app.js';

const source = { baseUrl: 'http://localhost:8080' };
const baseUrls = ['http://localhost:8080/fhir'];
const doctor: AuditCaller = { kind: 'user', subject: 'u-doc', clientId: 'app-1', fhirUser: 'Practitioner/doc-1', role: 'DOCTOR' };
const work = mkdtempSync(join(tmpdir(), 'audit-archive-test-'));
const schemas: string[] = [];

/** A read's event on a given day (X-Request-Id `tag-i`). */
const eventOn = (recorded: string, tag: string, i: number): AuditEvent =>
  restAuditEvent({ interaction: 'read', action: 'R', status: 200, caller: doctor, resources: [`Observation/obs-${i}`], patient: `p${i % 3}`, requestId: `${tag}-${i}`, recorded }, source);

const lines = (file: string) =>
  gunzipSync(readFileSync(file))
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

let t: TestApp;
let store: AuditStore;
/** ids of the 20 events of 2019 (to be archived) and of the 5 of 2026 (to stay). */
let oldIds: string[];
let newIds: string[];

beforeAll(async () => {
  t = await startTestApp({ AUDIT_EVENTS: 'on' });
  store = new AuditStore(t.server.database.db);
  for (let i = 0; i < 20; i++) t.server.audit.record(eventOn(`2019-03-${String(1 + i).padStart(2, '0')}T08:00:00.000Z`, 'old', i));
  for (let i = 0; i < 5; i++) t.server.audit.record(eventOn(`2026-01-0${1 + i}T08:00:00.000Z`, 'new', i));
  await t.server.audit.flush();
  const idsOf = async (query: string) => {
    const res = await t.request({ method: 'GET', url: `/fhir/AuditEvent?${query}&_count=100` });
    expect(res.statusCode, res.body).toBe(200);
    return ((res.json() as Bundle).entry ?? []).map((e) => e.resource!.id!).sort();
  };
  oldIds = await idsOf('date=lt2020-01-01');
  newIds = await idsOf('date=ge2026-01-01&date=lt2026-02-01');
  expect(oldIds).toHaveLength(20);
  expect(newIds).toHaveLength(5);
}, 120_000);

afterAll(async () => {
  await t?.close();
  for (const s of schemas) await dropTestSchema(s);
  rmSync(work, { recursive: true, force: true });
});

describe('archiving the audit trail', () => {
  it('a dry run counts what would go and changes nothing', async () => {
    const result = await archiveAuditTrail({ store, source, baseUrls }, { before: new Date('2020-01-01T00:00:00Z'), dir: join(work, 'dry'), operator: 'tester', via: 'test', dryRun: true });
    expect(result.events).toBe(20);
    expect(result.files).toEqual([]);
    expect(await store.countRecordedBefore('2020-01-01T00:00:00Z')).toBe(20);
  });

  it('refuses a cutoff in the future, and a directory it cannot write loses nothing', async () => {
    await expect(archiveAuditTrail({ store, source, baseUrls }, { before: new Date(Date.now() + 60_000), dir: join(work, 'future'), operator: 'tester', via: 'test' })).rejects.toThrow(/future/);
    const notADirectory = join(work, 'plain-file');
    writeFileSync(notADirectory, 'x');
    await expect(archiveAuditTrail({ store, source, baseUrls }, { before: new Date('2020-01-01T00:00:00Z'), dir: join(notADirectory, 'sub'), operator: 'tester', via: 'test' })).rejects.toThrow();
    expect(await store.countRecordedBefore('2020-01-01T00:00:00Z')).toBe(20);
  });

  it('writes the events before the cutoff to files, deletes exactly those, and records the archival with each file hash', async () => {
    const dir = join(work, 'archive');
    const result = await archiveAuditTrail({ store, source, baseUrls }, { before: new Date('2020-01-01T00:00:00Z'), dir, operator: 'tester', via: 'test', eventsPerFile: 8 });
    expect(result.events).toBe(20);
    expect(result.files.map((f) => f.events)).toEqual([8, 8, 4]);
    expect(readdirSync(dir).sort()).toEqual([...result.files.map((f) => f.name), result.manifest!].sort());

    // Every archived event is in exactly one file, whole, oldest first; nothing else is.
    const archived = result.files.flatMap((f) => {
      expect(sha256(join(dir, f.name))).toBe(f.sha256);
      const events = lines(join(dir, f.name));
      expect(events[0]!.recorded).toBe(f.first);
      expect(events[events.length - 1]!.recorded).toBe(f.last);
      return events;
    });
    expect(archived.map((e) => e.id).sort()).toEqual(oldIds);
    expect(archived.map((e) => e.recorded)).toEqual([...archived.map((e) => e.recorded)].sort());
    for (const e of archived) {
      expect(e.resourceType).toBe('AuditEvent');
      expect(e.meta?.versionId).toBe('1');
      expect(e.entity?.some((x) => x.what?.identifier?.value?.startsWith('old-'))).toBe(true);
    }
    const manifest = JSON.parse(readFileSync(join(dir, result.manifest!), 'utf8')) as { before: string; events: number; files: unknown[] };
    expect(manifest).toMatchObject({ before: '2020-01-01T00:00:00.000Z', events: 20, files: result.files });

    // Gone from the server; the later ones stay.
    expect(await store.countRecordedBefore('2020-01-01T00:00:00Z')).toBe(0);
    expect((await t.request({ method: 'GET', url: `/fhir/AuditEvent/${oldIds[0]}` })).statusCode).toBe(404);
    const remaining = await t.request({ method: 'GET', url: '/fhir/AuditEvent?date=ge2026-01-01&date=lt2026-02-01&_count=100' });
    expect(((remaining.json() as Bundle).entry ?? []).map((e) => e.resource!.id).sort()).toEqual(newIds);

    // The archival is an AuditEvent of its own: who, when, the cutoff, and each file's hash.
    const own = await t.request({ method: 'GET', url: `/fhir/AuditEvent/${result.auditEventId}` });
    expect(own.statusCode, own.body).toBe(200);
    const event = own.json() as AuditEvent;
    expect(event.type).toMatchObject({ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110106' });
    expect(event.action).toBe('D');
    expect(event.agent[0]!.altId).toBe('tester');
    expect(event.agent[0]!.who?.display).toBe('tester (test)');
    expect(event.outcomeDesc).toContain('20 AuditEvent(s) recorded before 2020-01-01T00:00:00.000Z');
    expect(event.entity?.map((x) => [x.what?.identifier?.value, x.detail?.find((d) => d.type === 'sha256')?.valueString])).toEqual(result.files.map((f) => [f.name, f.sha256]));
    expect(t.server.validator.validate(event).filter((i) => i.severity === 'error' || i.severity === 'fatal')).toEqual([]);
    const search = await t.request({ method: 'GET', url: `/fhir/AuditEvent?type=110106&_count=10` });
    expect(((search.json() as Bundle).entry ?? []).map((e) => e.resource!.id)).toContain(result.auditEventId);
  });

  it('a second run finds nothing, writes no file and records nothing', async () => {
    const dir = join(work, 'again');
    const result = await archiveAuditTrail({ store, source, baseUrls }, { before: new Date('2020-01-01T00:00:00Z'), dir, operator: 'tester', via: 'test' });
    expect(result).toEqual({ before: '2020-01-01T00:00:00.000Z', events: 0, files: [] });
    expect(readdirSync(dir)).toEqual([]);
  });

  it('every other DELETE or UPDATE of an AuditEvent is still refused by the database', async () => {
    const db = t.server.database.db as unknown as Kysely<unknown>;
    const refused = async (statement: Promise<unknown>) => {
      const error = await statement.then(() => undefined, (e: unknown) => e);
      expect(pgErrorCode(error)).toBe('42501');
    };
    await refused(sql`DELETE FROM audit_event WHERE id = ${newIds[0]!}`.execute(db));
    await refused(sql`UPDATE audit_event SET recorded = now() WHERE id = ${newIds[0]!}`.execute(db));
    // The setting lets DELETE through only inside the archival's own transaction: UPDATE never.
    await refused(
      db.transaction().execute(async (tx) => {
        await sql`SET LOCAL fhir.audit_archive = 'on'`.execute(tx);
        await sql`UPDATE audit_event SET recorded = now() WHERE id = ${newIds[0]!}`.execute(tx);
      }),
    );
    expect(await store.countRecordedBefore('2027-01-01T00:00:00Z')).toBeGreaterThanOrEqual(5);
  });
});

describe('npm run audit:archive', () => {
  const cli = (args: string[], env: Record<string, string>) =>
    promisify(execFile)('npx', ['tsx', 'scripts/audit-archive.ts', ...args], { env: { ...process.env, LOG_LEVEL: 'silent', ...env }, timeout: 120_000 }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  it('refuses an ambiguous cutoff or a missing directory, with its usage', async () => {
    // Each run is a process start (~2 s): a time without its zone, and no --out.
    for (const args of [['--before', '2020-01-01T10:00:00', '--out', work], ['--before', '2020-01-01']]) {
      const r = await cli(args, { DATA_DIR: join(work, 'unused') });
      expect(r.code, JSON.stringify(args)).toBe(1);
      expect(r.stderr).toContain('usage: npm run audit:archive');
    }
  });

  it('archives the configured database (the embedded one in DATA_DIR, or a PostgreSQL schema) and says what it did', async () => {
    const schema = process.env.DATABASE_URL ? `t_${randomBytes(6).toString('hex')}` : undefined;
    if (schema) schemas.push(schema);
    const dataDir = join(work, 'cli-data');
    const env: Record<string, string> = process.env.DATABASE_URL ? { DATABASE_SCHEMA: schema! } : { DATA_DIR: dataDir };
    const database = await openDatabase({ databaseUrl: process.env.DATABASE_URL, dataDir, schema });
    try {
      await migrateToLatest(database.unlimitedDb);
      const renderer = new AuditRenderer(source, baseUrls);
      await new AuditStore(database.db).append([0, 1, 2].map((i) => renderer.event(eventOn(`2018-06-0${1 + i}T00:00:00.000Z`, 'cli', i))));
      await new AuditStore(database.db).append([renderer.event(eventOn('2026-02-01T00:00:00.000Z', 'cli-new', 9))]);
    } finally {
      await database.close();
    }
    const dir = join(work, 'cli-archive');
    const r = await cli(['--before', '2019-01-01', '--out', dir, '--quiet'], { ...env, BASE_URL: source.baseUrl });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/3 AuditEvent\(s\) recorded before 2019-01-01T00:00:00.000Z archived to 1 file\(s\)/);
    const file = readdirSync(dir).find((f) => f.endsWith('.ndjson.gz'))!;
    expect(lines(join(dir, file)).map((e) => e.entity?.find((x) => x.description === 'X-Request-Id')?.what?.identifier?.value).sort()).toEqual(['cli-0', 'cli-1', 'cli-2']);

    const reopened = await openDatabase({ databaseUrl: process.env.DATABASE_URL, dataDir, schema });
    try {
      const after = new AuditStore(reopened.db);
      expect(await after.countRecordedBefore('2019-01-01T00:00:00Z')).toBe(0);
      // The later event and the archival's own event.
      expect(await after.countRecordedBefore('2100-01-01T00:00:00Z')).toBe(2);
    } finally {
      await reopened.close();
    }
  }, 180_000);
});
