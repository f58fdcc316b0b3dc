import { deepEqual, isObject, matchesPattern } from './json.js';
import type { PNode } from './profile-model.js';

/**
 * Slicing (https://hl7.org/fhir/R4/profiling.html#slicing): which slice each item of a sliced
 * element belongs to, decided by the discriminators. A discriminator is a restricted FHIRPath
 * (https://hl7.org/fhir/R4/profiling.html#discriminator): element names, `$this`,
 * `extension('url')`, `ofType(T)`; `resolve()` would need the referenced resource, so slicings
 * that use it are not evaluated.
 */

/** One value of a sliced element, as found in an instance. */
export interface Item {
  readonly value: unknown;
  /** Type given by a choice key (`valueQuantity` → Quantity); undefined otherwise. */
  readonly type?: string;
  readonly path: string;
}

type Step =
  | { kind: 'this' }
  | { kind: 'name'; name: string }
  | { kind: 'ext'; url: string }
  | { kind: 'ofType'; type: string }
  | { kind: 'unsupported' };

interface Typed {
  v: unknown;
  t?: string;
}

export interface SliceEnv {
  /** Type named by a choice-key suffix (`Quantity`, `DateTime` → dateTime). */
  typeOfSuffix(suffix: string): string | undefined;
  /** Whether a value set can be expanded locally. */
  canExpand(valueSet: string): boolean;
  inValueSet(valueSet: string, value: unknown, type: string): boolean;
  /** undefined when none of the profiles is known. */
  conforms(value: unknown, profiles: readonly string[]): boolean | undefined;
}

export type Matcher = (item: Item, base: PNode) => boolean;

/** Matchers per slice, or undefined when the slicing cannot be evaluated. */
export function compileSlicing(node: PNode, env: SliceEnv): Matcher[] | undefined {
  const slicing = node.slicing;
  if (!slicing) return undefined;
  const matchers: Matcher[] = [];
  for (const slice of node.slices) {
    const parts: Matcher[] = [];
    for (const d of slicing.discriminators) {
      const steps = parsePath(d.path);
      if (steps.some((s) => s.kind === 'unsupported')) return undefined;
      const m = discriminatorMatcher(d.type, steps, slice, env);
      if (!m) return undefined;
      parts.push(m);
    }
    matchers.push((item, base) => parts.every((m) => m(item, base)));
  }
  return matchers;
}

function discriminatorMatcher(type: string, steps: Step[], slice: PNode, env: SliceEnv): Matcher | undefined {
  const at = (item: Item, base: PNode): Typed[] => evaluate(start(item, base), steps, env);
  switch (type) {
    case 'value':
    case 'pattern': {
      const expected = expectations(slice, steps, 0);
      if (expected) {
        return (item, base) => {
          const actual = at(item, base);
          return expected.every((e) =>
            actual.some((a) => (e.fixed ? deepEqual(a.v, e.value) : matchesPattern(a.v, e.value))),
          );
        };
      }
      // R4 also allows a required binding on the discriminated element to tell slices apart.
      const end = endNode(slice, steps, 0);
      const vs = end?.el.binding?.strength === 'required' ? end.el.binding.valueSet : undefined;
      if (!end || !vs || !env.canExpand(vs)) return undefined;
      return (item, base) => at(item, base).some((a) => env.inValueSet(vs, a.v, a.t ?? end.types[0] ?? ''));
    }
    case 'exists': {
      const end = endNode(slice, steps, 0);
      if (!end) return undefined;
      if (end.min > 0) return (item, base) => at(item, base).length > 0;
      if (end.max === 0) return (item, base) => at(item, base).length === 0;
      return () => true;
    }
    case 'type': {
      const end = endNode(slice, steps, 0);
      if (!end || end.types.length === 0) return undefined;
      return (item, base) => at(item, base).some((a) => a.t !== undefined && end.types.includes(a.t));
    }
    case 'profile': {
      const end = endNode(slice, steps, 0);
      const profiles = (end?.el.type ?? []).flatMap((t) => t.profile ?? []);
      if (profiles.length === 0) return undefined;
      return (item, base) => at(item, base).some((a) => env.conforms(a.v, profiles) ?? false);
    }
    default:
      return undefined;
  }
}

/** Splits a discriminator path on dots outside parentheses and quotes. */
function parsePath(path: string): Step[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = '';
  for (const ch of path) {
    if (ch === "'") quoted = !quoted;
    else if (!quoted && ch === '(') depth++;
    else if (!quoted && ch === ')') depth--;
    if (ch === '.' && depth === 0 && !quoted) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts.map((p): Step => {
    if (p === '$this') return { kind: 'this' };
    if (/^[A-Za-z][A-Za-z0-9]*$/.test(p)) return { kind: 'name', name: p };
    const ext = /^extension\('([^']+)'\)$/.exec(p);
    if (ext) return { kind: 'ext', url: ext[1] };
    const ofType = /^ofType\(([A-Za-z]+)\)$/.exec(p);
    if (ofType) return { kind: 'ofType', type: ofType[1] };
    return { kind: 'unsupported' };
  });
}

