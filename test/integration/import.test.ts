import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle } from 'fhir/r4.js';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCore } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { Importer, type ImportOptions } from '../../src/operations/import.js';
import type { ImportSource } from '../../src/operations/import-sources.js';
import { SearchService } from '../../src/search/search-service.js';
import { countByType, countVersions, danglingReferences } from '../../src/storage/import-checks.js';
import { ImportStateStore } from '../../src/storage/import-state.js';
import { startTestApp, type TestApp, dropTestSchema } from '../support/test-app.js';
import { BATCH_FILES, importFixture, PATIENT_FILES, SYNTHEA, typeCounts } from './import-helpers.js';

const fixture = importFixture(PATIENT_FILES.slice(0, 2));
const apps: TestApp[] = [];
afterAll(async () => {
  for (const app of apps) await app.close();
  rmSync(fixture.dir, { recursive: true, force: true });
});

async function fresh(): Promise<{ t: TestApp; importer: Importer }> {
  const t = await startTestApp();
  apps.push(t);
  const search = new SearchService({ db: t.server.database.db, registry: t.server.registry });
  const importer = new Importer({
    interactions: { store: t.server.store, search, validator: t.server.validator, fhirBase: 'http://localhost:8080/fhir' },
    state: new ImportStateStore(t.server.database.db),
  });
  return { t, importer };
}

const file = (path: string, name = path.split('/').pop()!): ImportSource => ({ kind: 'file', path, name });
const inputs = (): ImportSource[] => [
  // Deliberately not in load order: the batch Bundles (reference data) are detected and go first.
  file(fixture.ndjson),
  file(fixture.collection),
  ...BATCH_FILES.map((f) => file(join(SYNTHEA, f))),
];

describe('bulk import (src/operations/import.ts)', () => {
  it('imports batch and collection Bundles and NDJSON through the write pipeline; bad lines are reported, the rest is written', { timeout: 120_000 }, async () => {
    const { t, importer } = await fresh();
    const summary = await importer.run(inputs(), { scope: 'cli', chunkSize: 100 });
    expect(summary.inputs.map((i) => i.status)).toEqual(['imported', 'imported', 'imported', 'imported']);
    expect(summary.errorCount).toBe(3);
    const byLine = new Map(summary.issues.map((i) => [i.line, i.message]));
    expect([...byLine.keys()].sort((a, b) => a! - b!)).toEqual(fixture.badLines);
    expect(byLine.get(fixture.badLines[0])).toMatch(/JSON/);
    expect(byLine.get(fixture.badLines[1])).toMatch(/gender|robot/);
    expect(byLine.get(fixture.badLines[2])).toMatch(/no id/);
    const db = t.server.database.db;
    const stored = await countByType(db);
    expect(Object.fromEntries([...stored].sort())).toEqual(Object.fromEntries([...fixture.expected].sort()));
    expect(summary.resources).toBe([...fixture.expected.values()].reduce((a, b) => a + b, 0));
    // NDJSON keeps ids; its conditional references were resolved like a transaction's.
    const patientId = PATIENT_FILES[0].replace('.json.gz', '');
    expect((await t.request({ method: 'GET', url: `/fhir/Patient/${patientId}` })).statusCode).toBe(200);
    expect(await danglingReferences(db, { serverBase: 'http://localhost:8080/fhir' })).toEqual([]);
    // The collection's resource with an id kept it; the other one refers to it.
    const obs = (await t.request({ method: 'GET', url: '/fhir/Observation?subject=Patient/import-collection-1' })).json() as Bundle;
    expect(obs.total).toBe(1);
  });

  it('an interrupted import resumes where it stopped and writes nothing twice', { timeout: 120_000 }, async () => {
    const { t, importer } = await fresh();
    const db = t.server.database.db;
    let commits = 0;
    const interrupted: ImportOptions = {
      scope: 'cli',
      chunkSize: 100,
      onProgress: (e) => {
        // Stop after the batch Bundles and the third NDJSON chunk were committed.
        if (e.input.endsWith('.ndjson.gz') && ++commits === 3) throw new Error('killed');
      },
    };
    await expect(importer.run(inputs(), interrupted)).rejects.toThrow('killed');
    const partial = [...(await countByType(db)).values()].reduce((a, b) => a + b, 0);
    expect(partial).toBeGreaterThan(0);

    const resumed = await importer.run(inputs(), { scope: 'cli', chunkSize: 100 });
    // The collection Bundle went first with the batch ones (reference data first) and was done.
    expect(resumed.inputs.map((i) => i.status)).toEqual(['imported', 'skipped', 'skipped', 'skipped']);
    const stored = await countByType(db);
    expect(Object.fromEntries([...stored].sort())).toEqual(Object.fromEntries([...fixture.expected].sort()));
    // Exactly one version per resource: nothing was written twice.
    const total = [...stored.values()].reduce((a, b) => a + b, 0);
    expect(await countVersions(db)).toBe(total);
    expect(resumed.resources).toBe(total - partial);

    const again = await importer.run(inputs(), { scope: 'cli' });
    expect(again.inputs.every((i) => i.status === 'skipped')).toBe(true);
    expect(await countVersions(db)).toBe(total);
  });

  it('a transaction Bundle that fails is reported and leaves nothing; the other inputs go on', { timeout: 60_000 }, async () => {
    const { t, importer } = await fresh();
    // The patient transaction refers to practitioners by conditional reference: without the
    // batch Bundles loaded, it cannot resolve them and fails as a whole (412).
    const summary = await importer.run([file(join(SYNTHEA, PATIENT_FILES[0])), file(fixture.collection)], { scope: 'cli' });
    expect(summary.inputs.map((i) => i.status)).toEqual(['failed', 'imported']);
    expect(summary.issues[0].message).toMatch(/conditional reference/);
    const stored = await countByType(t.server.database.db);
    expect(Object.fromEntries(stored)).toEqual({ Patient: 1, Observation: 1 });
  });
});

describe('npm run import (scripts/import.ts)', () => {
  it('loads files into the configured database with a summary, and skips them when run again', { timeout: 240_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fhir-import-db-'));
    const schema = process.env.DATABASE_URL ? `t_${randomBytes(6).toString('hex')}` : undefined;
    const env = { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'silent', ...(schema ? { DATABASE_SCHEMA: schema } : {}) };
    const args = ['tsx', 'scripts/import.ts', '--quiet', join(SYNTHEA, PATIENT_FILES[2]), ...BATCH_FILES.map((f) => join(SYNTHEA, f))];
    try {
      const first = spawnSync('npx', args, { env, encoding: 'utf8', timeout: 180_000 });
      expect(first.status, first.stderr + first.stdout).toBe(0);
      expect(first.stdout).toMatch(/3 inputs: 3 imported, 0 skipped/);
      expect(first.stdout).toMatch(/resources\/s/);
      const second = spawnSync('npx', [...args, '--check'], { env, encoding: 'utf8', timeout: 180_000 });
      expect(second.status, second.stderr + second.stdout).toBe(0);
      expect(second.stdout).toMatch(/3 inputs: 0 imported, 3 skipped/);
      expect(second.stdout).toMatch(/every reference resolves/);
      const core = await buildCore(loadConfig(env));
      try {
        const stored = await countByType(core.database.db);
        expect(Object.fromEntries([...stored].sort())).toEqual(Object.fromEntries([...typeCounts([...BATCH_FILES, PATIENT_FILES[2]])].sort()));
      } finally {
        await core.database.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await dropTestSchema(schema);
    }
  });
});
