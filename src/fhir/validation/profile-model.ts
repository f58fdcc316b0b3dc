import type { ElementDefinition, ElementDefinitionConstraint, StructureDefinition } from 'fhir/r4.js';
import type { R4Definitions } from './definitions.js';
import { capitalize, coreTypeName, fhirTypeCode, type ElementNode } from './schema.js';
import { stripVersion } from './terminology.js';

/**
 * Compiled form of a constraint StructureDefinition (a profile): the snapshot as a tree of
 * elements with their slices, keeping only what the profile adds to the base definition, so that
 * checking an instance against a profile walks just the constrained parts.
 */

export type DiscriminatorType = 'value' | 'pattern' | 'type' | 'profile' | 'exists';

export interface Slicing {
  readonly discriminators: readonly { type: DiscriminatorType; path: string }[];
  readonly rules: 'open' | 'closed' | 'openAtEnd';
  readonly ordered: boolean;
}

export interface PNode {
  readonly el: ElementDefinition;
  /** JSON name without `[x]`. */
  readonly name: string;
  readonly choice: boolean;
  readonly sliceName?: string;
  readonly min: number;
  readonly max: number;
  /** Cardinality tighter than the base definition, so the base check does not cover it. */
  checkMin: boolean;
  checkMax: boolean;
  /** Type codes allowed here. */
  readonly types: readonly string[];
  /** The profile allows fewer/other types than the base element. */
  restrictTypes: boolean;
  readonly fixed?: unknown;
  readonly pattern?: unknown;
  /** Required binding that the base does not already enforce. */
  binding?: string;
  /** Type profiles the instance must conform to (one of), beyond the base's. */
  typeProfiles?: readonly string[];
  /** Canonicals of allowed Reference targets, when narrower than the base. */
  targetProfiles?: readonly string[];
  /** Invariants the profile adds here (keys the base definitions do not define), FHIRPath typed as the base element (`el.base.path`). */
  invariants?: readonly ElementDefinitionConstraint[];
  readonly children: PNode[];
  /** JSON key (choice keys expanded, without `_`) → child. */
  readonly byKey: Map<string, PNode>;
  /** Children with something to check (the rest only repeat the base definition). */
  active: PNode[];
  slicing?: Slicing;
  readonly slices: PNode[];
  /** This node or something below it adds a constraint. */
  interesting: boolean;
}

export interface ProfileModel {
  readonly url: string;
  readonly type: string;
  readonly root: PNode;
}

function fixedOrPattern(el: ElementDefinition, prefix: 'fixed' | 'pattern'): unknown {
  for (const k of Object.keys(el)) {
    if (k.startsWith(prefix) && k.length > prefix.length) return (el as unknown as Record<string, unknown>)[k];
  }
  return undefined;
}

function parseMax(max: string | undefined): number {
  return max === undefined || max === '*' ? Infinity : Number(max);
}

function newPlainNode(el: ElementDefinition): PNode {
  const last = el.path.slice(el.path.lastIndexOf('.') + 1);
  const choice = last.endsWith('[x]');
  const types = (el.type ?? []).map(fhirTypeCode);
  const fixed = fixedOrPattern(el, 'fixed');
  const pattern = fixedOrPattern(el, 'pattern');
  return {
    el,
    name: choice ? last.slice(0, -3) : last,
    choice,
    ...(el.sliceName ? { sliceName: el.sliceName } : {}),
    min: el.min ?? 0,
    max: parseMax(el.max),
    checkMin: false,
    checkMax: false,
    types,
    restrictTypes: false,
    ...(fixed !== undefined ? { fixed } : {}),
    ...(pattern !== undefined ? { pattern } : {}),
    children: [],
    byKey: new Map(),
    active: [],
    slices: [],
    interesting: false,
  };
}

/** Picks a profile element's own invariants out of its constraints (src/fhir/validation/invariants.ts). */
export type OwnConstraints = (constraints: readonly ElementDefinitionConstraint[] | undefined) => ElementDefinitionConstraint[];

