import type { Parameters, Resource } from 'fhir/r4.js';
import { evaluate, type ResourceNode } from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import { isFhirError } from '../errors.js';
import { choiceKeys, lookupElement, resolveElementName, upperFirst, type ElementInfo } from './element-model.js';
import { parseFhirPathPatch, type PatchOperation } from './fhirpath-patch-parse.js';
import { placeValue, type ValueContext } from './fhirpath-patch-value.js';
import {
  hasElement,
  insertInList,
  listLength,
  moveInList,
  removeFromList,
  removeSingle,
  replaceInList,
  setSingle,
} from './json-slots.js';
import { assertIdentityKept, deepCopy, isJsonObject, malformed, unprocessable, type JsonObject } from './patch-errors.js';

/**
 * FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html). Each operation's path is evaluated with
 * fhirpath.js on a private copy of the resource; the nodes it returns carry their parent object,
 * property name and list index, which is exactly what is needed to mutate the copy in place.
 */

/** Where an element sits: its containing object, JSON key and (for list items) index. */
interface Location {
  container: JsonObject;
  key: string;
  index: number | undefined;
  element: ElementInfo;
  where: string;
}

/** The list a path designates, for insert and move. */
interface ListTarget {
  container: JsonObject;
  key: string;
  element: ElementInfo;
  length: number;
  where: string;
}

function labelOf(op: PatchOperation): string {
  return `operation[${op.index}] (${op.type} at '${op.path}')`;
}

function fail(op: PatchOperation, message: string, code?: 'processing' | 'invalid' | 'not-found'): Error {
  return unprocessable(`${labelOf(op)}: ${message}`, [op.location], code);
}

function isResourceNode(value: unknown): value is ResourceNode {
  return isJsonObject(value) && 'parentResNode' in value && 'data' in value;
}

function describe(node: ResourceNode): string {
  try {
    return node.fullPropertyName() ?? node.path ?? '(element)';
  } catch {
    return node.path ?? '(element)';
  }
}

/** Evaluates the path; every result must be an element of the resource being patched. */
function select(doc: JsonObject, path: string, op: PatchOperation): ResourceNode[] {
  let results: unknown[];
  try {
    results = evaluate(doc, path, undefined, r4Model, { resolveInternalTypes: false });
  } catch (e) {
    throw fail(op, `the path could not be evaluated: ${(e as Error).message}`);
  }
  return results.map((result) => {
    let root: unknown = result;
    while (isResourceNode(root) && root.parentResNode !== null) root = root.parentResNode;
    // Computed values (`1 + 1`, string concatenation) and anything not rooted in this resource
    // cannot be patched; resolve() to other resources is refused by fhirpath's sync mode anyway.
    if (!isResourceNode(result) || !isResourceNode(root) || root.data !== doc) {
      throw fail(op, 'the path must select elements of the resource, not computed values');
    }
    return result;
  });
}

function locate(node: ResourceNode, op: PatchOperation): Location | undefined {
  const parent = node.parentResNode;
  if (parent === null) return undefined;
  const where = describe(node);
  const container = parent.data as unknown;
  const name = node.propName;
  const element = typeof parent.path === 'string' && typeof name === 'string' ? lookupElement(parent.path, name) : undefined;
  if (!isJsonObject(container) || element === undefined) {
    throw fail(op, `${where} is not an element the patch can address`);
  }
  let key = element.name;
  if (element.choiceTypes !== undefined) {
    const present = choiceKeys(element).filter((k) => hasElement(container, k));
    const byType = node.fhirNodeDataType === null ? undefined : element.name + upperFirst(node.fhirNodeDataType);
    key = present.find((k) => k === byType) ?? present[0] ?? key;
  }
  const index = typeof node.index === 'number' ? node.index : undefined;
  if (!hasElement(container, key) || (index !== undefined && index >= listLength(container, key))) {
    throw fail(op, `${where} could not be located in the resource`);
  }
  return { container, key, index, element, where };
}

function exactlyOne(nodes: ResourceNode[], op: PatchOperation): ResourceNode {
  if (nodes.length === 1) return nodes[0];
  const found = nodes.length === 0 ? 'no element' : `${nodes.length} elements`;
  throw fail(op, `the path matched ${found}; exactly one is required`, nodes.length === 0 ? 'not-found' : 'processing');
}

function context(op: PatchOperation, where: string): ValueContext {
  return { label: labelOf(op), location: op.location, where };
}

/** A path ending in `.name` that matched nothing may still designate an empty list. */
function emptyList(doc: JsonObject, op: PatchOperation): ListTarget {
  const match = /^(.+)\.([A-Za-z][A-Za-z0-9]*)$/s.exec(op.path.trim());
  const nodes = match === null ? [] : select(doc, match[1], op);
  const owner = nodes.length === 1 ? nodes[0] : undefined;
  const element =
    owner !== undefined && isJsonObject(owner.data) && typeof owner.path === 'string'
      ? lookupElement(owner.path, match![2])
      : undefined;
  if (owner === undefined || element === undefined || !isJsonObject(owner.data)) {
    throw fail(op, 'the path matched no element', 'not-found');
  }
  const where = `${describe(owner)}.${element.name}`;
  if (!element.repeating) throw fail(op, `${where} is not a list`);
  return { container: owner.data, key: element.name, element, length: listLength(owner.data, element.name), where };
}

