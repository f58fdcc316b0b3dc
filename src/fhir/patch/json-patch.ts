import type { Resource } from 'fhir/r4.js';
import { isFhirError } from '../errors.js';
import { assertIdentityKept, deepCopy, isJsonObject, malformed, unprocessable, type JsonObject } from './patch-errors.js';

/**
 * RFC 6902 JSON Patch over RFC 6901 JSON Pointers.
 *
 * Written here rather than delegated to fast-json-patch because that library resolves pointers
 * through the prototype chain (`/toString` "exists"), accepts indexes with leading zeros, lets a
 * value be moved into its own child, throws a plain TypeError for `__proto__`, and stores the
 * patch's values by reference. Each of those would need a check in front of it, which is most of
 * the implementation anyway. Here pointers only ever see own properties of plain JSON data.
 */

type Op = 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';

interface Operation {
  index: number;
  op: Op;
  path: string[];
  pointer: string;
  from?: string[];
  fromPointer?: string;
  value?: unknown;
}

const OPS: ReadonlySet<string> = new Set(['add', 'remove', 'replace', 'move', 'copy', 'test']);

/** Keys that could reach Object.prototype; no FHIR element has these names. */
const FORBIDDEN_SEGMENTS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

function label(op: Pick<Operation, 'index' | 'op' | 'pointer'>): string {
  return `operation[${op.index}] (${op.op} ${op.pointer === '' ? '""' : op.pointer})`;
}

/** `/name/0/family` → `Patient.name[0].family`, for OperationOutcome.issue.expression. */
function expressionOf(resourceType: string, segments: string[]): string[] {
  let expression = resourceType;
  for (const segment of segments) {
    if (segment === '-') continue;
    expression += ARRAY_INDEX.test(segment) ? `[${segment}]` : `.${segment}`;
  }
  return [expression];
}

function parsePointer(pointer: unknown, index: number, member: string): string[] {
  if (typeof pointer !== 'string') throw malformed(`operation[${index}]: "${member}" must be a JSON Pointer string`);
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw malformed(`operation[${index}]: "${member}" must be empty or start with "/": ${pointer}`);
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => {
      if (/~(?![01])/.test(raw)) throw malformed(`operation[${index}]: "${member}" has an invalid "~" escape: ${pointer}`);
      const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (FORBIDDEN_SEGMENTS.has(segment)) {
        throw malformed(`operation[${index}]: "${member}" segment "${segment}" is not allowed`);
      }
      return segment;
    });
}

function parseOperations(document: unknown): Operation[] {
  if (!Array.isArray(document)) throw malformed('a JSON Patch document must be an array of operations');
  return document.map((raw: unknown, index): Operation => {
    if (!isJsonObject(raw)) throw malformed(`operation[${index}]: each operation must be a JSON object`);
    const op = raw.op;
    if (typeof op !== 'string' || !OPS.has(op)) {
      throw malformed(`operation[${index}]: "op" must be one of add, remove, replace, move, copy, test; got ${JSON.stringify(op) ?? 'nothing'}`);
    }
    const path = parsePointer(raw.path, index, 'path');
    const parsed: Operation = { index, op: op as Op, path, pointer: raw.path as string };
    if (op === 'move' || op === 'copy') {
      parsed.from = parsePointer(raw.from, index, 'from');
      parsed.fromPointer = raw.from as string;
    }
    if (op === 'add' || op === 'replace' || op === 'test') {
      if (!Object.hasOwn(raw, 'value') || raw.value === undefined) {
        throw malformed(`${label(parsed)}: "value" is required`);
      }
      parsed.value = raw.value;
    }
    return parsed;
  });
}

type Container = JsonObject | unknown[];

function isContainer(value: unknown): value is Container {
  return typeof value === 'object' && value !== null;
}

/** Resolves all but the last segment: the container the operation acts on. */
function parentOf(doc: unknown, segments: string[], fail: (message: string, code?: 'not-found') => Error): Container {
  let current: unknown = doc;
  for (const segment of segments.slice(0, -1)) {
    current = childOf(current, segment, fail);
  }
  if (!isContainer(current)) throw fail('the path does not exist', 'not-found');
  return current;
}

