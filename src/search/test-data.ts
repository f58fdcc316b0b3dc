import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle, Resource } from 'fhir/r4.js';

/** Shared test data (never copied into the repo): `../shared/data` from the working directory. */
export const sharedDataDir = resolve(process.cwd(), '../shared/data');

export function loadFhirExamples(): Resource[] {
  const dir = join(sharedDataDir, 'fhir-examples');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Resource);
}

/** Resources of Synthea bundles; `files` limits how many patient bundles are read. */
export function loadSynthea(files = Infinity, includeInfrastructure = true): Resource[] {
  const dir = join(sharedDataDir, 'synthea');
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.json.gz'))
    .sort();
  const infra = names.filter((n) => n.startsWith('0-'));
  const patients = names.filter((n) => !n.startsWith('0-')).slice(0, files);
  const out: Resource[] = [];
  for (const n of [...(includeInfrastructure ? infra : []), ...patients]) {
    const b = JSON.parse(gunzipSync(readFileSync(join(dir, n))).toString('utf8')) as Bundle;
    for (const e of b.entry ?? []) if (e.resource) out.push(e.resource);
  }
  return out;
}
