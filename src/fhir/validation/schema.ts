import type { ElementDefinition, ElementDefinitionType, StructureDefinition } from 'fhir/r4.js';
import { isPrimitiveType } from './primitives.js';
import { stripVersion } from './terminology.js';

/**
 * Compiled form of a base (specialization) StructureDefinition: for every object in an instance,
 * a map from JSON property name to the element it carries, so the walker does one Map lookup per
 * property instead of searching the snapshot.
 */

export interface TypeRef {
  /** FHIR type code: `string`, `Quantity`, `Resource`, `BackboneElement`… */
  readonly code: string;
  readonly primitive: boolean;
  /** `type.profile`, e.g. SimpleQuantity on Observation.referenceRange.low. */
  readonly profiles?: readonly string[];
  /** Allowed resource types of a Reference; undefined = any. */
  readonly targets?: ReadonlySet<string>;
}

export interface ElementNode {
  readonly path: string;
  /** JSON name without `[x]`. */
  readonly name: string;
  readonly min: number;
  readonly max: number;
  /** Represented as a JSON array (base cardinality is not ..1). */
  readonly array: boolean;
  readonly choice: boolean;
  types: TypeRef[];
  /** Inline children of a BackboneElement (or of the element a contentReference points to). */
  children?: Children;
  /** ValueSet of a `required` binding. */
  readonly binding?: string;
  /** Every JSON key that carries this element (`valueString`, `_valueString`, …). */
  keys: string[];
}

export interface KeyEntry {
  readonly node: ElementNode;
  readonly type: TypeRef;
}

export interface Children {
  readonly byKey: Map<string, KeyEntry>;
  readonly required: ElementNode[];
}

export interface TypeSchema {
  readonly name: string;
  readonly kind: StructureDefinition['kind'];
  readonly root: Children;
  /** element path → node, to look up an element's base definition from a profile. */
  readonly nodes: ReadonlyMap<string, ElementNode>;
}

const FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';
const CORE_SD = 'http://hl7.org/fhir/StructureDefinition/';

export function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Resource type named by a core canonical, e.g. `http://hl7.org/fhir/StructureDefinition/Patient`. */
export function coreTypeName(url: string): string | undefined {
  const u = stripVersion(url);
  return u.startsWith(CORE_SD) ? u.slice(CORE_SD.length) : undefined;
}

/**
 * The FHIR type of an element type. The R4 snapshots type `id`, `Element.id` and `Extension.url`
 * with FHIRPath system types and name the FHIR type in an extension.
 */
export function fhirTypeCode(t: ElementDefinitionType): string {
  if (!t.code.startsWith('http://hl7.org/fhirpath/System.')) return t.code;
  const ext = t.extension?.find((e) => e.url === FHIR_TYPE_EXT);
  return ext?.valueUrl ?? ext?.valueUri ?? 'string';
}

function emptyChildren(): Children {
  return { byKey: new Map(), required: [] };
}

function toTypeRef(t: ElementDefinitionType, code: string, isResourceType: (t: string) => boolean): TypeRef {
  let targets: Set<string> | undefined;
  if (code === 'Reference' && t.targetProfile?.length) {
    targets = new Set();
    for (const tp of t.targetProfile) {
      const name = coreTypeName(tp);
      // A target we cannot name as a resource type (e.g. `Resource`, a profile) allows anything.
      if (name === undefined || !isResourceType(name)) {
        targets = undefined;
        break;
      }
      targets.add(name);
    }
  }
  return {
    code,
    primitive: isPrimitiveType(code),
    ...(t.profile?.length ? { profiles: t.profile } : {}),
    ...(targets ? { targets } : {}),
  };
}

/** Compiles the snapshot of a base definition (resource, complex or primitive datatype). */
export function compileSchema(sd: StructureDefinition, isResourceType: (t: string) => boolean): TypeSchema {
  const elements = sd.snapshot?.element ?? [];
  const nodes = new Map<string, ElementNode>();
  const childrenOf = new Map<string, Children>();
  const contentRefs: [ElementNode, string][] = [];
  const rootPath = elements[0]?.path ?? sd.type;
  const isResource = sd.kind === 'resource';

  for (const el of elements.slice(1)) {
    const node = compileElement(el, isResource && el.path === `${rootPath}.id`, isResourceType);
    nodes.set(el.path, node);
    if (el.contentReference) contentRefs.push([node, el.contentReference.replace(/^.*#/, '')]);
    const parentPath = el.path.slice(0, el.path.lastIndexOf('.'));
    let siblings = childrenOf.get(parentPath);
    if (!siblings) childrenOf.set(parentPath, (siblings = emptyChildren()));
    addChild(siblings, node);
  }
  for (const [path, children] of childrenOf) {
    const owner = nodes.get(path);
    if (owner) owner.children = children;
  }
  for (const [node, ref] of contentRefs) {
    const target = nodes.get(ref);
    if (!target) continue;
    node.types = target.types;
    node.children = target.children ?? emptyChildren();
    rebuildKeys(node);
  }
  // Keys of contentReference nodes were computed before their types were known.
  for (const children of childrenOf.values()) {
    for (const [key, entry] of [...children.byKey]) {
      if (entry.node.types.length && entry.type.code === '') {
        children.byKey.delete(key);
        addKeys(children, entry.node);
      }
    }
  }
  return { name: sd.type, kind: sd.kind, root: childrenOf.get(rootPath) ?? emptyChildren(), nodes };
}

function compileElement(el: ElementDefinition, isResourceId: boolean, isResourceType: (t: string) => boolean): ElementNode {
  const last = el.path.slice(el.path.lastIndexOf('.') + 1);
  const choice = last.endsWith('[x]');
  const maxText = el.base?.max ?? el.max ?? '1';
  const types = (el.type ?? []).map((t) =>
    // Resource.id is `id` in the spec tables, though the R4 snapshot types it as a plain string.
    toTypeRef(t, isResourceId ? 'id' : fhirTypeCode(t), isResourceType),
  );
  const binding =
    el.binding?.strength === 'required' && el.binding.valueSet ? stripVersion(el.binding.valueSet) : undefined;
  const node: ElementNode = {
    path: el.path,
    name: choice ? last.slice(0, -3) : last,
    min: el.min ?? 0,
    max: el.max === '*' || el.max === undefined ? Infinity : Number(el.max),
    array: maxText !== '1' && maxText !== '0',
    choice,
    types,
    ...(binding ? { binding } : {}),
    keys: [],
  };
  rebuildKeys(node);
  return node;
}

function rebuildKeys(node: ElementNode): void {
  node.keys = [];
  if (node.types.length === 0) {
    node.keys.push(node.name);
    return;
  }
  for (const t of node.types) {
    const key = node.choice ? node.name + capitalize(t.code) : node.name;
    node.keys.push(key);
    if (t.primitive) node.keys.push('_' + key);
  }
}

const PENDING: TypeRef = { code: '', primitive: false };

function addChild(children: Children, node: ElementNode): void {
  if (node.min > 0) children.required.push(node);
  if (node.types.length === 0) {
    children.byKey.set(node.name, { node, type: PENDING }); // contentReference, fixed up later
    return;
  }
  addKeys(children, node);
}

function addKeys(children: Children, node: ElementNode): void {
  for (const t of node.types) {
    children.byKey.set(node.choice ? node.name + capitalize(t.code) : node.name, { node, type: t });
  }
}
