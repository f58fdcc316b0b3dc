import r4Model from 'fhirpath/fhir-context/r4/index.js';

/**
 * Static FHIR R4 type knowledge used by the compiled accessors. It comes from the model that
 * ships with the `fhirpath` package so the fast path and the fhirpath fallback agree on types.
 *
 * A "type key" is either a FHIR type name (`Observation`, `HumanName`, `dateTime`) or, for
 * backbone elements, the element path that defines it (`Observation.component`).
 */
interface R4Model {
  choiceTypePaths: Record<string, string[]>;
  pathsDefinedElsewhere: Record<string, string>;
  type2Parent: Record<string, string>;
  path2Type: Record<string, string>;
}

const model = r4Model as unknown as R4Model;

export const fhirpathModel = r4Model;

export const primitiveTypes = new Set([
  'base64Binary', 'boolean', 'canonical', 'code', 'date', 'dateTime', 'decimal', 'id', 'instant',
  'integer', 'markdown', 'oid', 'positiveInt', 'string', 'time', 'unsignedInt', 'uri', 'url',
  'uuid', 'xhtml',
]);

/** One way to step from a parent type to a child: the JSON property and the child's type key. */
export interface ChildStep {
  readonly prop: string;
  readonly type: string;
}

const childCache = new Map<string, Map<string, readonly ChildStep[] | null>>();

/** `DateTime` (choice suffix) → `dateTime`; complex types keep their name. */
export function typeFromSuffix(suffix: string): string {
  const lower = suffix[0]!.toLowerCase() + suffix.slice(1);
  return primitiveTypes.has(lower) ? lower : suffix;
}

function normaliseModelType(t: string, path: string): string {
  if (t === 'System.String') return 'string';
  if (t === 'System.Boolean') return 'boolean';
  if (t === 'System.Integer') return 'integer';
  if (t === 'System.Decimal') return 'decimal';
  if (t === 'BackboneElement' || t === 'Element') return model.pathsDefinedElsewhere[path] ?? path;
  return t;
}

function lookupOwn(typeKey: string, name: string): ChildStep[] | null {
  const path = `${typeKey}.${name}`;
  const choices = model.choiceTypePaths[path];
  if (choices) return choices.map((s) => ({ prop: name + s, type: typeFromSuffix(s) }));
  const t = model.path2Type[path];
  if (t) return [{ prop: name, type: normaliseModelType(t, path) }];
  // A concrete choice property named directly (`Extension.valueDateTime`).
  for (let i = name.length - 1; i > 0; i--) {
    const c = name[i]!;
    if (c >= 'A' && c <= 'Z') {
      const base = name.slice(0, i);
      const list = model.choiceTypePaths[`${typeKey}.${base}`];
      if (list && list.includes(name.slice(i))) return [{ prop: name, type: typeFromSuffix(name.slice(i)) }];
    }
  }
  return null;
}

function parentOf(typeKey: string): string | undefined {
  if (typeKey.includes('.')) return 'BackboneElement';
  if (primitiveTypes.has(typeKey)) return 'Element';
  return model.type2Parent[typeKey];
}

/** The possible child steps for `typeKey.name`, following the type hierarchy; null if unknown. */
export function childSteps(typeKey: string, name: string): readonly ChildStep[] | null {
  let byName = childCache.get(typeKey);
  if (!byName) {
    byName = new Map();
    childCache.set(typeKey, byName);
  }
  const cached = byName.get(name);
  if (cached !== undefined) return cached;
  let found: ChildStep[] | null = null;
  for (let t: string | undefined = typeKey; t && !found; t = parentOf(t)) found = lookupOwn(t, name);
  byName.set(name, found);
  return found;
}

/** True if `typeKey` is `target` or derives from it (Age is a Quantity; Patient a Resource). */
export function isOfType(typeKey: string, target: string): boolean {
  for (let t: string | undefined = typeKey; t; t = model.type2Parent[t]) {
    if (t === target) return true;
    if (t.toLowerCase() === target.toLowerCase() && (primitiveTypes.has(t) || primitiveTypes.has(target))) return true;
  }
  return false;
}

export function isResourceType(name: string): boolean {
  return isOfType(name, 'Resource') && name !== 'Resource' && name !== 'DomainResource';
}

/** Every concrete resource type name known to the model. */
export function allResourceTypes(): string[] {
  return Object.keys(model.type2Parent).filter((t) => isResourceType(t));
}
