import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Bundle } from 'fhir/r4.js';
import { SHARED_DATA } from '../support/test-app.js';

export const SYNTHEA = join(SHARED_DATA, 'synthea');
export const BATCH_FILES = readdirSync(SYNTHEA).filter((f) => f.startsWith('0-') && f.endsWith('.json.gz')).sort();
export const PATIENT_FILES = readdirSync(SYNTHEA).filter((f) => !f.startsWith('0-') && f.endsWith('.json.gz')).sort();

export function readBundle(file: string): Bundle {
  return JSON.parse(gunzipSync(readFileSync(join(SYNTHEA, file))).toString('utf8')) as Bundle;
}

/** Resources per type in some Synthea files (every entry is a distinct resource). */
export function typeCounts(files: string[], into = new Map<string, number>()): Map<string, number> {
  for (const file of files) {
    for (const e of readBundle(file).entry ?? []) into.set(e.resource!.resourceType, (into.get(e.resource!.resourceType) ?? 0) + 1);
  }
  return into;
}

/**
 * A patient Bundle as Bulk Data NDJSON would carry it: one resource per line, ids kept,
 * `urn:uuid:X` references rewritten to `Type/X` (Synthea's ids equal the uuids). The
 * conditional references to practitioners and organisations stay (the import resolves them).
 */
export function ndjsonLines(file: string): string[] {
  const bundle = readBundle(file);
  const typeOf = new Map((bundle.entry ?? []).map((e) => [e.fullUrl ?? '', e.resource?.resourceType ?? '']));
  return (bundle.entry ?? []).map((e) =>
    JSON.stringify(e.resource).replace(/"urn:uuid:([0-9a-f-]{36})"/g, (m, id: string) => {
      const type = typeOf.get(`urn:uuid:${id}`);
      return type ? `"${type}/${id}"` : m;
    }),
  );
}

export interface ImportFixture {
  dir: string;
  /** gzipped NDJSON of two patients with three bad lines in it */
  ndjson: string;
  ndjsonGood: number;
  /** the 1-based lines that must be reported */
  badLines: number[];
  /** a collection Bundle: one resource with an id (kept), one without, referring to each other by fullUrl */
  collection: string;
  /** resources per type of the fixture's good content (batch files + NDJSON + collection) */
  expected: Map<string, number>;
}

export function importFixture(patients: string[]): ImportFixture {
  const dir = mkdtempSync(join(tmpdir(), 'fhir-import-'));
  const lines: string[] = [];
  for (const file of patients) lines.push(...ndjsonLines(file));
  const good = lines.length;
  // Bad lines in the middle of the file, at known places.
  const bad = [
    '{ this is not json',
    JSON.stringify({ resourceType: 'Patient', id: 'robot-1', gender: 'robot' }),
    JSON.stringify({ resourceType: 'Patient', gender: 'female' }),
  ];
  const at = [3, 40, 41];
  at.forEach((position, i) => lines.splice(position, 0, bad[i]));
  const ndjson = join(dir, 'patients.ndjson.gz');
  writeFileSync(ndjson, gzipSync(`${lines.join('\n')}\n\n`));
  const collection = join(dir, 'collection.json');
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [
      { fullUrl: 'urn:uuid:5b1e0c1a-0000-4000-8000-00000000c0de', resource: { resourceType: 'Patient', id: 'import-collection-1', active: true } },
      {
        resource: { resourceType: 'Observation', status: 'final', code: { text: 'note' }, subject: { reference: 'urn:uuid:5b1e0c1a-0000-4000-8000-00000000c0de' } },
      },
    ],
  };
  writeFileSync(collection, JSON.stringify(bundle));
  const expected = typeCounts([...BATCH_FILES, ...patients]);
  expected.set('Patient', (expected.get('Patient') ?? 0) + 1);
  expected.set('Observation', (expected.get('Observation') ?? 0) + 1);
  return { dir, ndjson, ndjsonGood: good, badLines: at.map((p) => p + 1), collection, expected };
}
