import type { Resource } from 'fhir/r4.js';
import { PRIVATE_MESSAGE_TYPES } from '../workflows/messaging-policy.js';
import type { SearchParameterRegistry } from './registry.js';
import type { Filter, ParamValue } from './request.js';
import type { AccessFilter } from './sql/access.js';
import { filterMatches } from './version-access.js';

/**
 * Matching a current resource against a search in memory, for the forms where the answer is
 * provably the search's own: `filterMatches` extracts values with the indexer's functions
 * (`tokenValues`, `referenceValues`) from the same compiled expressions, so a plain token,
 * `_id` or reference-by-id filter compares exactly the columns the SQL compares. Every other
 * form (modifiers, strings, dates, quantities, uris, chains, `_has`, logic) and every access
 * filter that is more than a per-type yes/no is left to SQL: `undefined` says so.
 */
export function memoryMatcher(
  registry: SearchParameterRegistry,
  resourceType: string,
  filters: readonly Filter[],
  access: AccessFilter | undefined,
  baseUrls: readonly string[],
): ((resource: Resource) => boolean) | undefined {
  const visible = typeVisible(access, resourceType);
  if (visible === undefined || !filters.every(judgedInMemory)) return undefined;
  if (!visible) return () => false;
  const bases = baseUrls.map((u) => u.replace(/\/+$/, ''));
  return (resource) => resource.resourceType === resourceType && filters.every((f) => filterMatches(registry, f, resource, bases));
}

/** The SQL access condition (`accessSql`) for a whole type when it does not depend on the row; else undefined. */
function typeVisible(access: AccessFilter | undefined, type: string): boolean | undefined {
  if (!access) return true;
  if (access.hidden?.includes(type)) return false;
  if (access.participants && PRIVATE_MESSAGE_TYPES.includes(type)) return undefined;
  if (access.types === '*' || access.types.includes(type)) return true;
  return undefined;
}

/** Whether `filterMatches` decides `f` as the search SQL does (it answers "no" to anything else). */
function judgedInMemory(f: Filter): boolean {
  if (f.kind !== 'param' || f.modifier !== undefined || f.values.length === 0) return false;
  if ('special' in f.param) return f.param.code === '_id' && f.values.every((v) => v.kind === 'token' && v.v.system === undefined && v.v.code !== undefined);
  return f.values.every(exactValue);
}

function exactValue(v: ParamValue): boolean {
  switch (v.kind) {
    case 'token':
      return v.v.typeSystem === undefined && v.v.typeCode === undefined && (v.v.code !== undefined || v.v.system !== undefined);
    case 'reference':
      return v.v.id !== undefined && v.v.url === undefined && v.v.identValue === undefined && v.v.identSystem === undefined;
    default:
      return false;
  }
}
