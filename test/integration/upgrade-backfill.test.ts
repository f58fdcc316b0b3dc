import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Migrator, sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../../migrations/index.js';
import { openDatabase, type Db } from '../../src/storage/db.js';
import { migrateToLatest } from '../../src/storage/migrate.js';
import { dropTestSchema, startTestApp, type TestApp } from '../support/test-app.js';

const PG = process.env.DATABASE_URL;

/** Stored as a release before migration 0028 stored them: resource and history rows only. */
function oldResources(): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 8; i++) {
    out.push({
      resourceType: 'Observation',
      id: `old-obs-${i}`,
      status: 'final',
      code: { text: `haemoglobin crystal check ${i}` },
      subject: { reference: 'Patient/p1', display: 'Nguyễn Văn An' },
      text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">Upgrade narrative ${i}</div>` },
    });
  }
  for (let i = 0; i < 4; i++) {
    out.push({
      resourceType: 'Appointment',
      id: `old-appt-${i}`,
      status: 'booked',
      start: `2026-03-0${i + 1}T09:00:00Z`,
      end: `2026-03-0${i + 1}T09:30:00Z`,
      participant: [{ actor: { reference: 'Patient/p1' }, status: 'accepted' }],
    });
  }
  return out;
}

/**
 * Issue 17 (upgrades of large databases): the full-text rows (0028) and report facts (0030) of
 * resources stored before those migrations are filled by the running server in the background
 * when there are many, instead of holding the migration; searches and reports that need them
 * answer 503 until they are complete, then see every old resource.
 */
describe('back-fills after an upgrade', () => {
  const schema = PG ? `t_${randomBytes(6).toString('hex')}` : undefined;
  const dataDir = PG ? 'memory' : mkdtempSync(join(tmpdir(), 'fhir-upgrade-'));
  let app: TestApp | undefined;

  beforeAll(async () => {
    // The database as the release before 0028 left it, holding 12 resources.
    const handle = await openDatabase({ databaseUrl: PG, dataDir, schema, poolSize: 2 });
    const db = handle.db as Db;
    const current = await sql<{ s: string }>`SELECT current_schema() AS s`.execute(db);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations }, migrationTableSchema: current.rows[0]!.s });
    const before = await migrator.migrateTo('0027-reports');
    if (before.error) throw before.error;
    for (const r of oldResources()) {
      const content = JSON.stringify({ ...r, meta: { versionId: '1', lastUpdated: '2026-01-01T00:00:00Z' } });
      await sql`INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) VALUES (${r.resourceType}, ${r.id}, 1, '2026-01-01T00:00:00Z', false, ${content}::jsonb)`.execute(db);
      await sql`INSERT INTO resource_history (resource_type, id, version_id, last_updated, deleted, method, content) VALUES (${r.resourceType}, ${r.id}, 1, '2026-01-01T00:00:00Z', false, 'PUT', ${content}::jsonb)`.execute(db);
    }
    // The upgrade, on a database "too large" to fill during the migration.
    process.env.MIGRATION_INLINE_BACKFILL_LIMIT = '3';
    try {
      await migrateToLatest(db);
    } finally {
      delete process.env.MIGRATION_INLINE_BACKFILL_LIMIT;
    }
    const left = await sql<{ name: string; total: string }>`SELECT name, total::text AS total FROM backfill ORDER BY name`.execute(db);
    expect(left.rows.map((r) => r.name)).toEqual(['reference-display', 'report-facts', 'search-text']);
    expect(Number(left.rows.find((r) => r.name === 'search-text')!.total)).toBeGreaterThanOrEqual(4);
    const text = await sql<{ n: number }>`SELECT count(*)::int AS n FROM search_text`.execute(db);
    expect(text.rows[0]!.n).toBe(0);
    await handle.close();
  });

  afterAll(async () => {
    await app?.close();
    await dropTestSchema(schema);
    if (!PG) rmSync(dataDir, { recursive: true, force: true });
  });

  it.runIf(PG)('answers 503 for _content and reports while another process holds the back-fill, then fills it', async () => {
    // Another server process is at the back-fills (it holds their rows): this one waits.
    const other = new pg.Client({ connectionString: PG, options: `-c search_path=${schema}` });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT name FROM backfill FOR UPDATE');
      app = await startTestApp({ DATABASE_SCHEMA: schema! });
      const search = await app.request({ method: 'GET', url: '/fhir/Observation?_content=crystal' });
      expect(search.statusCode).toBe(503);
      expect(search.headers['retry-after']).toBeDefined();
      expect(search.json().issue[0].diagnostics).toMatch(/full-text search .* being prepared after an upgrade/);
      // Everything else is served as usual.
      expect((await app.request({ method: 'GET', url: '/fhir/Observation/old-obs-3' })).statusCode).toBe(200);
      expect((await app.request({ method: 'GET', url: '/fhir/Observation?subject:text=nguyen' })).statusCode).toBe(503);
      const report = await app.request({ method: 'GET', url: '/fhir/MeasureReport/$appointment-statistics?periodStart=2026-03-01&periodEnd=2026-03-31' });
      expect(report.statusCode).toBe(503);
      expect(report.json().resourceType).toBe('OperationOutcome');
    } finally {
      await other.query('ROLLBACK');
      await other.end();
    }
  });

  it('fills every old resource after start-up; full-text search and reports then see them', async () => {
    app ??= await startTestApp(PG ? { DATABASE_SCHEMA: schema! } : { DATA_DIR: dataDir });
    await app.server.backfills.idle();
    expect(app.server.backfills.progress('search-text')).toBeUndefined();
    expect(app.server.backfills.progress('report-facts')).toBeUndefined();

    const found = await app.request({ method: 'GET', url: '/fhir/Observation?_content=crystal&_count=50' });
    expect(found.statusCode).toBe(200);
    expect(found.json().entry.map((e: { resource: { id: string } }) => e.resource.id).sort()).toEqual(Array.from({ length: 8 }, (_, i) => `old-obs-${i}`));
    const narrative = await app.request({ method: 'GET', url: '/fhir/Observation?_text=narrative' });
    expect(narrative.json().entry).toHaveLength(8);
    // The reference rows were rewritten too: :text finds the display (0036).
    const byDisplay = await app.request({ method: 'GET', url: '/fhir/Observation?subject:text=nguyen&_count=50' });
    expect(byDisplay.statusCode, byDisplay.body).toBe(200);
    expect(byDisplay.json().entry).toHaveLength(8);

    const report = await app.request({ method: 'GET', url: '/fhir/MeasureReport/$appointment-statistics?periodStart=2026-03-01&periodEnd=2026-03-31' });
    expect(report.statusCode).toBe(200);
    const total = report.json().group[0].population.find((p: { code: { coding: Array<{ code: string }> } }) => p.code.coding[0]!.code === 'initial-population');
    expect(total?.count).toBe(4);

    // Nothing is left recorded: the next start does not fill again.
    const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM backfill`.execute(app.server.database.db);
    expect(rows.rows[0]!.n).toBe(0);
  });
});