function selectList(doc: JsonObject, op: PatchOperation): ListTarget {
  const nodes = select(doc, op.path, op);
  if (nodes.length === 0) return emptyList(doc, op);
  const locations = nodes.map((node) => locate(node, op));
  const first = locations[0];
  if (first === undefined) throw fail(op, 'the path selects the resource itself, not a list');
  const sameList = locations.every(
    (l) => l !== undefined && l.container === first.container && l.key === first.key && l.index !== undefined,
  );
  if (!sameList || !first.element.repeating) throw fail(op, 'the path must select the items of a single list');
  const where = first.where.replace(/\[\d+\]$/, '');
  const length = listLength(first.container, first.key);
  const indexes = new Set(locations.map((l) => l!.index));
  if (indexes.size !== length) {
    throw fail(op, `the path selects ${indexes.size} of the ${length} items of ${where}; it must select the whole list`);
  }
  return { container: first.container, key: first.key, element: first.element, length, where };
}

function applyAdd(doc: JsonObject, op: PatchOperation): void {
  const node = exactlyOne(select(doc, op.path, op), op);
  const target = node.data as unknown;
  const where = describe(node);
  if (!isJsonObject(target) || typeof node.path !== 'string') {
    throw fail(op, `${where} is not a complex element; elements can only be added to complex elements`);
  }
  const name = op.name!;
  const resolved = resolveElementName(node.path, name);
  if (resolved === undefined) throw fail(op, `${node.path} has no element '${name}'`, 'invalid');
  const { element } = resolved;
  const placed = placeValue(op.value!, element, resolved.fixedType, context(op, `${where}.${name}`));
  if (element.repeating) {
    insertInList(target, placed.key, listLength(target, placed.key), placed.slot);
    return;
  }
  const keys = element.choiceTypes !== undefined ? choiceKeys(element) : [element.name];
  if (keys.some((k) => hasElement(target, k))) {
    throw fail(op, `${where}.${element.name} already has a value; use replace to change it`);
  }
  setSingle(target, placed.key, placed.slot);
}

function applyInsert(doc: JsonObject, op: PatchOperation): void {
  const list = selectList(doc, op);
  const index = op.insertAt!;
  if (index > list.length) {
    throw fail(op, `index ${index} is out of range: ${list.where} has ${list.length} items, so the index must be 0..${list.length}`);
  }
  const placed = placeValue(op.value!, list.element, undefined, context(op, list.where));
  insertInList(list.container, list.key, index, placed.slot);
}

/** FHIR JSON has no empty objects: containers emptied by a delete are removed as well. */
function pruneEmpty(node: ResourceNode | null, op: PatchOperation): void {
  for (let current = node; current !== null && current.parentResNode !== null; current = current.parentResNode) {
    const data = current.data as unknown;
    if (!isJsonObject(data) || Object.keys(data).length > 0) return;
    const location = locate(current, op);
    if (location === undefined) return;
    removeAt(location);
  }
}

function removeAt(location: Location): void {
  if (location.index === undefined) removeSingle(location.container, location.key);
  else removeFromList(location.container, location.key, location.index);
}

function applyDelete(doc: JsonObject, op: PatchOperation): void {
  const nodes = select(doc, op.path, op);
  // The spec deletes "if found": a path that matches nothing is not an error.
  if (nodes.length === 0) return;
  if (nodes.length > 1) throw fail(op, `the path matched ${nodes.length} elements; only a single element can be deleted`);
  const location = locate(nodes[0], op);
  if (location === undefined) throw fail(op, 'the resource itself cannot be deleted by a patch');
  removeAt(location);
  pruneEmpty(nodes[0].parentResNode, op);
}

function applyReplace(doc: JsonObject, op: PatchOperation): void {
  const node = exactlyOne(select(doc, op.path, op), op);
  const location = locate(node, op);
  if (location === undefined) throw fail(op, 'the resource itself cannot be replaced by a patch');
  const placed = placeValue(op.value!, location.element, undefined, context(op, location.where));
  if (location.index !== undefined) {
    replaceInList(location.container, location.key, location.index, placed.slot);
  } else {
    // A choice element may change type (valueQuantity → valueString), hence the new key.
    if (placed.key !== location.key) removeSingle(location.container, location.key);
    setSingle(location.container, placed.key, placed.slot);
  }
}

function applyMove(doc: JsonObject, op: PatchOperation): void {
  const list = selectList(doc, op);
  for (const [label, index] of [['source', op.source!], ['destination', op.destination!]] as const) {
    if (index >= list.length) {
      throw fail(op, `${label} ${index} is out of range: ${list.where} has ${list.length} items`);
    }
  }
  moveInList(list.container, list.key, op.source!, op.destination!);
}

const APPLY: Record<PatchOperation['type'], (doc: JsonObject, op: PatchOperation) => void> = {
  add: applyAdd,
  insert: applyInsert,
  delete: applyDelete,
  replace: applyReplace,
  move: applyMove,
};

/** FHIRPath Patch (a Parameters resource with `operation` parts). Returns a new object. */
export function applyFhirPathPatch(resource: Resource, patch: Parameters): Resource {
  let operations: PatchOperation[];
  try {
    operations = parseFhirPathPatch(deepCopy(patch, 'the FHIRPath Patch'));
  } catch (e) {
    // e.g. a RangeError from absurdly deep nested parts: still the client's malformed patch.
    if (isFhirError(e)) throw e;
    throw malformed(`the FHIRPath Patch could not be read: ${(e as Error).message}`);
  }
  const doc = deepCopy(resource, 'the resource') as unknown as JsonObject;
  for (const op of operations) {
    try {
      APPLY[op.type](doc, op);
    } catch (e) {
      if (isFhirError(e)) throw e;
      throw fail(op, `the operation could not be applied: ${(e as Error).message}`);
    }
    assertIdentityKept(resource, doc, labelOf(op));
  }
  return doc as unknown as Resource;
}
