import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { writeMemoryTemplate } from '../../src/storage/db.js';
import { migrateToLatest } from '../../src/storage/migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A migrated, empty embedded database: test apps on PGlite start from it (see startTestApp). */
    pgliteTemplate: string;
  }
}

/**
 * On the embedded database, each test app's in-memory PGlite would run initdb and every
 * migration: seconds of wasm work, a large part of the suite's time. Done once here instead,
 * and dumped to a file each app starts from. Nothing to do on PostgreSQL (DATABASE_URL).
 */
export default async function setup(project: TestProject): Promise<(() => void) | undefined> {
  if (process.env.DATABASE_URL) {
    project.provide('pgliteTemplate', '');
    return undefined;
  }
  const file = join(tmpdir(), `fhir-test-pglite-${process.pid}-${project.name || 'root'}.tar`);
  await writeMemoryTemplate(file, (db) => migrateToLatest(db));
  project.provide('pgliteTemplate', file);
  return () => rmSync(file, { force: true });
}
