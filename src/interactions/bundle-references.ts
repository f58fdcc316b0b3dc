import type { Resource } from 'fhir/r4.js';

/**
 * Rewrites, in place, every reference inside `resource` (nested elements, contained
 * resources, extensions) whose value is a key of `map`: `Reference.reference` values and any
 * other string equal to a bundle `fullUrl` (uri / canonical elements), per R4 http.html#trules.
 * Also rewrites `urn:uuid:…#frag`-less exact matches only; contained `#id` refs are untouched.
 */
export function rewriteReferences(resource: Resource, map: ReadonlyMap<string, string>): void {
  if (map.size === 0) return;
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v = node[i];
        if (typeof v === 'string') {
          const replacement = map.get(v);
          if (replacement !== undefined) node[i] = replacement;
        } else if (v !== null && typeof v === 'object') visit(v);
      }
      return;
    }
    if (node === null || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const v = record[key];
      if (typeof v === 'string') {
        const replacement = map.get(v);
        if (replacement !== undefined) record[key] = replacement;
      } else if (v !== null && typeof v === 'object') visit(v);
    }
  };
  visit(resource);
}

/** Collects every `reference` value that is a conditional reference (`Type?query`). */
export function conditionalReferences(resource: Resource): Set<string> {
  const found = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const v of node) if (v !== null && typeof v === 'object') visit(v);
      return;
    }
    if (node === null || typeof node !== 'object') return;
    for (const [key, v] of Object.entries(node as Record<string, unknown>)) {
      if (key === 'reference' && typeof v === 'string' && /^[A-Z][A-Za-z]+\?/.test(v)) found.add(v);
      else if (v !== null && typeof v === 'object') visit(v);
    }
  };
  visit(resource);
  return found;
}

const CONDITIONAL = /^[A-Z][A-Za-z]+\?/;

/**
 * `rewriteReferences` and `conditionalReferences` in one walk (the transaction hot path visits
 * every resource once): rewrites, in place, every string that is a key of `map`, and returns
 * the conditional `reference` values (`Type?query`) left after rewriting.
 */
export function rewriteAndCollect(resource: Resource, map: ReadonlyMap<string, string>): Set<string> {
  const found = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v: unknown = node[i];
        if (typeof v === 'string') {
          const replacement = map.get(v);
          if (replacement !== undefined) node[i] = replacement;
        } else if (v !== null && typeof v === 'object') visit(v);
      }
      return;
    }
    const record = node as Record<string, unknown>;
    for (const key in record) {
      const v = record[key];
      if (typeof v === 'string') {
        const replacement = map.size > 0 ? map.get(v) : undefined;
        if (replacement !== undefined) record[key] = replacement;
        else if (key === 'reference' && CONDITIONAL.test(v)) found.add(v);
      } else if (v !== null && typeof v === 'object') visit(v);
    }
  };
  visit(resource);
  return found;
}