export function compileProfile(sd: StructureDefinition, defs: R4Definitions, ownConstraints?: OwnConstraints): ProfileModel | undefined {
  const elements = sd.snapshot?.element;
  if (!elements?.length) return undefined;
  const newNode = (el: ElementDefinition): PNode => {
    const node = newPlainNode(el);
    const own = ownConstraints?.(el.constraint) ?? [];
    if (own.length > 0) node.invariants = own;
    return node;
  };
  const root = newNode(elements[0]);
  const byId = new Map<string, PNode>([[elements[0].id ?? elements[0].path, root]]);
  for (const el of elements.slice(1)) {
    const id = el.id ?? el.path;
    const dot = id.lastIndexOf('.');
    const parentId = id.slice(0, dot);
    const segment = id.slice(dot + 1);
    const colon = segment.indexOf(':');
    const node = newNode(el);
    byId.set(id, node);
    if (colon < 0) {
      byId.get(parentId)?.children.push(node);
      continue;
    }
    // A slice: owned by the unsliced element, or by the parent slice for a re-slice (`a/b`).
    const sliceName = segment.slice(colon + 1);
    const slash = sliceName.lastIndexOf('/');
    const ownerId = `${parentId}.${segment.slice(0, colon)}${slash < 0 ? '' : ':' + sliceName.slice(0, slash)}`;
    byId.get(ownerId)?.slices.push(node);
  }
  finish(root, defs);
  return { url: stripVersion(sd.url), type: sd.type, root };
}

/** Decides what each node has to check, bottom-up, and indexes children by JSON key. */
function finish(node: PNode, defs: R4Definitions): boolean {
  const base = baseElement(node.el, defs);
  const baseMin = node.el.base?.min ?? base?.min ?? 0;
  const baseMax = node.el.base?.max !== undefined ? parseMax(node.el.base.max) : (base?.max ?? Infinity);
  node.checkMin = node.sliceName === undefined && node.min > baseMin;
  node.checkMax = node.sliceName === undefined && node.max < baseMax;
  if (base) compareWithBase(node, base);
  else if (node.el.binding?.strength === 'required' && node.el.binding.valueSet) {
    node.binding = stripVersion(node.el.binding.valueSet);
  }
  const s = node.el.slicing;
  if (s?.discriminator?.length) {
    node.slicing = {
      discriminators: s.discriminator.map((d) => {
        if (typeof d.path !== 'string') throw new Error(`${node.el.id}: discriminator without a path`);
        return { type: d.type as DiscriminatorType, path: d.path };
      }),
      rules: s.rules ?? 'open',
      ordered: s.ordered ?? false,
    };
  }
  let interesting =
    node.checkMin ||
    node.checkMax ||
    node.restrictTypes ||
    node.fixed !== undefined ||
    node.pattern !== undefined ||
    node.binding !== undefined ||
    node.typeProfiles !== undefined ||
    node.targetProfiles !== undefined ||
    node.invariants !== undefined;
  for (const child of node.children) {
    if (finish(child, defs)) node.active.push(child);
    // A real element wins over a choice key that happens to spell the same name.
    if (child.choice) {
      for (const t of defs.dataTypes) if (!node.byKey.has(child.name + capitalize(t))) node.byKey.set(child.name + capitalize(t), child);
    } else {
      node.byKey.set(child.name, child);
    }
  }
  for (const slice of node.slices) finish(slice, defs);
  if (node.slices.length > 0 || (node.slicing && node.slicing.rules !== 'open')) interesting = true;
  node.interesting = interesting || node.active.length > 0;
  return node.interesting;
}

function baseElement(el: ElementDefinition, defs: R4Definitions): ElementNode | undefined {
  const path = el.base?.path;
  if (!path) return undefined;
  const dot = path.indexOf('.');
  if (dot < 0) return undefined;
  return defs.schema(path.slice(0, dot))?.nodes.get(path);
}

function compareWithBase(node: PNode, base: ElementNode): void {
  const el = node.el;
  const baseTypes = base.types.map((t) => t.code);
  // Only a choice or a Resource-typed element can hold a value of another type than the profile's.
  node.restrictTypes =
    (node.choice || baseTypes.includes('Resource')) &&
    node.types.length > 0 &&
    (node.types.length !== baseTypes.length || node.types.some((t) => !baseTypes.includes(t)));

  const vs = el.binding?.strength === 'required' && el.binding.valueSet ? stripVersion(el.binding.valueSet) : undefined;
  if (vs !== undefined && vs !== base.binding) node.binding = vs;

  const profiles = (el.type ?? []).flatMap((t) => t.profile ?? []);
  const baseProfiles = base.types.flatMap((t) => t.profiles ?? []);
  if (profiles.length > 0 && !sameSet(profiles, baseProfiles)) node.typeProfiles = profiles;

  const targets = (el.type ?? []).flatMap((t) => (t.code === 'Reference' ? (t.targetProfile ?? []) : []));
  const baseTargets = base.types.flatMap((t) => (t.targets ? [...t.targets] : t.code === 'Reference' ? ['Resource'] : []));
  const targetNames = targets.map((t) => coreTypeName(t) ?? t);
  if (targets.length > 0 && !sameSet(targetNames, baseTargets)) node.targetProfiles = targets;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
