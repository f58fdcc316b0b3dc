import type { CompartmentDefinition, Resource } from 'fhir/r4.js';
import { sql } from 'kysely';
import { loadR4Bundle } from '../fhir/definitions/load.js';
import { errors } from '../fhir/errors.js';
import type { TypedValue } from './expression.js';
import { referenceValues } from './indexer.js';
import type { SearchParameterRegistry } from './registry.js';
import { idSelect, type IdSource, type Target } from './sql/filter.js';
import { col, type Cond } from './sql/util.js';

/**
 * Compartment search (`Patient/123/Observation`, `Patient/123/*`) from the official
 * CompartmentDefinitions: a resource is in the compartment when it refers to the owner through
 * one of the params the definition lists for its type; the owner itself is in its own
 * compartment. Only definitions shipped with the R4 package (Patient) are known.
 */

type Definitions = Map<string, Map<string, string[]>>;

let definitions: Definitions | undefined;

/** owner type → member type → params (immutable definition data, cached per process) */
function compartmentDefs(): Definitions {
  if (!definitions) {
    const defs: Definitions = new Map();
    const def = loadR4Bundle('compartmentdefinition-patient.json') as unknown as CompartmentDefinition;
    const m = new Map<string, string[]>();
    for (const r of def.resource ?? []) if (r.param?.length) m.set(r.code, r.param);
    defs.set(def.code, m);
    definitions = defs;
  }
  return definitions;
}

function compartmentDef(c: { type: string; id: string }): Map<string, string[]> {
  const def = compartmentDefs().get(c.type);
  if (!def) throw errors.unsupported(`Compartment ${c.type} is not supported`);
  if (!/^[A-Za-z0-9\-.]{1,64}$/.test(c.id)) throw errors.incorrect(`Invalid compartment id '${c.id.slice(0, 64)}'`);
  return def;
}

/** Resource types that can be in compartment `type` (for `Patient/123/*`), the owner type included. */
export function compartmentTypes(type: string): string[] {
  const def = compartmentDefs().get(type);
  if (!def) throw errors.unsupported(`Compartment ${type} is not supported`);
  return [...new Set([...def.keys(), type])].sort();
}

/** The params by which a resource of `memberType` is in a compartment of `ownerType` (none: never in it). */
export function compartmentParams(ownerType: string, memberType: string): readonly string[] {
  return compartmentDefs().get(ownerType)?.get(memberType) ?? [];
}

/** Members of compartment `c` of ONE type that refer to the owner (the owner itself is not in it). */
export function compartmentSource(c: { type: string; id: string }, type: string): IdSource | undefined {
  const params = compartmentDef(c).get(type) ?? [];
  if (params.length === 0) return undefined;
  return {
    from: sql`search_reference cm`,
    id: col('cm', 'resource_id'),
    where: sql`cm.target_id = ${c.id} AND cm.target_type = ${c.type} AND cm.resource_type = ${type} AND cm.param = ANY(${params}::text[])`,
    live: true,
    rank: 0,
  };
}

/**
 * `target` is in compartment `c`, for the searched `types` (`single` when one). Members are ONE
 * set (`IN (… UNION ALL owner)`): an `OR` with the owner would turn the semi-join into a filter
 * over every resource of the types (516 ms → 1 ms for `Patient/x/*` at 1M Observations).
 */
export function compartmentCondition(c: { type: string; id: string }, types: string[], single: string | undefined, target: Target): Cond {
  const def = compartmentDef(c);
  const owner = types.includes(c.type);
  if (single) {
    const s = compartmentSource(c, single);
    const sets: Cond[] = s ? [idSelect(s)] : [];
    if (owner) sets.push(sql`SELECT ${c.id}::text`);
    return sets.length ? sql`${target.id} IN (${sql.join(sets, sql` UNION ALL `)})` : sql`FALSE`;
  }
  // Several types: each with its own params, as (type, param) pairs.
  const pairs: Array<[string, string]> = [];
  for (const t of types) for (const p of def.get(t) ?? []) pairs.push([t, p]);
  const sets: Cond[] = [];
  if (pairs.length) {
    sets.push(sql`SELECT cm.resource_type, cm.resource_id FROM search_reference cm WHERE cm.target_id = ${c.id} AND cm.target_type = ${c.type}
      AND (cm.resource_type, cm.param) IN (SELECT * FROM unnest(${pairs.map((p) => p[0])}::text[], ${pairs.map((p) => p[1])}::text[]))`);
  }
  if (owner) sets.push(sql`SELECT ${c.type}::text, ${c.id}::text`);
  return sets.length ? sql`(${target.type}, ${target.id}) IN (${sql.join(sets, sql` UNION ALL `)})` : sql`FALSE`;
}

/**
 * `target` is in compartment `c` (any member type, the owner included): the condition SMART
 * `patient/` scopes confine every search, include, chain and `_has` to (see `sql/access.ts`).
 */
export function compartmentMembership(c: { type: string; id: string }, target: Target): Cond {
  const def = compartmentDef(c);
  const pairs: Array<[string, string]> = [];
  for (const [t, params] of def) for (const p of params) pairs.push([t, p]);
  return sql`((${target.type} = ${c.type} AND ${target.id} = ${c.id}) OR (${target.type}, ${target.id}) IN (
    SELECT am.resource_type, am.resource_id FROM search_reference am WHERE am.target_id = ${c.id} AND am.target_type = ${c.type}
      AND (am.resource_type, am.param) IN (SELECT * FROM unnest(${pairs.map((p) => p[0])}::text[], ${pairs.map((p) => p[1])}::text[]))))`;
}

/**
 * Whether `resource` (not yet stored: a create or update body) is in compartment `c`: evaluated
 * in memory with the same params and reference parsing the index uses, so a write under
 * `patient/` scopes can be checked before it lands, and a stored version judged on its own
 * content. `baseUrls`: this server's bases, whose absolute references count as local (as indexed).
 */
export function resourceInCompartment(registry: SearchParameterRegistry, resource: Resource, c: { type: string; id: string }, baseUrls: readonly string[] = []): boolean {
  if (resource.resourceType === c.type) return resource.id === c.id;
  const params = compartmentDef(c).get(resource.resourceType) ?? [];
  for (const p of registry.forType(resource.resourceType)) {
    if (!p.accessor || !params.includes(p.code)) continue;
    let nodes: TypedValue[];
    try {
      nodes = p.accessor.evaluate(resource);
    } catch {
      continue;
    }
    const rows: unknown[][] = [];
    for (const n of nodes) referenceValues(n, rows, baseUrls);
    if (rows.some((r) => r[0] === c.type && r[1] === c.id)) return true;
  }
  return false;
}
