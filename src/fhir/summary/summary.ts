import type { Coding, Meta, Resource } from 'fhir/r4.js';
import { childTable, resourceTable, type ElementEntry, type ElementTable } from './element-table.js';

/** `_summary` values of https://hl7.org/fhir/R4/search.html#summary. */
export type SummaryMode = 'true' | 'text' | 'data' | 'count' | 'false';

type JsonObject = Record<string, unknown>;

export const SUBSETTED_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue';

/** Tells clients the resource is incomplete, so it is not used to overwrite the full one. */
function markSubsetted(resource: JsonObject): void {
  const meta: Meta = isObject(resource.meta) ? resource.meta : {};
  const tags: Coding[] = meta.tag ?? [];
  if (!tags.some((t) => t.system === SUBSETTED_SYSTEM && t.code === 'SUBSETTED')) {
    tags.push({ system: SUBSETTED_SYSTEM, code: 'SUBSETTED', display: 'subsetted' });
  }
  meta.tag = tags;
  resource.meta = meta;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON key → element key: a primitive's id/extensions live under `_name`. */
function elementKey(key: string): string {
  return key.startsWith('_') ? key.slice(1) : key;
}

interface Walk {
  removed: boolean;
}

/**
 * Keeps the summary elements of `value` described by `table`. Returns undefined when nothing
 * is left: FHIR JSON has no empty objects.
 */
function summarizeObject(value: JsonObject, table: ElementTable, walk: Walk): JsonObject | undefined {
  const out: JsonObject = {};
  for (const [key, child] of Object.entries(value)) {
    const entry = table.byKey.get(elementKey(key));
    // `_name` carries the id and extensions of a primitive, which are never summary elements.
    if (entry === undefined || !entry.summary || key.startsWith('_')) {
      walk.removed = true;
      continue;
    }
    const reduced = summarizeValue(child, entry, walk);
    if (reduced !== undefined) out[key] = reduced;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function summarizeValue(value: unknown, entry: ElementEntry, walk: Walk): unknown {
  if (Array.isArray(value)) {
    // Primitive lists may hold nulls that only stood for `_name` entries, which are dropped.
    const items = value.map((item) => summarizeValue(item, entry, walk)).filter((item) => item !== undefined && item !== null);
    if (items.length < value.length) walk.removed = true;
    return items.length > 0 ? items : undefined;
  }
  if (!isObject(value)) return value;
  const table = entry.children === undefined ? undefined : childTable(entry.children);
  // No description, or a type with no summary children (Extension, Narrative): keep it whole.
  if (table === undefined || !table.hasSummaryChildren) return structuredClone(value);
  const reduced = summarizeObject(value, table, walk);
  if (reduced === undefined) walk.removed = true;
  return reduced;
}

function keepTopLevel(resource: Resource, keep: (key: string, entry: ElementEntry | undefined) => boolean): JsonObject {
  const table = resourceTable(resource.resourceType);
  const out: JsonObject = {};
  let removed = false;
  for (const [key, value] of Object.entries(resource)) {
    if (key === 'resourceType' || keep(elementKey(key), table.byKey.get(elementKey(key)))) {
      out[key] = structuredClone(value);
    } else {
      removed = true;
    }
  }
  if (removed) markSubsetted(out);
  return out;
}

/**
 * Returns a new resource reduced per `_summary`; adds the SUBSETTED tag when anything was removed.
 * - `true`: summary elements of the resource definition; inside a kept complex value only the
 *   summary children of its datatype (or backbone) definition. Values whose type marks no summary
 *   children (Extension, Narrative) and nested resources (Bundle.entry.resource) are kept whole.
 *   Primitive extensions (`_name`) are dropped: Element.extension is not a summary element.
 * - `text`: text, id, meta and the mandatory top-level elements.
 * - `data`: everything but text.
 * - `count`: only meaningful for search (the search layer returns no entries); for a single
 *   resource it is treated as `true`, the nearest meaning.
 * - `false`: an unchanged copy.
 */
export function applySummary(resource: Resource, mode: SummaryMode): Resource {
  switch (mode) {
    case 'false':
      return structuredClone(resource);
    case 'data':
      return keepTopLevel(resource, (key) => key !== 'text') as unknown as Resource;
    case 'text':
      return keepTopLevel(
        resource,
        (key, entry) => key === 'text' || key === 'id' || key === 'meta' || entry?.mandatory === true,
      ) as unknown as Resource;
    case 'true':
    case 'count': {
      const walk: Walk = { removed: false };
      const { resourceType, ...elements } = resource as unknown as JsonObject;
      const out = summarizeObject(elements, resourceTable(resource.resourceType), walk) ?? {};
      const result: JsonObject = { resourceType, ...out };
      if (walk.removed) markSubsetted(result);
      return result as unknown as Resource;
    }
  }
}

/**
 * Keeps the listed top-level elements plus id, meta and the mandatory elements ("Servers SHOULD
 * always return mandatory elements whether they are requested or not"), and marks SUBSETTED.
 * Names are base element names (`deceased` keeps `deceasedBoolean`); the JSON key and a
 * `Type.name` form for this resource type are accepted too. Unknown names, names for other
 * types and nested paths (not part of R4 `_elements`) are ignored. Modifier elements are not
 * added: R4 asks clients to list them ("Clients SHOULD list all mandatory and modifier elements").
 */
export function applyElements(resource: Resource, elements: string[]): Resource {
  const table = resourceTable(resource.resourceType);
  const requested = new Set<string>();
  for (const raw of elements) {
    let name = raw.trim();
    if (name.startsWith(`${resource.resourceType}.`)) name = name.slice(resource.resourceType.length + 1);
    if (name.endsWith('[x]')) name = name.slice(0, -3);
    for (const entry of table.byName.get(name) ?? []) requested.add(entry.key);
    if (table.byKey.has(name)) requested.add(name);
  }
  return keepTopLevel(
    resource,
    (key, entry) => key === 'id' || key === 'meta' || requested.has(key) || entry?.mandatory === true,
  ) as unknown as Resource;
}
