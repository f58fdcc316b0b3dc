import { execFileSync, execSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Bundle, Patient } from 'fhir/r4.js';
import { afterAll, describe, expect, it } from 'vitest';
import { destructiveStatements } from '../../src/storage/migration-lint.js';
import { freePort } from '../support/ports.js';
import { processToken, startServerProcess, type ServerProcess } from '../support/server-process.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 17 §7: each migration works with the previous release still running (expand / contract,
 * docs/migrations.md). The previous release is the code just before the newest change to
 * migrations/ (HEAD itself while migrations/ has uncommitted changes), taken from git with
 * `git archive` and started as a process on a database the current code migrated.
 */
const ROOT = resolve(import.meta.dirname, '../..');

function git(...args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** The previous release's commit, or why there is none to test against. */
function previousRelease(): { rev: string } | { skip: string } {
  if (git('rev-parse', '--is-inside-work-tree') !== 'true') return { skip: 'not a git checkout' };
  const uncommitted = git('status', '--porcelain', '--', 'migrations/');
  if (uncommitted === undefined) return { skip: 'git status failed' };
  if (uncommitted !== '') return { rev: git('rev-parse', 'HEAD')! };
  const newest = git('log', '-1', '--format=%H', '--', 'migrations/');
  if (!newest) return { skip: 'no commit changed migrations/' };
  const parent = git('rev-parse', '--verify', '--quiet', `${newest}~1`);
  if (!parent) return { skip: `the commit before ${newest.slice(0, 8)} is not in this clone (shallow clone: fetch with history to run this test)` };
  return { rev: parent };
}

const previous = previousRelease();
const skipReason = 'skip' in previous ? previous.skip : undefined;
if (skipReason) console.warn(`migrations-previous-release: skipped — ${skipReason}`);

describe('expand / contract: migrations only add (static check)', () => {
  it('the detector finds destructive statements and accepts annotated ones', () => {
    const up = (body: string) => `export async function up(db) {\n${body}\n}\nexport async function down(db) {\n  await sql\`DROP TABLE x\`.execute(db);\n}\n`;
    expect(destructiveStatements(up('await sql`CREATE TABLE a (id text NOT NULL)`.execute(db);'))).toEqual([]);
    expect(destructiveStatements(up('await sql`ALTER TABLE a ADD COLUMN b text`.execute(db);'))).toEqual([]);
    expect(destructiveStatements(up("await sql`ALTER TABLE a ADD COLUMN b text NOT NULL DEFAULT ''`.execute(db);"))).toEqual([]);
    for (const bad of [
      'await sql`ALTER TABLE a DROP COLUMN b`.execute(db);',
      'await sql`DROP TABLE a`.execute(db);',
      'await sql`ALTER TABLE a RENAME COLUMN b TO c`.execute(db);',
      'await sql`ALTER TABLE a ALTER COLUMN b TYPE bigint`.execute(db);',
      "await sql`ALTER TYPE mood ADD VALUE 'meh'`.execute(db);",
      'await sql`ALTER TABLE a ALTER COLUMN b SET NOT NULL`.execute(db);',
      'await sql`ALTER TABLE a ADD COLUMN b text NOT NULL`.execute(db);',
      "await db.schema.alterTable('a').dropColumn('b').execute();",
    ]) {
      expect(destructiveStatements(up(bad)), bad).toHaveLength(1);
      expect(destructiveStatements(up(`// expand-contract: b unused since release 0.1 (dropped one release later)\n${bad}`)), bad).toEqual([]);
    }
  });

  it('no migration in migrations/ removes or changes what the previous release uses without a reason', () => {
    const files = readdirSync(join(ROOT, 'migrations')).filter((f) => /^\d{4}-.*\.ts$/.test(f));
    expect(files.length).toBeGreaterThan(10);
    const findings = files.flatMap((f) => destructiveStatements(readFileSync(join(ROOT, 'migrations', f), 'utf8')).map((x) => `${f}:${x.line} ${x.rule}: ${x.text}`));
    expect(findings, 'annotate with `// expand-contract: <reason>` or make the change additive (docs/migrations.md)').toEqual([]);
  });
});

describe.skipIf(skipReason !== undefined)('expand / contract: the previous release on the migrated database', () => {
  const dirs: string[] = [];
  let current: TestApp | undefined;
  let old: ServerProcess | undefined;
  afterAll(async () => {
    if (old?.child.exitCode === null) old.child.kill('SIGKILL');
    await current?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('zero-downtime deployments: the previous release serves CRUD and search on a database migrated by this one', { timeout: 240_000 }, async () => {
    const rev = (previous as { rev: string }).rev;
    const code = mkdtempSync(join(tmpdir(), 'fhir-prev-release-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'fhir-prev-data-'));
    dirs.push(code, dataDir);
    execSync(`git archive ${rev} | tar -x -C ${JSON.stringify(code)}`, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    symlinkSync(join(ROOT, 'node_modules'), join(code, 'node_modules'), 'dir');
    // Releases before this rule refused to start on a schema with migrations they do not know;
    // their start-up migration step is replaced by this release's (everything else is theirs).
    if (!readFileSync(join(code, 'src/storage/migrate.ts'), 'utf8').includes('newerMigrations')) {
      console.warn(`migrations-previous-release: ${rev.slice(0, 8)} predates the newer-schema start (src/storage/migrate.ts); the current one is used for its start-up`);
      copyFileSync(join(ROOT, 'src/storage/migrate.ts'), join(code, 'src/storage/migrate.ts'));
    }

    // This release migrates the database (on PostgreSQL it keeps running alongside).
    current = await startTestApp({ DATA_DIR: dataDir });
    const schema = current.config.databaseSchema;
    const shared = process.env.DATABASE_URL !== undefined;
    if (!shared) {
      await current.server.close();
      current = undefined;
    }
    const port = await freePort();
    old = await startServerProcess(port, { DATA_DIR: dataDir, ...(schema ? { DATABASE_SCHEMA: schema } : {}) }, { cwd: code });
    const token = await processToken(old.base);
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${old!.base}/fhir/${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/fhir+json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, json: () => JSON.parse(text) as Record<string, unknown>, text };
    };
    const family = `Prev${Date.now().toString(36)}`;
    const created = await call('POST', 'Patient', { resourceType: 'Patient', name: [{ family, given: ['Ana'] }], birthDate: '1980-02-03' });
    expect(created.status, created.text).toBe(201);
    const id = created.json().id as string;
    expect((await call('GET', `Patient/${id}`)).status).toBe(200);
    const updated = await call('PUT', `Patient/${id}`, { resourceType: 'Patient', id, name: [{ family, given: ['Ana', 'Maria'] }], birthDate: '1980-02-03' });
    expect(updated.status, updated.text).toBe(200);
    const obs = await call('POST', 'Observation', { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${id}` }, valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } });
    expect(obs.status, obs.text).toBe(201);
    const found = await call('GET', `Patient?family=${family}`);
    expect(found.status, found.text).toBe(200);
    expect(((found.json() as unknown as Bundle).entry ?? []).map((e) => e.resource?.id)).toEqual([id]);
    const byCode = await call('GET', `Observation?subject=Patient/${id}&code=http://loinc.org|8867-4`);
    expect(((byCode.json() as unknown as Bundle).entry ?? []).length).toBe(1);
    const tx = await call('POST', '', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: `Patient/${id}` } }, request: { method: 'POST', url: 'Encounter' } }] });
    expect(tx.status, tx.text).toBe(200);
    // Delete (a preliminary Observation of its own).
    const draft = await call('POST', 'Observation', { resourceType: 'Observation', status: 'preliminary', code: { coding: [{ system: 'http://loinc.org', code: '8310-5' }] }, subject: { reference: `Patient/${id}` } });
    expect(draft.status, draft.text).toBe(201);
    const deleted = await call('DELETE', `Observation/${draft.json().id as string}`);
    expect([200, 204], deleted.text).toContain(deleted.status);
    expect(((await call('GET', `Observation?subject=Patient/${id}&code=http://loinc.org|8310-5`)).json() as unknown as Bundle).entry ?? []).toHaveLength(0);

    // What the previous release wrote, this release reads (side by side on PostgreSQL, after it on PGlite).
    if (!shared) {
      old.child.kill('SIGTERM');
      expect(await old.exited).toBe(0);
      current = await startTestApp({ DATA_DIR: dataDir });
    }
    const read = await current!.request({ method: 'GET', url: `/fhir/Patient/${id}` });
    expect(read.statusCode, read.body).toBe(200);
    expect((read.json() as Patient).name?.[0].given).toEqual(['Ana', 'Maria']);
    const search = await current!.request({ method: 'GET', url: `/fhir/Patient?family=${family}&birthdate=1980-02-03` });
    expect(((search.json() as Bundle).entry ?? []).length).toBe(1);
    if (shared) {
      // And the other way: what this release writes, the previous one reads.
      const mine = await current!.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family }] } });
      expect(mine.statusCode).toBe(201);
      expect((await call('GET', `Patient/${(mine.json() as Patient).id}`)).status).toBe(200);
      expect(((await call('GET', `Patient?family=${family}`)).json() as unknown as Bundle).entry?.length).toBe(2);
      old.child.kill('SIGTERM');
      expect(await old.exited).toBe(0);
    }
  });
});
