import r4Model from 'fhirpath/fhir-context/r4';

/**
 * Element lookups for FHIRPath Patch, answered from the same R4 model fhirpath.js navigates
 * with, so "where does this name live and what type is it" agrees with how the path resolved.
 */

export const PRIMITIVE_TYPES: ReadonlySet<string> = new Set([
  'base64Binary', 'boolean', 'canonical', 'code', 'date', 'dateTime', 'decimal', 'id', 'instant',
  'integer', 'markdown', 'oid', 'positiveInt', 'string', 'time', 'unsignedInt', 'uri', 'url',
  'uuid', 'xhtml',
]);

/** The model types some elements (ids, Extension.url) with FHIRPath system types. */
const SYSTEM_TYPES: Readonly<Record<string, string>> = {
  'System.String': 'string',
  'System.Boolean': 'boolean',
  'System.Integer': 'integer',
  'System.Decimal': 'decimal',
  'System.Date': 'date',
  'System.DateTime': 'dateTime',
  'System.Time': 'time',
};

/** Types whose elements are declared inline, so children are found under the element path. */
const INLINE_TYPES: ReadonlySet<string> = new Set(['BackboneElement', 'Element']);

export interface ElementInfo {
  /** Element name without any choice suffix, e.g. `value` or `birthDate`. */
  name: string;
  /** Declared type (`Resource` for contained/entry resources); undefined for choice elements. */
  type: string | undefined;
  /** Allowed types of a choice element (FHIR type names, e.g. `dateTime`, `Quantity`). */
  choiceTypes: string[] | undefined;
  repeating: boolean;
  /** Model path under which this element's own children are described. */
  childrenPath: string | undefined;
}

export function upperFirst(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** `valueDateTime` suffix `DateTime` → `dateTime`; `CodeableConcept` stays as it is. */
export function typeFromSuffix(suffix: string): string {
  const lowered = lowerFirst(suffix);
  return PRIMITIVE_TYPES.has(lowered) ? lowered : suffix;
}

export function isPrimitiveType(type: string): boolean {
  return PRIMITIVE_TYPES.has(type) || type in SYSTEM_TYPES;
}

/** Datatypes a patch value may name; resources are carried in `resource`, never `value[x]`. */
export function isKnownDatatype(type: string): boolean {
  return PRIMITIVE_TYPES.has(type) || (Object.hasOwn(r4Model.type2Parent, type) && !ancestry(type).includes('Resource'));
}

function ancestry(type: string): string[] {
  const chain: string[] = [];
  for (let t: string | undefined = type; t !== undefined && !chain.includes(t); t = r4Model.type2Parent[t]) {
    chain.push(t);
  }
  return chain;
}

/** Looks up element `name` (no choice suffix) declared under the model path `parentPath`. */
export function lookupElement(parentPath: string, name: string): ElementInfo | undefined {
  const raw = `${parentPath}.${name}`;
  const resolved = r4Model.pathsDefinedElsewhere[raw] ?? raw;
  const choice = r4Model.choiceTypePaths[raw] ?? r4Model.choiceTypePaths[resolved];
  const declared = r4Model.path2Type[raw] ?? r4Model.path2Type[resolved];
  if (choice === undefined && declared === undefined) return undefined;
  const type = declared === undefined ? undefined : (SYSTEM_TYPES[declared] ?? declared);
  return {
    name,
    type,
    choiceTypes: choice?.map(typeFromSuffix),
    repeating: Boolean(r4Model.path2Repeating[raw] ?? r4Model.path2Repeating[resolved]),
    childrenPath: type === undefined ? undefined : INLINE_TYPES.has(type) ? resolved : type,
  };
}

export interface ResolvedName {
  element: ElementInfo;
  /** Set when the caller named a choice element with its suffix, e.g. `valueQuantity`. */
  fixedType: string | undefined;
}

/**
 * Resolves a name as written in a patch: either a plain element name (`birthDate`, `value`) or a
 * choice element written with its type suffix (`deceasedBoolean`), as it appears in JSON.
 */
export function resolveElementName(parentPath: string, name: string): ResolvedName | undefined {
  // The model also lists expanded choice paths (Observation.valueQuantity) as plain elements, so
  // a suffixed name is matched against its choice element first; otherwise adding
  // `deceasedDateTime` would not notice an existing `deceasedBoolean`. Base names may contain
  // capitals themselves (multipleBirthBoolean), hence every split is tried.
  for (let i = 1; i < name.length; i++) {
    if (name[i] !== name[i].toUpperCase() || name[i] === name[i].toLowerCase()) continue;
    const element = lookupElement(parentPath, name.slice(0, i));
    const type = typeFromSuffix(name.slice(i));
    if (element?.choiceTypes?.includes(type)) return { element, fixedType: type };
  }
  const direct = lookupElement(parentPath, name);
  return direct === undefined ? undefined : { element: direct, fixedType: undefined };
}

type PrimitiveFamily = 'string' | 'integer' | 'decimal' | 'boolean' | 'other';

function primitiveFamily(type: string): PrimitiveFamily {
  if (['string', 'code', 'id', 'markdown', 'xhtml', 'uri', 'url', 'canonical', 'oid', 'uuid'].includes(type)) {
    return 'string';
  }
  if (['integer', 'unsignedInt', 'positiveInt'].includes(type)) return 'integer';
  if (type === 'decimal' || type === 'boolean') return type;
  return 'other';
}

/**
 * Whether a value of `valueType` may be stored in an element declared as `elementType`.
 * Deliberately tolerant where the JSON is identical and only the format differs (valueString
 * into a `code`, valueInteger into a `decimal`, valueDate into a `dateTime`, Quantity into an
 * Age): format rules are the validator's job. It refuses what can never be right: a primitive
 * where a complex type is declared, a different complex type, a number where a string belongs.
 */
export function isAssignable(valueType: string, elementType: string): boolean {
  const target = SYSTEM_TYPES[elementType] ?? elementType;
  if (valueType === target) return true;
  const valuePrimitive = isPrimitiveType(valueType);
  if (valuePrimitive !== isPrimitiveType(target)) return false;
  if (valuePrimitive) {
    const from = primitiveFamily(valueType);
    const to = primitiveFamily(target);
    if (from !== 'other' && from === to) return true;
    if (from === 'integer' && to === 'decimal') return true;
    return valueType === 'date' && target === 'dateTime';
  }
  const generic = new Set(['Element', 'BackboneElement']);
  const up = ancestry(valueType).slice(1).filter((t) => !generic.has(t));
  const down = ancestry(target).slice(1).filter((t) => !generic.has(t));
  return up.includes(target) || down.includes(valueType);
}

/** The concrete type a choice element takes for a value of `valueType`, if any is allowed. */
export function choiceTypeFor(element: ElementInfo, valueType: string): string | undefined {
  const allowed = element.choiceTypes ?? [];
  return allowed.find((t) => t === valueType) ?? allowed.find((t) => isAssignable(valueType, t));
}

/** JSON keys under which a choice element may currently be stored (`valueQuantity`, ...). */
export function choiceKeys(element: ElementInfo): string[] {
  return (element.choiceTypes ?? []).map((t) => element.name + upperFirst(t));
}
