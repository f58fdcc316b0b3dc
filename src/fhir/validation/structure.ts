import { bindingProblem } from './binding.js';
import type { R4Definitions } from './definitions.js';
import { error, type Issue } from './issues.js';
import { isObject, type JsonObject } from './json.js';
import { describeJsonValue, primitiveCheck } from './primitives.js';
import type { Children, ElementNode, KeyEntry, TypeRef } from './schema.js';
import type { Terminology } from './terminology.js';

/** What the walker needs from its caller for things that go beyond one base definition. */
export interface WalkHooks {
  /** A nested resource (contained, Bundle.entry.resource, Parameters.parameter.resource). */
  nestedResource(value: JsonObject, path: string, issues: Issue[]): void;
  /** An element whose type names profiles (e.g. SimpleQuantity). */
  typeProfiles(value: unknown, profiles: readonly string[], path: string, issues: Issue[]): void;
  /** An extension, to be checked against its definition when that is known. */
  extension(value: JsonObject, url: string, path: string, issues: Issue[]): void;
  /**
   * The invariants of element `definitionPath` (`Observation`, `Observation.referenceRange`, a
   * datatype's root such as `Quantity`) on `value`, which sits at `path` inside `resource`
   * (`rootResource`: the resource that contains it, or `resource` itself when not contained).
   */
  invariants?(value: JsonObject, definitionPath: string, path: string, resource: JsonObject, rootResource: JsonObject, issues: Issue[]): void;
}

