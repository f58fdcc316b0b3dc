import { sql, type RawBuilder } from 'kysely';

/** Pure helpers of the terminology store: display words, hierarchy closure, compose filters as SQL. */

/** Lower-case words of a display or code, accents removed: what `$expand?filter=` matches by prefix. */
export function wordsOf(text: string): string[] {
  const folded = text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
  return [...new Set(folded.split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 0))];
}

/** Every (ancestor, descendant, depth) pair of a hierarchy given as parent edges, self pairs included. */
export function closureOf(codes: readonly string[], edges: ReadonlyArray<[string, string]>): Array<[string, string, number]> {
  const parents = new Map<string, string[]>();
  for (const [p, c] of edges) {
    const list = parents.get(c);
    if (list) list.push(p);
    else parents.set(c, [p]);
  }
  const memo = new Map<string, Map<string, number>>();
  const visiting = new Set<string>();
  const ancestors = (code: string): Map<string, number> => {
    const known = memo.get(code);
    if (known) return known;
    const out = new Map<string, number>([[code, 0]]);
    if (visiting.has(code)) return out; // a cycle in bad data: stop here
    visiting.add(code);
    for (const p of parents.get(code) ?? []) {
      for (const [a, d] of ancestors(p)) {
        const depth = d + 1;
        const prev = out.get(a);
        if (prev === undefined || depth < prev) out.set(a, depth);
      }
    }
    visiting.delete(code);
    memo.set(code, out);
    return out;
  };
  const rows: Array<[string, string, number]> = [];
  for (const code of codes) for (const [a, d] of ancestors(code)) rows.push([a, code, d]);
  return rows;
}

export function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** One compose filter as a condition on concept row `c` of `system`. */
export function filterCond(system: string, f: { property: string; op: string; value: string }): RawBuilder<unknown> {
  const below = (self: boolean) =>
    sql`c.code IN (SELECT h.descendant FROM terminology_closure h WHERE h.system = ${system} AND h.ancestor = ${f.value}${self ? sql`` : sql` AND h.depth > 0`})`;
  const prop = f.property;
  if (prop === 'concept' || prop === 'code') {
    switch (f.op) {
      case 'is-a':
        return below(true);
      case 'descendent-of':
        return below(false);
      case 'is-not-a':
        return sql`NOT ${below(true)}`;
      case 'generalizes':
        return sql`c.code IN (SELECT h.ancestor FROM terminology_closure h WHERE h.system = ${system} AND h.descendant = ${f.value})`;
      case '=':
        return sql`c.code = ${f.value}`;
      case 'in':
        return sql`c.code = ANY(${f.value.split(',').map((v) => v.trim())}::text[])`;
      case 'not-in':
        return sql`NOT (c.code = ANY(${f.value.split(',').map((v) => v.trim())}::text[]))`;
      case 'regex':
        // The whole code must match (FHIR regex filters are anchored).
        return sql`c.code ~ ${`^(?:${f.value})$`}`;
    }
  }
  if (prop === 'display' && f.op === '=') return sql`c.display = ${f.value}`;
  if (prop === 'display' && f.op === 'regex') return sql`c.display ~ ${`^(?:${f.value})$`}`;
  if (prop === 'parent' && f.op === '=')
    return sql`c.code IN (SELECT h.descendant FROM terminology_closure h WHERE h.system = ${system} AND h.ancestor = ${f.value} AND h.depth = 1)`;
  if (prop === 'child' && f.op === '=')
    return sql`c.code IN (SELECT h.ancestor FROM terminology_closure h WHERE h.system = ${system} AND h.descendant = ${f.value} AND h.depth = 1)`;
  const values = sql`jsonb_path_query_array(coalesce(c.properties, '[]'::jsonb), ${`$[*] ? (@.code == "${prop.replace(/["\\]/g, '')}").value`}::jsonpath)`;
  switch (f.op) {
    case '=':
      return sql`EXISTS (SELECT 1 FROM jsonb_array_elements(${values}) v WHERE v #>> '{}' = ${f.value})`;
    case 'in':
      return sql`EXISTS (SELECT 1 FROM jsonb_array_elements(${values}) v WHERE v #>> '{}' = ANY(${f.value.split(',').map((v) => v.trim())}::text[]))`;
    case 'not-in':
      return sql`NOT EXISTS (SELECT 1 FROM jsonb_array_elements(${values}) v WHERE v #>> '{}' = ANY(${f.value.split(',').map((v) => v.trim())}::text[]))`;
    case 'regex':
      return sql`EXISTS (SELECT 1 FROM jsonb_array_elements(${values}) v WHERE v #>> '{}' ~ ${`^(?:${f.value})$`})`;
    case 'exists':
      return f.value === 'false' ? sql`jsonb_array_length(${values}) = 0` : sql`jsonb_array_length(${values}) > 0`;
  }
  throw new UnsupportedFilter(`filter '${prop} ${f.op}' is not supported by this server's value set expansion`);
}

/** A compose filter the expansion does not implement (the operation answers 400 / not-supported). */
export class UnsupportedFilter extends Error {}
