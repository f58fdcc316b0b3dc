import type { Parameters, ParametersParameter, Resource } from 'fhir/r4.js';
import { parse as parseFhirPath } from 'fhirpath';
import { isKnownDatatype, isPrimitiveType, typeFromSuffix } from './element-model.js';
import { isJsonObject, malformed, type JsonObject } from './patch-errors.js';

/**
 * Turns a FHIRPath Patch Parameters resource into checked operations. Everything here depends
 * only on the patch document, so every failure is a 400 (malformed patch).
 */

export type PatchOperationType = 'add' | 'insert' | 'delete' | 'replace' | 'move';

/** A value as the patch supplies it; `parts` are typed later against the target element. */
export type PatchValue =
  | { kind: 'typed'; type: string; value: unknown; extras: JsonObject | undefined }
  | { kind: 'resource'; type: string; value: Resource }
  | { kind: 'parts'; parts: PatchPart[] };

export interface PatchPart {
  name: string;
  value: PatchValue;
  /** FHIRPath of the part inside the Parameters resource, for error messages. */
  location: string;
}

export interface PatchOperation {
  /** Position in Parameters.parameter, used in every error message. */
  index: number;
  type: PatchOperationType;
  path: string;
  name?: string;
  value?: PatchValue;
  insertAt?: number;
  source?: number;
  destination?: number;
  location: string;
}

type PartName = 'type' | 'path' | 'name' | 'value' | 'index' | 'source' | 'destination';

const PARTS_BY_TYPE: Record<PatchOperationType, readonly PartName[]> = {
  add: ['type', 'path', 'name', 'value'],
  insert: ['type', 'path', 'value', 'index'],
  delete: ['type', 'path'],
  replace: ['type', 'path', 'value'],
  move: ['type', 'path', 'source', 'destination'],
};

const ALL_PARTS: ReadonlySet<string> = new Set(['type', 'path', 'name', 'value', 'index', 'source', 'destination']);

/** Keys of a Parameters.parameter that carry its value (`valueString`, `valueHumanName`, ...). */
function valueKeys(part: JsonObject): string[] {
  return Object.keys(part).filter((k) => k.length > 5 && k.startsWith('value') && /[A-Z]/.test(k[5]));
}

const JSON_KIND: Readonly<Record<string, 'boolean' | 'number'>> = {
  boolean: 'boolean',
  integer: 'number',
  unsignedInt: 'number',
  positiveInt: 'number',
  decimal: 'number',
};

function primitiveMatches(type: string, value: unknown): boolean {
  const kind = JSON_KIND[type] ?? 'string';
  if (kind === 'number') return typeof value === 'number' && Number.isFinite(value) && (type === 'decimal' || Number.isInteger(value));
  return typeof value === kind;
}

/** Reads the value of a `value` part or of a nested part: value[x], resource, or parts. */
function readPatchValue(part: JsonObject, location: string, what: string): PatchValue {
  const keys = valueKeys(part);
  const hasResource = part.resource !== undefined;
  const hasParts = part.part !== undefined;
  const count = keys.length + (hasResource ? 1 : 0) + (hasParts ? 1 : 0);
  if (count !== 1) {
    throw malformed(
      `${what}: expected exactly one of value[x], resource or part, found ${count === 0 ? 'none' : [...keys, ...(hasResource ? ['resource'] : []), ...(hasParts ? ['part'] : [])].join(', ')}`,
      [location],
    );
  }
  if (hasResource) {
    const resource = part.resource;
    if (!isJsonObject(resource) || typeof resource.resourceType !== 'string') {
      throw malformed(`${what}: resource must be a FHIR resource with a resourceType`, [location]);
    }
    return { kind: 'resource', type: resource.resourceType, value: resource as unknown as Resource };
  }
  if (hasParts) {
    if (!Array.isArray(part.part) || part.part.length === 0) {
      throw malformed(`${what}: part must be a non-empty list of named parts`, [location]);
    }
    return {
      kind: 'parts',
      parts: part.part.map((child: unknown, i: number) => {
        const childLocation = `${location}.part[${i}]`;
        if (!isJsonObject(child) || typeof child.name !== 'string' || child.name === '') {
          throw malformed(`${what}: part[${i}] must be an object with a name`, [childLocation]);
        }
        const value = readPatchValue(child, childLocation, `${what}, part '${child.name}'`);
        return { name: child.name, value, location: childLocation };
      }),
    };
  }
  const key = keys[0];
  const type = typeFromSuffix(key.slice(5));
  if (!isKnownDatatype(type)) throw malformed(`${what}: ${key} is not a FHIR R4 datatype`, [location]);
  const value = part[key];
  const extras = part[`_${key}`];
  if (extras !== undefined && !isJsonObject(extras)) {
    throw malformed(`${what}: _${key} must be an object`, [location]);
  }
  if (isPrimitiveType(type) ? !primitiveMatches(type, value) : !isJsonObject(value)) {
    throw malformed(`${what}: ${key} does not hold a valid ${type}`, [location]);
  }
  return { kind: 'typed', type, value, extras };
}