function start(item: Item, base: PNode): Typed[] {
  const v = item.value;
  if (v === undefined || v === null) return [];
  const t = item.type ?? (isObject(v) && typeof v.resourceType === 'string' ? v.resourceType : base.types.length === 1 ? base.types[0] : undefined);
  return [{ v, t }];
}

function push(out: Typed[], v: unknown, t?: string): void {
  if (v === undefined || v === null) return;
  if (Array.isArray(v)) {
    for (const x of v) push(out, x, t);
    return;
  }
  out.push({ v, t: t ?? (isObject(v) && typeof v.resourceType === 'string' ? v.resourceType : undefined) });
}

function evaluate(input: Typed[], steps: readonly Step[], env: SliceEnv, from = 0): Typed[] {
  let cur = input;
  for (let i = from; i < steps.length; i++) {
    const step = steps[i];
    if (step.kind === 'this') continue;
    if (step.kind === 'ofType') {
      cur = cur.filter((c) => c.t === step.type);
      continue;
    }
    const next: Typed[] = [];
    for (const c of cur) {
      if (!isObject(c.v)) continue;
      const o = c.v;
      if (step.kind === 'ext') {
        if (Array.isArray(o.extension)) for (const e of o.extension) if (isObject(e) && e.url === step.url) push(next, e);
      } else if (step.kind === 'name') {
        if (Object.hasOwn(o, step.name)) {
          push(next, o[step.name]);
        } else {
          // A choice element: `value` matches `valueQuantity`.
          for (const key of Object.keys(o)) {
            if (key.length <= step.name.length || !key.startsWith(step.name)) continue;
            const t = env.typeOfSuffix(key.slice(step.name.length));
            if (t) push(next, o[key], t);
          }
        }
      }
    }
    cur = next;
  }
  return cur;
}

interface Expectation {
  fixed: boolean;
  value: unknown;
}

const NO_ENV: SliceEnv = {
  typeOfSuffix: () => undefined,
  canExpand: () => false,
  inValueSet: () => false,
  conforms: () => undefined,
};

/**
 * The values a slice requires at a discriminator path: a fixed/pattern value on the element at the
 * path, or on an ancestor (then read inside it), or on the required slices of a sliced element on
 * the way (bp's `code.coding.code` is fixed in the `code.coding:SBPCode` slice).
 */
function expectations(node: PNode, steps: readonly Step[], i: number): Expectation[] | undefined {
  if (node.fixed !== undefined || node.pattern !== undefined) {
    const fixed = node.fixed !== undefined;
    const values = evaluate([{ v: fixed ? node.fixed : node.pattern }], steps, NO_ENV, i);
    return values.map((x) => ({ fixed, value: x.v }));
  }
  if (i === steps.length) return undefined;
  const step = steps[i];
  if (step.kind === 'this' || step.kind === 'ofType') return expectations(node, steps, i + 1);
  const child = childFor(node, step);
  const direct = child && expectations(child, steps, i + 1);
  if (direct) return direct;
  if (step.kind === 'name' && step.name === 'url' && i === steps.length - 1) {
    // An extension slice typed with an extension profile is identified by that profile's URL.
    const profiles = (node.el.type ?? []).flatMap((t) => (t.code === 'Extension' ? (t.profile ?? []) : []));
    if (profiles.length === 1) return [{ fixed: true, value: profiles[0] }];
  }
  if (!child) return undefined;
  const out: Expectation[] = [];
  for (const s of child.slices) {
    if (s.min === 0) continue;
    const e = expectations(s, steps, i + 1);
    if (e) out.push(...e);
  }
  return out.length ? out : undefined;
}

function endNode(node: PNode, steps: readonly Step[], i: number): PNode | undefined {
  if (i === steps.length) return node;
  const step = steps[i];
  if (step.kind === 'this' || step.kind === 'ofType') return endNode(node, steps, i + 1);
  const child = childFor(node, step);
  return child && endNode(child, steps, i + 1);
}

function childFor(node: PNode, step: Step): PNode | undefined {
  if (step.kind === 'name') return node.children.find((c) => c.name === step.name);
  if (step.kind === 'ext') {
    const ext = node.children.find((c) => c.name === 'extension');
    return ext?.slices.find(
      (s) =>
        s.children.find((c) => c.name === 'url')?.fixed === step.url ||
        (s.el.type ?? []).some((t) => t.profile?.includes(step.url)),
    );
  }
  return undefined;
}
