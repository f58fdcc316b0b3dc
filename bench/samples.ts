import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle, Resource } from 'fhir/r4.js';

export const SHARED_DATA = resolve(process.cwd(), '../shared/data');

/**
 * Up to `limit` resources of the given types from the Synthea transaction Bundles, with their
 * references as a loaded server holds them (urn:uuid:X → Type/X).
 */
export function syntheaResources(types: string[], limit: number, dir = join(SHARED_DATA, 'synthea')): Resource[] {
  const out: Resource[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json.gz') && !f.startsWith('0-')).sort()) {
    const bundle = JSON.parse(gunzipSync(readFileSync(join(dir, file))).toString('utf8')) as Bundle;
    const typeOf = new Map((bundle.entry ?? []).map((e) => [e.fullUrl ?? '', e.resource?.resourceType ?? '']));
    for (const e of bundle.entry ?? []) {
      if (!e.resource || !types.includes(e.resource.resourceType)) continue;
      const text = JSON.stringify(e.resource).replace(/"urn:uuid:([0-9a-f-]{36})"/g, (m, id: string) => {
        const type = typeOf.get(`urn:uuid:${id}`);
        return type ? `"${type}/${id}"` : m;
      });
      out.push(JSON.parse(text) as Resource);
      if (out.length >= limit) return out;
    }
  }
  return out;
}

/** A resource as a client creates it: no id, no meta. */
export function withoutServerFields(r: Resource): Resource {
  const { id: _id, meta: _meta, ...rest } = r as Resource & Record<string, unknown>;
  return rest as unknown as Resource;
}
