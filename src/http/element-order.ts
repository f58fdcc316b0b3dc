import { childTable, resourceTable, type ElementTable } from '../fhir/summary/element-table.js';

/**
 * Output element order. Resources are stored as JSONB, which keeps keys ordered by length and
 * then bytes (`id`, `meta`, …, `resourceType` somewhere in the middle), so the client's order is
 * gone by the time a resource is read. FHIR JSON puts `resourceType` first and people read and
 * diff these responses, so responses are written in the order of the R4 StructureDefinitions
 * (as HAPI does): `resourceType`, then every element in definition order, at every level, with
 * a primitive's `_name` right after `name` and keys the definitions do not know last, in the
 * order they came.
 *
 * Cost: one walk building new objects before JSON.stringify (Bundles, whose resources the
 * database driver already parsed); the rank of each key is looked up in a table compiled once per
 * element table. Single reads reorder the stored text instead (element-order-text.ts).
 */

type Json = Record<string, unknown>;

/** What the definitions say about one JSON key of one element table. */
export interface KeyOrder {
  rank: number;
  /** How the value's children are ordered: a table, a resource (orders by its own type), or nothing (primitives). */
  child: OrderTable | 'resource' | undefined;
}

/** Keys the definitions do not know go last, in the order they came (rank + their position). */
export const UNKNOWN_RANK = 1e6;
export const UNKNOWN: KeyOrder = { rank: UNKNOWN_RANK, child: undefined };
/** `resourceType` of a resource: first. */
export const RESOURCE_TYPE: KeyOrder = { rank: -1, child: undefined };

/** The `_name` companion of a primitive: an Element (id, extension). */
let elementTable: OrderTable | undefined;
function primitiveElement(): OrderTable | undefined {
  elementTable ??= orderTable(childTable({ kind: 'datatype', type: 'Element' }));
  return elementTable;
}

export class OrderTable {
  private readonly keys = new Map<string, KeyOrder>();
  private readonly ranks = new Map<string, number>();

  constructor(private readonly table: ElementTable) {
    let rank = 0;
    for (const key of table.byKey.keys()) this.ranks.set(key, (rank += 2));
    // Extension.url is an XML attribute, and the published R4 JSON (HL7's examples, HAPI) writes
    // it before the extension's own extensions: right after `id`.
    if (table === childTable({ kind: 'datatype', type: 'Extension' })) this.ranks.set('url', this.ranks.get('id')! + 1);
  }

  /** Compiled on first sight of each key and kept: the tables are immutable definition data. */
  order(key: string): KeyOrder {
    let known = this.keys.get(key);
    if (known === undefined) {
      known = this.compile(key);
      this.keys.set(key, known);
    }
    return known;
  }

  private compile(key: string): KeyOrder {
    if (key.charCodeAt(0) === 95 /* _ */) {
      const rank = this.ranks.get(key.slice(1));
      return rank === undefined ? UNKNOWN : { rank: rank + 1, child: primitiveElement() };
    }
    const entry = this.table.byKey.get(key);
    if (entry === undefined) return UNKNOWN;
    const rank = this.ranks.get(key)!;
    if (entry.children !== undefined) return { rank, child: orderTable(childTable(entry.children)) };
    // Neither primitive nor described: an element of type Resource (contained, Bundle.entry.resource).
    return { rank, child: entry.primitive ? undefined : 'resource' };
  }
}

const tables = new WeakMap<ElementTable, OrderTable>();
function orderTable(table: ElementTable | undefined): OrderTable | undefined {
  if (table === undefined) return undefined;
  let order = tables.get(table);
  if (order === undefined) {
    order = new OrderTable(table);
    tables.set(table, order);
  }
  return order;
}

/**
 * The positions 0..n-1 ordered by `ranks` (stable). Objects have a handful of keys, so an
 * insertion sort beats allocating for Array.prototype.sort. Shared by the object and text paths.
 */
export function positionsByRank(ranks: ArrayLike<number>, n: number): number[] {
  const index = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    let j = i - 1;
    while (j >= 0 && ranks[index[j]] > ranks[i]) {
      index[j + 1] = index[j];
      j--;
    }
    index[j + 1] = i;
  }
  return index;
}

export function tableOfResource(resourceType: string): OrderTable {
  // Unknown types get the base Resource table (resourceTable's fallback).
  return orderTable(resourceTable(resourceType))!;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function orderValue(value: unknown, child: KeyOrder['child']): unknown {
  if (child === undefined || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = orderValue(value[i], child);
    return out;
  }
  if (child === 'resource') return inDefinitionOrder(value);
  return orderObject(value as Json, child, false);
}

function orderObject(value: Json, table: OrderTable, isResource: boolean): Json {
  const keys = Object.keys(value);
  const n = keys.length;
  const orders = new Array<KeyOrder>(n);
  const ranks = new Array<number>(n);
  let sorted = true;
  for (let i = 0; i < n; i++) {
    const key = keys[i];
    const order = isResource && key === 'resourceType' ? RESOURCE_TYPE : table.order(key);
    orders[i] = order;
    ranks[i] = order === UNKNOWN ? UNKNOWN_RANK + i : order.rank;
    if (i > 0 && ranks[i] < ranks[i - 1]) sorted = false;
  }
  const out: Json = {};
  if (sorted) {
    for (let i = 0; i < n; i++) out[keys[i]] = orderValue(value[keys[i]], orders[i].child);
    return out;
  }
  const index = positionsByRank(ranks, n);
  for (let k = 0; k < n; k++) {
    const i = index[k];
    out[keys[i]] = orderValue(value[keys[i]], orders[i].child);
  }
  return out;
}


/**
 * A copy of `value` in FHIR element order when it is a resource (has a string `resourceType`);
 * anything else is returned as it is.
 */
export function inDefinitionOrder<T>(value: T): T {
  if (!isObject(value) || typeof value.resourceType !== 'string') return value;
  return orderObject(value, tableOfResource(value.resourceType), true) as T;
}
