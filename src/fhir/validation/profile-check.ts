import type { ElementDefinitionConstraint } from 'fhir/r4.js';
import { bindingProblem } from './binding.js';
import type { R4Definitions } from './definitions.js';
import { error, hasErrors, type Issue } from './issues.js';
import { deepEqual, isObject, matchesPattern, type JsonObject } from './json.js';
import type { PNode, ProfileModel } from './profile-model.js';
import { capitalize, coreTypeName } from './schema.js';
import { compileSlicing, type Item, type Matcher, type SliceEnv } from './slicing.js';
import { referencedType } from './structure.js';
import type { Terminology } from './terminology.js';

/** Where compiled profiles come from (the validator's registry, which can change at run time). */
export interface ProfileSource {
  model(url: string): ProfileModel | undefined;
  /** Evaluates invariants a profile adds on an element (src/fhir/validation/invariants.ts#checkProfile). */
  invariants(constraints: readonly ElementDefinitionConstraint[], base: string, value: unknown, at: string, resource: unknown, issues: Issue[], profile: string): void;
}

interface Ctx {
  readonly issues: Issue[];
  readonly profile: string;
  /** The resource checked (`%resource` of the profile's invariants); the value itself for a datatype profile. */
  readonly resource: unknown;
}

const NO_ITEMS: readonly Item[] = [];

/**
 * Checks instances against compiled profiles: what a profile adds to the base definition
 * (tighter cardinality, fixed/pattern values, type and target restrictions, bindings, type
 * profiles) and slicing. Instances are assumed to have been checked against the base definition;
 * shapes that are wrong there are skipped here rather than reported twice.
 */
export class ProfileChecker {
  private readonly slicings = new WeakMap<PNode, Matcher[] | null>();
  private readonly suffixes = new Map<string, string>();
  private readonly env: SliceEnv;

  constructor(
    private readonly defs: R4Definitions,
    private readonly terms: Terminology,
    private readonly source: ProfileSource,
  ) {
    for (const t of defs.dataTypes) this.suffixes.set(capitalize(t), t);
    this.env = {
      typeOfSuffix: (s) => this.suffixes.get(s),
      canExpand: (vs) => terms.expand(vs) !== undefined,
      inValueSet: (vs, v, type) => bindingProblem(terms, vs, v, type) === undefined,
      conforms: (v, profiles) => this.conforms(v, profiles),
    };
  }

  checkResource(res: JsonObject, model: ProfileModel, path: string, issues: Issue[]): void {
    this.checkItem({ value: res, path }, model.root, { issues, profile: model.url, resource: res });
  }

  /** The value must conform to one of the profiles; profiles we do not know are not checked. */
  checkTypeProfiles(value: unknown, profiles: readonly string[], path: string, issues: Issue[]): void {
    const models = profiles.flatMap((p) => this.source.model(p) ?? []);
    if (models.length === 1) {
      this.checkItem({ value, path }, models[0].root, { issues, profile: models[0].url, resource: value });
      return;
    }
    let first: Issue[] | undefined;
    for (const m of models) {
      const scratch: Issue[] = [];
      this.checkItem({ value, path }, m.root, { issues: scratch, profile: m.url, resource: value });
      if (!hasErrors(scratch)) return;
      first ??= scratch;
    }
    if (first) issues.push(...first);
  }

  private conforms(value: unknown, profiles: readonly string[]): boolean | undefined {
    const models = profiles.flatMap((p) => this.source.model(p) ?? []);
    if (models.length === 0) return undefined;
    return models.some((m) => {
      const scratch: Issue[] = [];
      this.checkItem({ value, path: '' }, m.root, { issues: scratch, profile: m.url, resource: value });
      return !hasErrors(scratch);
    });
  }

  private checkItem(item: Item, node: PNode, ctx: Ctx): void {
    const v = item.value;
    if (v === undefined || v === null) return; // a primitive carrying only extensions
    if (node.restrictTypes) {
      const t = item.type ?? (isObject(v) && typeof v.resourceType === 'string' ? v.resourceType : undefined);
      if (t !== undefined && !node.types.includes(t) && !node.types.includes('Resource')) {
        this.fail(ctx, 'structure', item.path, `type ${t} is not allowed here (allowed: ${node.types.join(', ')})`);
        return;
      }
    }
    if (node.fixed !== undefined && !deepEqual(v, node.fixed)) {
      this.fail(ctx, 'value', item.path, `value must be exactly ${JSON.stringify(node.fixed)}`);
    }
    if (node.pattern !== undefined && !matchesPattern(v, node.pattern)) {
      this.fail(ctx, 'value', item.path, `value must match the pattern ${JSON.stringify(node.pattern)}`);
    }
    if (node.binding) {
      const problem = bindingProblem(this.terms, node.binding, v, item.type ?? node.types[0] ?? '');
      // Same wording as the base check, so a problem found by both is reported once.
      if (problem) error(ctx.issues, 'code-invalid', item.path, problem);
    }
    if (node.targetProfiles && isObject(v) && typeof v.reference === 'string') {
      this.checkTarget(v.reference, node.targetProfiles, item.path, ctx);
    }
    if (node.typeProfiles) this.checkTypeProfiles(v, node.typeProfiles, item.path, ctx.issues);
    if (node.invariants) {
      // Typed as the base element (Observation.component); a choice by the value's type
      // (Observation.effective[x] → Observation.effectiveDateTime).
      const element = node.el.base?.path ?? node.el.path;
      const base = node.choice && item.type ? `${element.replace(/\[x\]$/, '')}${capitalize(item.type)}` : element;
      this.source.invariants(node.invariants, base, v, item.path, ctx.resource, ctx.issues, ctx.profile);
    }
    if (node.active.length > 0 && isObject(v)) this.checkChildren(v, node, item.path, ctx);
  }