const REF_RELATIVE = /^([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(\/_history\/[A-Za-z0-9\-.]{1,64})?$/;
const REF_ABSOLUTE = /^https?:\/\/\S*\/([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(\/_history\/[A-Za-z0-9\-.]{1,64})?$/;
const REF_CONDITIONAL = /^([A-Z][A-Za-z]+)\?/;

/** The resource type a literal reference points to, when the reference says so. */
export function referencedType(ref: string): string | undefined {
  const m = REF_RELATIVE.exec(ref) ?? REF_CONDITIONAL.exec(ref) ?? REF_ABSOLUTE.exec(ref);
  return m?.[1];
}

/**
 * Validates instances against the base definitions: JSON shape, unknown elements, cardinality,
 * primitive formats, required bindings, reference target types — recursively through datatypes,
 * backbone elements and nested resources.
 */
export class StructureWalker {
  private readonly elementChildren: Children;
  /** The resources being walked, innermost last: the `%resource` and `%rootResource` of an invariant. */
  private readonly resources: Array<{ resource: JsonObject; root: JsonObject }> = [];

  constructor(
    private readonly defs: R4Definitions,
    private readonly terms: Terminology,
    private readonly hooks: WalkHooks,
  ) {
    const element = defs.schema('Element');
    if (!element) throw new Error('FHIR definitions lack the Element type');
    this.elementChildren = element.root;
  }

  /**
   * Checks the resourceType and the base definition of a resource. `path` is where the resource
   * sits (its type for a top-level resource). Returns false when the resource type is unusable.
   */
  resource(res: unknown, path: string | undefined, issues: Issue[]): res is JsonObject & { resourceType: string } {
    const where = path ?? 'Resource';
    if (!isObject(res)) {
      error(issues, 'structure', where, `A resource must be a JSON object, got ${describeJsonValue(res)}`);
      return false;
    }
    const rt = res.resourceType;
    if (rt === undefined) {
      error(issues, 'required', `${where}.resourceType`, 'Missing resourceType');
      return false;
    }
    if (typeof rt !== 'string' || !this.defs.isResourceType(rt)) {
      error(issues, 'structure', `${where}.resourceType`, `Unknown resource type ${JSON.stringify(rt)}`);
      return false;
    }
    const schema = this.defs.schema(rt);
    if (!schema) return false;
    // A contained resource's root is its container's (FHIRPath %rootResource); a Bundle entry's is itself.
    const outer = this.resources[this.resources.length - 1];
    const frame = { resource: res as JsonObject, root: outer && path !== undefined && /\.contained\[\d+\]$/.test(path) ? outer.root : res };
    this.resources.push(frame);
    try {
      this.object(res, schema.root, path ?? rt, issues, true);
      this.hooks.invariants?.(res, rt, path ?? rt, frame.resource, frame.root, issues);
    } finally {
      this.resources.pop();
    }
    return true;
  }

  private object(obj: JsonObject, children: Children, path: string, issues: Issue[], isResource: boolean): void {
    let content = 0;
    let choicesSeen: ElementNode[] | undefined;
    for (const key of Object.keys(obj)) {
      if (key === 'resourceType' && isResource) continue;
      if (key !== 'id') content++;
      const value = obj[key];
      if (key.charCodeAt(0) === 95 /* _ */) {
        const name = key.slice(1);
        const entry = children.byKey.get(name);
        if (!entry || !entry.type.primitive) {
          error(issues, 'structure', `${path}.${key}`, `Unknown element '${key}'`);
          continue;
        }
        if (entry.node.choice && obj[name] === undefined) {
          // `_valueString` alone is a value of the choice too.
          if (choicesSeen?.includes(entry.node)) {
            error(issues, 'structure', `${path}.${key}`, `Only one type may be given for ${entry.node.name}[x]`);
          }
          (choicesSeen ??= []).push(entry.node);
        }
        this.primitiveExtension(value, obj[name], entry.node, `${path}.${name}`, issues);
        continue;
      }
      const entry = children.byKey.get(key);
      if (!entry) {
        error(issues, 'structure', `${path}.${key}`, `Unknown element '${key}'`);
        continue;
      }
      if (entry.node.choice) {
        if (choicesSeen?.includes(entry.node)) {
          error(issues, 'structure', `${path}.${key}`, `Only one type may be given for ${entry.node.name}[x]`);
        }
        (choicesSeen ??= []).push(entry.node);
      }
      this.element(value, obj, key, entry, path, issues);
    }
    if (!isResource && content === 0) {
      error(issues, 'structure', path, 'An element must have a value or children other than id (empty object)');
    }
    for (const node of children.required) {
      if (!node.keys.some((k) => obj[k] !== undefined)) {
        const name = node.choice ? `${node.name}[x]` : node.name;
        error(issues, 'required', `${path}.${name}`, `Missing required element '${name}' (min ${node.min})`);
      }
    }
  }

  private element(value: unknown, obj: JsonObject, key: string, entry: KeyEntry, path: string, issues: Issue[]): void {
    const node = entry.node;
    const p = `${path}.${key}`;
    if (value === null) {
      error(issues, 'structure', p, `'${key}' must not be null`);
      return;
    }
    if (!node.array) {
      if (Array.isArray(value)) {
        error(issues, 'structure', p, `'${key}' has max cardinality 1 and must not be an array`);
        return;
      }
      this.value(value, node, entry.type, p, issues);
      return;
    }
    if (!Array.isArray(value)) {
      error(issues, 'structure', p, `'${key}' repeats (max ${maxText(node)}) and must be a JSON array`);
      return;
    }
    if (value.length === 0) {
      error(issues, 'structure', p, `'${key}' must not be an empty array`);
      return;
    }
    if (value.length > node.max) {
      error(issues, 'structure', p, `'${key}' has ${value.length} items, max is ${node.max}`);
    }
    if (value.length < node.min) {
      error(issues, 'required', p, `'${key}' has ${value.length} items, min is ${node.min}`);
    }
    const ext = entry.type.primitive ? obj['_' + key] : undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item === null) {
        // A null primitive keeps array positions aligned with `_key`, which must then carry content.
        if (!entry.type.primitive || !Array.isArray(ext) || !isObject(ext[i])) {
          error(issues, 'structure', `${p}[${i}]`, `'${key}' must not contain null`);
        }
        continue;
      }
      this.value(item, node, entry.type, `${p}[${i}]`, issues);
    }
  }

  /** `_key`: id/extension of a primitive (https://hl7.org/fhir/R4/json.html#primitive). */
  private primitiveExtension(ext: unknown, prim: unknown, node: ElementNode, p: string, issues: Issue[]): void {
    if (!node.array) {
      if (!isObject(ext)) {
        error(issues, 'structure', p, `'_${node.name}' must be a JSON object`);
        return;
      }
      this.primitiveElement(ext, p, issues);
      return;
    }
    if (!Array.isArray(ext) || ext.length === 0) {
      error(issues, 'structure', p, `'_${node.name}' must be a non-empty JSON array`);
      return;
    }
    if (Array.isArray(prim) && prim.length !== ext.length) {
      error(issues, 'structure', p, `'_${node.name}' must have as many items as '${node.name}'`);
    }
    for (let i = 0; i < ext.length; i++) {
      const e: unknown = ext[i];
      if (e === null) {
        if (!Array.isArray(prim) || prim[i] === null || prim[i] === undefined) {
          error(issues, 'structure', `${p}[${i}]`, `'_${node.name}' and '${node.name}' are both null at index ${i}`);
        }
        continue;
      }
      if (!isObject(e)) {
        error(issues, 'structure', `${p}[${i}]`, `'_${node.name}' items must be JSON objects or null`);
        continue;
      }
      this.primitiveElement(e, `${p}[${i}]`, issues);
    }
  }

  private primitiveElement(e: JsonObject, p: string, issues: Issue[]): void {
    this.object(e, this.elementChildren, p, issues, false);
  }

  private value(v: unknown, node: ElementNode, type: TypeRef, p: string, issues: Issue[]): void {
    if (type.primitive) {
      const problem = primitiveCheck(type.code)?.(v);
      if (problem) {
        error(issues, 'value', p, problem);
        return;
      }
    } else if (type.code === 'Resource' || this.defs.isResourceType(type.code)) {
      if (!isObject(v)) {
        error(issues, 'structure', p, `A resource must be a JSON object, got ${describeJsonValue(v)}`);
        return;
      }
      this.hooks.nestedResource(v, p, issues);
      return;
    } else {
      if (!isObject(v)) {
        error(issues, 'structure', p, `${type.code} must be a JSON object, got ${describeJsonValue(v)}`);
        return;
      }
      const children = node.children ?? this.defs.schema(type.code)?.root;
      if (!children) return;
      this.object(v, children, p, issues, false);
      const frame = this.resources[this.resources.length - 1];
      if (frame && this.hooks.invariants) {
        this.hooks.invariants(v, node.path, p, frame.resource, frame.root, issues);
        if (!node.children) this.hooks.invariants(v, type.code, p, frame.resource, frame.root, issues);
      }
      if (type.code === 'Extension') {
        this.extensionShape(v, p, issues);
        if (typeof v.url === 'string') this.hooks.extension(v, v.url, p, issues);
      } else if (type.targets && typeof v.reference === 'string') this.referenceTarget(v.reference, type.targets, p, issues);
    }
    if (node.binding) {
      const problem = bindingProblem(this.terms, node.binding, v, type.code);
      if (problem) error(issues, 'code-invalid', p, problem);
    }
    if (type.profiles) this.hooks.typeProfiles(v, type.profiles, p, issues);
  }

  /** ext-1: an extension has either a value or nested extensions, not both. */
  private extensionShape(v: JsonObject, p: string, issues: Issue[]): void {
    const nested = v.extension !== undefined;
    const valued = Object.keys(v).some((k) => k.startsWith('value') || k.startsWith('_value'));
    if (nested === valued) {
      error(issues, 'invariant', p, `ext-1: an extension must have either extensions or a value[x], not ${nested ? 'both' : 'neither'}`);
    }
  }

  private referenceTarget(ref: string, targets: ReadonlySet<string>, p: string, issues: Issue[]): void {
    const t = referencedType(ref);
    if (t !== undefined && this.defs.isResourceType(t) && !targets.has(t)) {
      error(issues, 'structure', `${p}.reference`, `Reference to ${t} is not allowed here (allowed: ${[...targets].join(', ')})`);
    }
  }
}

function maxText(node: ElementNode): string {
  return node.max === Infinity ? '*' : String(node.max);
}