function childOf(current: unknown, segment: string, fail: (message: string, code?: 'not-found') => Error): unknown {
  if (Array.isArray(current)) {
    if (!ARRAY_INDEX.test(segment) || Number(segment) >= current.length) throw fail('the path does not exist', 'not-found');
    return current[Number(segment)];
  }
  if (!isJsonObject(current) || !Object.hasOwn(current, segment)) throw fail('the path does not exist', 'not-found');
  return current[segment];
}

function getValue(doc: unknown, segments: string[], fail: (message: string, code?: 'not-found') => Error): unknown {
  let current = doc;
  for (const segment of segments) current = childOf(current, segment, fail);
  return current;
}

/** Writes `value` at `segments` with add semantics; returns the new document. */
function addValue(doc: unknown, segments: string[], value: unknown, fail: (message: string, code?: 'not-found') => Error): unknown {
  if (segments.length === 0) return value;
  const parent = parentOf(doc, segments, fail);
  const last = segments[segments.length - 1];
  if (Array.isArray(parent)) {
    if (last === '-') {
      parent.push(value);
    } else if (!ARRAY_INDEX.test(last)) {
      throw fail(`"${last}" is not an array index`);
    } else if (Number(last) > parent.length) {
      throw fail(`index ${last} is out of range: the array has ${parent.length} items`);
    } else {
      parent.splice(Number(last), 0, value);
    }
  } else {
    parent[last] = value;
  }
  return doc;
}

function removeValue(doc: unknown, segments: string[], fail: (message: string, code?: 'not-found') => Error): unknown {
  const parent = parentOf(doc, segments, fail);
  const last = segments[segments.length - 1];
  const removed = childOf(parent, last, fail);
  if (Array.isArray(parent)) parent.splice(Number(last), 1);
  else delete parent[last];
  return removed;
}

/** Structural equality of JSON values, as RFC 6902 §4.6 defines it for `test`. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (!isJsonObject(a) || !isJsonObject(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}

function applyOperation(doc: unknown, op: Operation, resourceType: string): unknown {
  const fail = (message: string, code?: 'not-found') =>
    unprocessable(`${label(op)}: ${message}`, expressionOf(resourceType, op.path), code);
  switch (op.op) {
    case 'add':
      return addValue(doc, op.path, op.value, fail);
    case 'remove':
      if (op.path.length === 0) throw fail('the whole resource cannot be removed');
      removeValue(doc, op.path, fail);
      return doc;
    case 'replace':
      if (op.path.length === 0) return op.value;
      getValue(doc, op.path, fail);
      removeValue(doc, op.path, fail);
      return addValue(doc, op.path, op.value, fail);
    case 'move': {
      const from = op.from!;
      if (op.fromPointer === op.pointer) return doc;
      if (op.pointer.startsWith(`${op.fromPointer}/`)) throw fail(`a value cannot be moved into its own child (from ${op.fromPointer})`);
      if (from.length === 0) throw fail('the whole resource cannot be moved');
      const fromFail = (message: string, code?: 'not-found') => fail(`"from" ${op.fromPointer}: ${message}`, code);
      const value = removeValue(doc, from, fromFail);
      return addValue(doc, op.path, value, fail);
    }
    case 'copy': {
      const value = getValue(doc, op.from!, (message, code) => fail(`"from" ${op.fromPointer}: ${message}`, code));
      return addValue(doc, op.path, structuredClone(value), fail);
    }
    case 'test': {
      const actual = getValue(doc, op.path, fail);
      if (!jsonEqual(actual, op.value)) throw fail(`test failed: the value is ${JSON.stringify(actual)?.slice(0, 200)}`);
      return doc;
    }
  }
}

/** RFC 6902 JSON Patch (content type application/json-patch+json). Returns a new object; input untouched. */
export function applyJsonPatch(resource: Resource, operations: unknown): Resource {
  // Copying the patch too means the result never shares objects with the request body.
  const parsed = parseOperations(deepCopy(operations, 'the JSON Patch document'));
  let doc: unknown = deepCopy(resource, 'the resource');
  for (const op of parsed) {
    try {
      doc = applyOperation(doc, op, resource.resourceType);
    } catch (e) {
      if (isFhirError(e)) throw e;
      throw unprocessable(`${label(op)}: the operation could not be applied: ${(e as Error).message}`);
    }
    assertIdentityKept(resource, doc, label(op));
  }
  return doc as Resource;
}
