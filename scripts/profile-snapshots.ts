/**
 * `npm run profiles`: rebuilds the `snapshot` of every StructureDefinition in profiles/ from
 * its `differential` and the R4 base definition, and writes the files back.
 *
 * The validator checks instances against a profile's snapshot, so our profiles ship one; the
 * differential is what a person edits. The generator (src/fhir/validation/snapshot.ts) covers
 * what our own profiles do and refuses anything else rather than write a wrong snapshot.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { StructureDefinition } from 'fhir/r4.js';
import { snapshotOf } from '../src/fhir/validation/snapshot.js';

export const PROFILES_DIR = resolve(import.meta.dirname, '..', 'profiles');

export function profileFiles(): string[] {
  return readdirSync(PROFILES_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => join(PROFILES_DIR, f));
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  for (const file of profileFiles()) {
    const sd = JSON.parse(readFileSync(file, 'utf8')) as StructureDefinition;
    if (sd.resourceType !== 'StructureDefinition' || !sd.differential) continue;
    const { snapshot: _old, ...rest } = sd;
    writeFileSync(file, `${JSON.stringify({ ...rest, snapshot: { element: snapshotOf(sd) } }, null, 2)}\n`);
    console.log(`${file}: snapshot rebuilt`);
  }
}