  private checkChildren(obj: JsonObject, node: PNode, path: string, ctx: Ctx): void {
    const lists = new Map<PNode, Item[]>();
    for (const key of Object.keys(obj)) {
      const ext = key.charCodeAt(0) === 95; /* _ */
      const name = ext ? key.slice(1) : key;
      const child = node.byKey.get(name);
      if (!child?.interesting) continue;
      if (ext && obj[name] !== undefined) continue; // counted with the primitive value
      const type = child.choice ? this.suffixes.get(name.slice(child.name.length)) : undefined;
      let list = lists.get(child);
      if (!list) lists.set(child, (list = []));
      const v = obj[key];
      const p = `${path}.${name}`;
      if (Array.isArray(v)) v.forEach((x, i) => list.push({ value: ext ? undefined : x, type, path: `${p}[${i}]` }));
      else list.push({ value: ext ? undefined : v, type, path: p });
    }
    for (const child of node.active) {
      const items = lists.get(child) ?? NO_ITEMS;
      const p = `${path}.${child.name}${child.choice ? '[x]' : ''}`;
      if (child.checkMin && items.length < child.min) {
        this.fail(ctx, 'required', p, `minimum cardinality is ${child.min}, found ${items.length}`);
      }
      if (child.checkMax && items.length > child.max) {
        this.fail(ctx, 'structure', p, `maximum cardinality is ${child.max}, found ${items.length}`);
      }
      for (const item of items) this.checkItem(item, child, ctx);
      if (child.slicing && (child.slices.length > 0 || child.slicing.rules !== 'open')) {
        this.checkSlices(items, child, p, ctx);
      }
    }
  }

  private checkSlices(items: readonly Item[], node: PNode, path: string, ctx: Ctx): void {
    let matchers = this.slicings.get(node);
    if (matchers === undefined) {
      try {
        matchers = compileSlicing(node, this.env) ?? null;
      } catch {
        matchers = null; // a malformed slicing definition: treat like one we cannot evaluate
      }
      this.slicings.set(node, matchers);
    }
    if (!matchers) return; // discriminator we cannot evaluate (e.g. resolve())
    const { rules, ordered } = node.slicing ?? { rules: 'open', ordered: false };
    const counts = node.slices.map(() => 0);
    let last = -1;
    let unmatchedSeen = false;
    for (const item of items) {
      if (item.value === undefined || item.value === null) continue;
      const idx = matchers.findIndex((m) => m(item, node));
      if (idx < 0) {
        if (rules === 'closed') {
          const names = node.slices.map((s) => s.sliceName).join(', ');
          this.fail(ctx, 'structure', item.path, `does not match any slice of the closed slicing (slices: ${names || 'none'})`);
        }
        unmatchedSeen = true;
        continue;
      }
      const slice = node.slices[idx];
      if (rules === 'openAtEnd' && unmatchedSeen) {
        this.fail(ctx, 'structure', item.path, `item of slice '${slice.sliceName}' follows items outside the slices (openAtEnd)`);
      }
      if (ordered && idx < last) {
        this.fail(ctx, 'structure', item.path, `item of slice '${slice.sliceName}' is out of order (ordered slicing)`);
      }
      last = Math.max(last, idx);
      counts[idx]++;
      this.checkItem(item, slice, ctx);
    }
    node.slices.forEach((s, j) => {
      if (counts[j] < s.min) {
        this.fail(ctx, 'required', path, `slice '${s.sliceName}' requires at least ${s.min} item(s), found ${counts[j]}`);
      }
      if (counts[j] > s.max) {
        this.fail(ctx, 'structure', path, `slice '${s.sliceName}' allows at most ${s.max} item(s), found ${counts[j]}`);
      }
    });
  }

  private checkTarget(ref: string, targets: readonly string[], path: string, ctx: Ctx): void {
    const t = referencedType(ref);
    if (t === undefined || !this.defs.isResourceType(t)) return;
    const allowed: string[] = [];
    for (const url of targets) {
      const core = coreTypeName(url);
      const name = core !== undefined && this.defs.isResourceType(core) ? core : this.source.model(url)?.type;
      if (name === undefined || name === 'Resource') return; // cannot tell: do not judge
      allowed.push(name);
    }
    if (!allowed.includes(t)) {
      this.fail(ctx, 'structure', `${path}.reference`, `reference to ${t} is not allowed (allowed: ${allowed.join(', ')})`);
    }
  }

  private fail(ctx: Ctx, code: Issue['code'], path: string, msg: string): void {
    error(ctx.issues, code, path, `${msg} (profile ${ctx.profile})`);
  }
}
