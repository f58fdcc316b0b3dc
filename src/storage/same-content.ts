import type { Resource } from 'fhir/r4.js';

/**
 * Whether two versions of a resource say the same thing: equal JSON with object keys in any
 * order (jsonb gives keys back in its own order), ignoring what the store sets on every
 * version (meta.versionId, meta.lastUpdated). Other meta (profile, security, tags) counts.
 */
export function sameVersionContent(a: Resource, b: Resource): boolean {
  return canonical(withoutVersionMeta(a)) === canonical(withoutVersionMeta(b));
}

function withoutVersionMeta(r: Resource): Resource {
  if (!r.meta) return r;
  const { versionId: _v, lastUpdated: _u, ...meta } = r.meta;
  return { ...r, meta: Object.keys(meta).length > 0 ? meta : undefined };
}

/** JSON with object keys sorted and undefined members left out. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
