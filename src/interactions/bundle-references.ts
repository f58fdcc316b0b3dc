import type { Resource } from 'fhir/r4.js';

const CONDITIONAL = /^[A-Z][A-Za-z]+\?/;

export interface Rewritten {
  /** `resource` itself when nothing changed, else a copy sharing every unchanged subtree */
  resource: Resource;
  /** conditional `reference` values (`Type?query`) left after rewriting */
  conditional: Set<string>;
}

/**
 * Rewrites every string inside `resource` that is a key of `map` — `Reference.reference`
 * values and any other string equal to a bundle `fullUrl` (uri / canonical elements, nested
 * elements, contained resources, extensions), per R4 http.html#trules — and collects the
 * conditional references in the same walk. Contained `#id` references are untouched.
 *
 * Copy-on-write: `resource` is never changed; only the objects on the path to a rewritten
 * string are copied. A transaction can so be re-run from the request after a lost race, and
 * no resource is deep-copied up front (measured: a full structuredClone of every entry cost
 * more than the rewriting itself).
 */
export function rewriteAndCollect(resource: Resource, map: ReadonlyMap<string, string>): Rewritten {
  const conditional = new Set<string>();
  const replace = (v: string, key: string | undefined): string => {
    const replacement = map.size > 0 ? map.get(v) : undefined;
    if (replacement !== undefined) return replacement;
    if (key === 'reference' && CONDITIONAL.test(v)) conditional.add(v);
    return v;
  };
  const visit = (node: object): object => {
    if (Array.isArray(node)) {
      let out: unknown[] | undefined;
      for (let i = 0; i < node.length; i++) {
        const v: unknown = node[i];
        const next = typeof v === 'string' ? replace(v, undefined) : v !== null && typeof v === 'object' ? visit(v) : v;
        if (next !== v) (out ??= node.slice())[i] = next;
      }
      return out ?? node;
    }
    const record = node as Record<string, unknown>;
    let out: Record<string, unknown> | undefined;
    for (const key in record) {
      const v = record[key];
      const next = typeof v === 'string' ? replace(v, key) : v !== null && typeof v === 'object' ? visit(v) : v;
      if (next !== v) (out ??= { ...record })[key] = next;
    }
    return out ?? record;
  };
  return { resource: visit(resource) as Resource, conditional };
}
