/**
 * The server's own audit retention (AUDIT_RETENTION_DAYS with AUDIT_ARCHIVE_DIR,
 * src/audit/audit-retention.ts): what the embedded database needs, where `npm run audit:archive`
 * cannot open the database while the server runs. Old events are archived and deleted; newer ones
 * stay; on PostgreSQL two servers never archive at once.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restAuditEvent } from '../../src/audit/audit-event.js';
import { archiveAuditTrail } from '../../src/audit/audit-archive.js';
import { AuditRetention } from '../../src/audit/audit-retention.js';
import { loadConfig, ConfigError } from '../../src/config/config.js';
import { AuditStore } from '../../src/storage/audit-store.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

const source = { baseUrl: 'http://localhost:8080' };
const work = mkdtempSync(join(tmpdir(), 'audit-retention-test-'));
const day = 86_400_000;
let t: TestApp;

const eventAt = (recorded: Date, i: number): AuditEvent =>
  restAuditEvent({ interaction: 'read', action: 'R', status: 200, caller: { kind: 'client', subject: 'c1', clientId: 'c1' }, resources: [`Patient/p${i}`], requestId: `retention-${i}`, recorded: recorded.toISOString() }, source);

beforeAll(async () => {
  t = await startTestApp({ AUDIT_EVENTS: 'on', AUDIT_RETENTION_DAYS: '30', AUDIT_ARCHIVE_DIR: join(work, 'server') });
  await t.server.auditRetention!.runOnce();
  // 6 events 40–45 days old (past the 30 days), 4 from 10–13 days ago (kept).
  for (let i = 0; i < 6; i++) t.server.audit.record(eventAt(new Date(Date.now() - (40 + i) * day), i));
  for (let i = 6; i < 10; i++) t.server.audit.record(eventAt(new Date(Date.now() - (4 + i) * day), i));
  await t.server.audit.flush();
}, 120_000);
afterAll(async () => {
  await t?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('audit retention run by the server', () => {
  it('needs both settings, and a whole number of days', () => {
    const base = { FHIR_BOOTSTRAP_CLIENT_ID: 'x', FHIR_BOOTSTRAP_CLIENT_SECRET: 'y'.repeat(24) };
    expect(() => loadConfig({ ...base, AUDIT_RETENTION_DAYS: '30' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, AUDIT_ARCHIVE_DIR: work })).toThrow(/AUDIT_RETENTION_DAYS and AUDIT_ARCHIVE_DIR/);
    expect(() => loadConfig({ ...base, AUDIT_RETENTION_DAYS: '0', AUDIT_ARCHIVE_DIR: work })).toThrow(/AUDIT_RETENTION_DAYS/);
    expect(loadConfig({ ...base }).auditRetention).toBeUndefined();
    expect(loadConfig({ ...base, AUDIT_RETENTION_DAYS: '2190', AUDIT_ARCHIVE_DIR: work }).auditRetention).toEqual({ days: 2190, dir: work });
  });

  it('archives the events older than the retention into its directory and keeps the rest', async () => {
    const store = new AuditStore(t.server.database.db);
    const cutoff = new Date(Date.now() - 30 * day).toISOString();
    expect(await store.countRecordedBefore(cutoff)).toBe(6);
    const result = await t.server.auditRetention!.runOnce();
    expect(result?.events).toBe(6);
    expect(readdirSync(join(work, 'server')).filter((f) => f.endsWith('.ndjson.gz'))).toEqual(result!.files.map((f) => f.name));
    expect(await store.countRecordedBefore(cutoff)).toBe(0);
    expect(await store.countRecordedBefore(new Date(Date.now() - 5 * day).toISOString())).toBe(4);
    const own = await t.request({ method: 'GET', url: `/fhir/AuditEvent/${result!.auditEventId}` });
    expect((own.json() as AuditEvent).agent[0]!.who?.display).toBe('fhir-server (AUDIT_RETENTION_DAYS=30)');
    // Nothing left to archive: the next pass writes no file.
    expect((await t.server.auditRetention!.runOnce())?.events).toBe(0);
  });

  it.runIf(process.env.DATABASE_URL)('lets one server at a time archive a shared PostgreSQL database', async () => {
    for (let i = 10; i < 14; i++) t.server.audit.record(eventAt(new Date(Date.now() - (50 + i) * day), i));
    await t.server.audit.flush();
    const other = (dir: string) => new AuditRetention(t.server.database, { days: 30, dir: join(work, dir), source, baseUrls: [`${source.baseUrl}/fhir`], log: () => undefined });
    const results = await Promise.all([other('a').runOnce(), other('b').runOnce()]);
    const archived = results.map((r) => r?.events ?? 0);
    // One archived the four; the other found the lock held (undefined) or, if it came after,
    // nothing. Without the lock both would have written a file of the same four events.
    expect(archived.reduce((a, b) => a + b, 0)).toBe(4);
    expect(archived).toContain(0);
    const files = (dir: string) => (existsSync(join(work, dir)) ? readdirSync(join(work, dir)).filter((f) => f.endsWith('.ndjson.gz')) : []);
    expect(files('a').length + files('b').length).toBe(1);
  });

  it('a pass stopped by a shutdown ends after its current file, with that file archived and recorded', async () => {
    for (let i = 20; i < 23; i++) t.server.audit.record(eventAt(new Date(Date.now() - (100 + i) * day), i));
    await t.server.audit.flush();
    const store = new AuditStore(t.server.database.db);
    const cutoff = new Date(Date.now() - 90 * day);
    expect(await store.countRecordedBefore(cutoff.toISOString())).toBe(3);
    const stopped = new AbortController();
    stopped.abort();
    const result = await archiveAuditTrail(
      { store, source, baseUrls: [`${source.baseUrl}/fhir`] },
      { before: cutoff, dir: join(work, 'stopped'), operator: 'tester', via: 'test', eventsPerFile: 1, signal: stopped.signal },
    );
    expect(result.events).toBe(1);
    expect(result.auditEventId).toBeDefined();
    expect(await store.countRecordedBefore(cutoff.toISOString())).toBe(2);
  });
});
