import type { Resource } from 'fhir/r4.js';
import { PARTICIPANT_PARAMS, PRIVATE_MESSAGE_TYPES } from '../workflows/messaging-policy.js';
import { resourceInCompartment } from './compartment.js';
import type { TypedValue } from './expression.js';
import { referenceValues, tokenValues } from './indexer.js';
import type { SearchParameterRegistry } from './registry.js';
import type { Filter, ParamValue } from './request.js';
import type { AccessFilter } from './sql/access.js';

/**
 * Whether ONE version of a resource (any version, not only the current one: vread, history) is
 * visible under an access filter, judged in memory on that version's own content with the same
 * params and reference parsing the index uses. The search index only knows current versions,
 * so this is how a version is judged by what it said when it was written (a resource moved out
 * of the patient's compartment later keeps its earlier versions visible, one moved in later
 * does not expose its earlier versions).
 *
 * `filter` must have its granular queries parsed (`SearchService.versionJudge` does that).
 * Granular filters are matched in memory for plain token (`category=laboratory`,
 * `code=http://loinc.org|1234-5`), reference (`subject=Patient/1`), uri and `_id` values; any
 * other form (modifiers, strings, dates, quantities, chains) makes the version invisible:
 * refused rather than guessed.
 */
export function versionVisible(registry: SearchParameterRegistry, filter: AccessFilter, resource: Resource, baseUrls: readonly string[]): boolean {
  const type = resource.resourceType;
  if (filter.hidden?.includes(type)) return false;
  if (filter.participants && PRIVATE_MESSAGE_TYPES.includes(type) && !hasParticipant(registry, resource, filter.participants, baseUrls)) return false;
  if (filter.types === '*' || filter.types.includes(type)) return true;
  const patient = filter.patient;
  const inCompartment = () => patient !== undefined && resourceInCompartment(registry, resource, { type: 'Patient', id: patient }, baseUrls);
  if ((filter.patientTypes === '*' || filter.patientTypes.includes(type)) && inCompartment()) return true;
  for (const g of filter.granular ?? []) {
    if (g.type !== type || !g.filters) continue;
    if (g.confined && !inCompartment()) continue;
    if (g.filters.every((f) => filterMatches(registry, f, resource, baseUrls))) return true;
  }
  return false;
}

function nodesOf(registry: SearchParameterRegistry, resource: Resource, code: string): TypedValue[] {
  const param = registry.forType(resource.resourceType).find((p) => p.code === code);
  if (!param?.accessor) return [];
  try {
    return param.accessor.evaluate(resource);
  } catch {
    return [];
  }
}

function references(nodes: readonly TypedValue[], baseUrls: readonly string[]): unknown[][] {
  const rows: unknown[][] = [];
  for (const n of nodes) referenceValues(n, rows, baseUrls);
  return rows;
}

function hasParticipant(registry: SearchParameterRegistry, resource: Resource, participants: readonly string[], baseUrls: readonly string[]): boolean {
  for (const code of PARTICIPANT_PARAMS) {
    for (const row of references(nodesOf(registry, resource, code), baseUrls)) {
      if (row[0] && row[1] && participants.includes(`${String(row[0])}/${String(row[1])}`)) return true;
    }
  }
  return false;
}

/** One plain parameter filter (values ORed) on the resource; unsupported forms match nothing (see `memory-match.ts`). */
export function filterMatches(registry: SearchParameterRegistry, f: Filter, resource: Resource, baseUrls: readonly string[]): boolean {
  if (f.kind !== 'param' || f.modifier !== undefined) return false;
  if ('special' in f.param) {
    if (f.param.code !== '_id') return false;
    return f.values.some((v) => v.kind === 'token' && v.v.system === undefined && v.v.code === resource.id);
  }
  const nodes = nodesOf(registry, resource, f.param.code);
  if (nodes.length === 0) return false;
  return f.values.some((v) => valueMatches(v, nodes, baseUrls));
}

function valueMatches(value: ParamValue, nodes: readonly TypedValue[], baseUrls: readonly string[]): boolean {
  switch (value.kind) {
    case 'token': {
      const rows: unknown[][] = [];
      for (const n of nodes) tokenValues(n, rows);
      const v = value.v;
      if (v.typeSystem !== undefined || v.typeCode !== undefined) return false;
      return rows.some(
        (r) => (v.code === undefined || r[1] === v.code) && (v.system === undefined || (v.system === null ? r[0] === null : r[0] === v.system)),
      );
    }
    case 'reference': {
      const v = value.v;
      if (v.id === undefined || v.url !== undefined || v.identValue !== undefined) return false;
      return references(nodes, baseUrls).some((r) => r[1] === v.id && (v.type === undefined || r[0] === v.type) && (v.version === undefined || r[2] === v.version));
    }
    case 'uri':
      return nodes.some((n) => typeof n.v === 'string' && n.v === value.v);
    default:
      return false;
  }
}
