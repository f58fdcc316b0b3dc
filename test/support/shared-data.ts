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

/**
 * Synthea resources with their references resolved as a transaction would: `urn:uuid:` full
 * URLs and conditional references (`Practitioner?identifier=sys|val`) become `Type/id`.
 */
export function loadSyntheaResolved(files = Infinity): Resource[] {
  const resources = loadSynthea(files);
  const byUrn = new Map<string, string>();
  const byIdentifier = new Map<string, string>();
  for (const r of resources) {
    byUrn.set(`urn:uuid:${r.id}`, `${r.resourceType}/${r.id}`);
    for (const i of (r as { identifier?: Array<{ system?: string; value?: string }> }).identifier ?? []) {
      byIdentifier.set(`${r.resourceType}?identifier=${i.system}|${i.value}`, `${r.resourceType}/${r.id}`);
    }
  }
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
    } else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.reference === 'string') {
        const ref = o.reference;
        const resolved = byUrn.get(ref) ?? byIdentifier.get(ref);
        if (resolved) o.reference = resolved;
      }
      for (const x of Object.values(o)) walk(x);
    }
  };
  for (const r of resources) walk(r);
  return resources;
}