function readString(part: JsonObject, keys: string[], location: string, what: string): string {
  for (const key of keys) {
    const value = part[key];
    if (typeof value === 'string' && value !== '') return value;
  }
  throw malformed(`${what} must have a non-empty ${keys.join(' or ')}`, [location]);
}

function readIndex(part: JsonObject, location: string, what: string): number {
  const value = part.valueInteger ?? part.valueUnsignedInt ?? part.valuePositiveInt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw malformed(`${what} must be a valueInteger of 0 or more`, [location]);
  }
  return value;
}

function parseOperation(parameter: unknown, index: number): PatchOperation {
  const location = `Parameters.parameter[${index}]`;
  const label = `operation[${index}]`;
  if (!isJsonObject(parameter) || parameter.name !== 'operation') {
    throw malformed(`${label}: every parameter of a FHIRPath Patch must be named 'operation'`, [location]);
  }
  if (!Array.isArray(parameter.part)) throw malformed(`${label}: the operation has no parts`, [location]);
  const parts = new Map<PartName, { part: JsonObject; location: string }>();
  parameter.part.forEach((part: unknown, i: number) => {
    const partLocation = `${location}.part[${i}]`;
    if (!isJsonObject(part) || typeof part.name !== 'string') {
      throw malformed(`${label}: part[${i}] must be an object with a name`, [partLocation]);
    }
    if (!ALL_PARTS.has(part.name)) throw malformed(`${label}: unknown part '${part.name}'`, [partLocation]);
    if (parts.has(part.name as PartName)) throw malformed(`${label}: part '${part.name}' is given more than once`, [partLocation]);
    parts.set(part.name as PartName, { part, location: partLocation });
  });

  const typePart = parts.get('type');
  if (typePart === undefined) throw malformed(`${label}: missing part 'type'`, [location]);
  const type = readString(typePart.part, ['valueCode', 'valueString'], typePart.location, `${label}: part 'type'`);
  if (!Object.hasOwn(PARTS_BY_TYPE, type)) {
    throw malformed(`${label}: unknown operation type '${type}' (expected add, insert, delete, replace or move)`, [typePart.location]);
  }
  const opType = type as PatchOperationType;
  const expected = PARTS_BY_TYPE[opType];
  for (const name of expected) {
    if (!parts.has(name)) throw malformed(`${label} (${opType}): missing part '${name}'`, [location]);
  }
  for (const [name, { location: partLocation }] of parts) {
    if (!expected.includes(name)) throw malformed(`${label} (${opType}): part '${name}' does not apply to ${opType}`, [partLocation]);
  }

  const get = (name: PartName) => parts.get(name)!;
  const pathPart = get('path');
  const path = readString(pathPart.part, ['valueString'], pathPart.location, `${label} (${opType}): part 'path'`);
  try {
    parseFhirPath(path);
  } catch (e) {
    throw malformed(`${label} (${opType}): path '${path}' is not valid FHIRPath: ${(e as Error).message}`, [pathPart.location]);
  }
  const operation: PatchOperation = { index, type: opType, path, location };
  if (parts.has('name')) {
    operation.name = readString(get('name').part, ['valueString'], get('name').location, `${label} (${opType}): part 'name'`);
  }
  if (parts.has('value')) operation.value = readPatchValue(get('value').part, get('value').location, `${label} (${opType}): part 'value'`);
  if (parts.has('index')) operation.insertAt = readIndex(get('index').part, get('index').location, `${label} (${opType}): part 'index'`);
  if (parts.has('source')) operation.source = readIndex(get('source').part, get('source').location, `${label} (${opType}): part 'source'`);
  if (parts.has('destination')) {
    operation.destination = readIndex(get('destination').part, get('destination').location, `${label} (${opType}): part 'destination'`);
  }
  return operation;
}

export function parseFhirPathPatch(patch: Parameters): PatchOperation[] {
  // Typed for callers, but checked as untrusted JSON: the body comes straight from a request.
  const document: unknown = patch;
  if (!isJsonObject(document) || document.resourceType !== 'Parameters') {
    throw malformed('a FHIRPath Patch must be a Parameters resource');
  }
  const parameters = document.parameter;
  if (parameters === undefined) return [];
  if (!Array.isArray(parameters)) throw malformed('Parameters.parameter must be a list', ['Parameters.parameter']);
  return (parameters as ParametersParameter[]).map((p, i) => parseOperation(p, i));
}
