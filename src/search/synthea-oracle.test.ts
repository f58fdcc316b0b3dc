import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Resource } from 'fhir/r4.js';
import { compileExpression, type CompiledExpression, type TypedValue } from './expression.js';
import { SearchIndexer } from './indexer.js';
import { SearchParameterRegistry, type CompiledSearchParam } from './registry.js';
import { SearchService } from './search-service.js';
import { loadSyntheaResolved } from '../../test/support/shared-data.js';
import { insertResources, openTestDb, type TestDb } from '../../test/support/search-db.js';
import { normalizeString, parseDateRange } from './values.js';

/**
 * Generated queries over Synthea data, compared with a brute-force evaluation that uses
 * fhirpath (not our accessors, not our index) over every stored resource and a matcher
 * written here from the spec's rules.
 */
const BASE = 'http://localhost:8080/fhir';
const registry = new SearchParameterRegistry();
const indexer = new SearchIndexer(registry);
const TYPES = ['Patient', 'Observation', 'Condition', 'Encounter', 'MedicationRequest', 'Procedure', 'Immunization', 'DiagnosticReport', 'Claim', 'Organization', 'Practitioner', 'Location', 'CarePlan', 'DocumentReference'];
const QUERIES = 400;

let t: TestDb;
let service: SearchService;
let resources: Resource[];
const byType = new Map<string, Resource[]>();
const byRef = new Map<string, Resource>();

function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(20240601);
const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

const oracleCache = new Map<string, CompiledExpression>();
function oracleValues(p: CompiledSearchParam, r: Resource): TypedValue[] {
  let c = oracleCache.get(p.expression!);
  if (!c) oracleCache.set(p.expression!, (c = compileExpression(p.expression!, true)));
  return c.evaluate(r);
}

const esc = (s: string) => s.replace(/[\\,|$]/g, (c) => `\\${c}`);

// ------------------------------------------------------------ independent matchers
type Matcher = (n: TypedValue) => boolean;

interface Generated {
  param: string;
  value: string;
  /** match on one value node; for `:not` / `:missing` see `mode` */
  match: Matcher;
  mode?: 'not' | 'missing-true' | 'missing-false';
  /** for chains: how to get from a resource to the target resources */
  via?: { param: CompiledSearchParam };
}

function codings(n: TypedValue): Array<{ system?: string; code?: string }> {
  const o = n.v as Record<string, unknown>;
  switch (n.t) {
    case 'Coding':
      return [o as { system?: string; code?: string }];
    case 'CodeableConcept':
      return ((o.coding as Array<{ system?: string; code?: string }>) ?? []);
    case 'Identifier':
      return [{ system: o.system as string | undefined, code: o.value as string | undefined }];
    case 'ContactPoint':
      return [{ code: o.value as string | undefined }];
    default:
      return typeof n.v === 'string' || typeof n.v === 'boolean' || typeof n.v === 'number' ? [{ code: String(n.v) }] : [];
  }
}

function strings(n: TypedValue): string[] {
  if (typeof n.v === 'string') return [n.v];
  const o = n.v as Record<string, unknown>;
  const keys = n.t === 'HumanName' ? ['family', 'given', 'prefix', 'suffix', 'text'] : n.t === 'Address' ? ['line', 'city', 'district', 'state', 'postalCode', 'country', 'text'] : [];
  return keys.flatMap((k) => (Array.isArray(o[k]) ? (o[k] as string[]) : typeof o[k] === 'string' ? [o[k] as string] : []));
}

function ranges(n: TypedValue): Array<[number, number]> {
  const r = (s: unknown, side: 'low' | 'high'): number | undefined => {
    if (typeof s !== 'string') return undefined;
    const x = parseDateRange(s);
    if (!x) return undefined;
    const v = side === 'low' ? x.low : x.high;
    return v === 'infinity' ? Infinity : Date.parse(v);
  };
  if (typeof n.v === 'string') {
    const lo = r(n.v, 'low');
    return lo === undefined ? [] : [[lo, r(n.v, 'high')!]];
  }
  const o = n.v as Record<string, unknown>;
  if (n.t === 'Period') {
    const lo = r(o.start, 'low') ?? -Infinity;
    const hi = r(o.end, 'high') ?? Infinity;
    return o.start || o.end ? [[lo, hi]] : [];
  }
  return [];
}

function dateMatcher(prefix: string, sl: number, sh: number): Matcher {
  return (n) =>
    ranges(n).some(([lo, hi]) => {
      const contained = lo >= sl && hi <= sh;
      switch (prefix) {
        case 'eq': return contained;
        case 'ne': return !contained;
        case 'gt': return hi > sh;
        case 'lt': return lo < sl;
        case 'ge': return hi > sh || contained;
        case 'le': return lo < sl || contained;
        case 'sa': return lo >= sh;
        case 'eb': return hi <= sl;
        default: return false;
      }
    });
}

// ------------------------------------------------------------ generators
function generate(type: string, p: CompiledSearchParam, r: Resource, n: TypedValue): Generated | undefined {
  const roll = random();
  if (roll < 0.05) return { param: `${p.code}:missing`, value: 'true', match: () => true, mode: 'missing-true' };
  if (roll < 0.08) return { param: `${p.code}:missing`, value: 'false', match: () => true, mode: 'missing-false' };
  switch (p.type) {
    case 'token': {
      const cs = codings(n).filter((c) => c.code && c.code.length < 200);
      if (!cs.length) return undefined;
      const c = pick(cs);
      const form = random();
      const not = random() < 0.1;
      let value: string;
      let match: Matcher;
      if (c.system && form < 0.5) {
        value = `${esc(c.system)}|${esc(c.code!)}`;
        match = (x) => codings(x).some((d) => d.system === c.system && d.code === c.code);
      } else if (c.system && form < 0.6) {
        value = `${esc(c.system)}|`;
        match = (x) => codings(x).some((d) => d.system === c.system);
      } else {
        value = esc(c.code!);
        match = (x) => codings(x).some((d) => d.code === c.code);
      }
      return { param: not ? `${p.code}:not` : p.code, value, match, mode: not ? 'not' : undefined };
    }
    case 'string': {
      const ss = strings(n).filter((s) => s.length > 0 && s.length < 200);
      if (!ss.length) return undefined;
      const s = pick(ss);
      const form = random();
      if (form < 0.2) return { param: `${p.code}:exact`, value: esc(s), match: (x) => strings(x).includes(s) };
      if (form < 0.35) {
        const start = Math.floor(random() * s.length);
        const sub = s.slice(start, start + 1 + Math.floor(random() * 4));
        return { param: `${p.code}:contains`, value: esc(sub.toUpperCase()), match: (x) => strings(x).some((y) => normalizeString(y).includes(normalizeString(sub))) };
      }
      const prefix = s.slice(0, 1 + Math.floor(random() * Math.min(6, s.length)));
      const q = random() < 0.5 ? prefix.toUpperCase() : prefix;
      return { param: p.code, value: esc(q), match: (x) => strings(x).some((y) => normalizeString(y).startsWith(normalizeString(q))) };
    }
    case 'date': {
      const srcs: string[] = typeof n.v === 'string' ? [n.v] : n.t === 'Period' ? [(n.v as { start?: string }).start, (n.v as { end?: string }).end].filter((x): x is string => !!x) : [];
      if (!srcs.length) return undefined;
      const s = pick(srcs);
      const cut = pick([4, 7, 10, s.length]);
      const base = s.length > 10 && cut === s.length ? s : s.slice(0, Math.min(cut, 10));
      const prefix = pick(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb']);
      const rg = parseDateRange(base);
      if (!rg) return undefined;
      return { param: p.code, value: `${prefix}${base}`, match: dateMatcher(prefix, Date.parse(rg.low), Date.parse(rg.high)) };
    }
    case 'reference': {
      const ref = (n.v as { reference?: string }).reference;
      if (n.t !== 'Reference' || !ref || !/^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]+$/.test(ref)) return undefined;
      const [rt, id] = ref.split('/') as [string, string];
      const match: Matcher = (x) => (x.v as { reference?: string }).reference === ref;
      if (random() < 0.3) return { param: `${p.code}:${rt}`, value: id, match };
      // chain into a Patient/Organization/Practitioner name sometimes
      const target = byRef.get(ref);
      if (target && random() < 0.3 && (rt === 'Patient' || rt === 'Organization' || rt === 'Practitioner')) {
        const nameParam = registry.get(rt, 'name')!;
        const names = oracleValues(nameParam, target).flatMap(strings);
        if (names.length) {
          const q = pick(names).slice(0, 3);
          return {
            param: `${p.code}:${rt}.name`,
            value: esc(q),
            via: { param: p },
            match: (x) => {
              const tr = (x.v as { reference?: string }).reference;
              const tgt = tr && tr.startsWith(`${rt}/`) ? byRef.get(tr) : undefined;
              return !!tgt && oracleValues(registry.get(rt, 'name')!, tgt).flatMap(strings).some((y) => normalizeString(y).startsWith(normalizeString(q)));
            },
          };
        }
      }
      return { param: p.code, value: ref, match };
    }
    case 'quantity': {
      const q = n.v as { value?: number; system?: string; code?: string };
      if (n.t !== 'Quantity' || typeof q.value !== 'number') return undefined;
      const prefix = pick(['eq', 'gt', 'lt', 'ge', 'le']);
      const v = q.value;
      const str = String(v);
      const decimals = str.includes('.') ? str.split('.')[1]!.length : 0;
      const half = 0.5 * 10 ** -decimals;
      const cmp = (x: TypedValue) => {
        const o = x.v as { value?: number; system?: string; code?: string };
        if (x.t !== 'Quantity' || typeof o.value !== 'number') return false;
        const w = o.value;
        switch (prefix) {
          case 'eq': return w >= v - half && w < v + half;
          case 'gt': return w > v;
          case 'lt': return w < v;
          case 'ge': return w >= v;
          default: return w <= v;
        }
      };
      if (q.system && q.code && random() < 0.6) {
        return { param: p.code, value: `${prefix}${str}|${esc(q.system)}|${esc(q.code)}`, match: (x) => cmp(x) && (x.v as { system?: string }).system === q.system && (x.v as { code?: string }).code === q.code };
      }
      return { param: p.code, value: `${prefix}${str}`, match: cmp };
    }
    case 'uri':
      return typeof n.v === 'string' ? { param: p.code, value: esc(n.v), match: (x) => x.v === n.v } : undefined;
    default:
      return undefined;
  }
  void type;
}

function oracle(type: string, g: Generated, p: CompiledSearchParam): Set<string> {
  const out = new Set<string>();
  for (const r of byType.get(type) ?? []) {
    const values = oracleValues(p, r);
    let ok: boolean;
    if (g.mode === 'missing-true') ok = values.length === 0;
    else if (g.mode === 'missing-false') ok = values.length > 0;
    else if (g.mode === 'not') ok = !values.some(g.match);
    else ok = values.some(g.match);
    if (ok) out.add(r.id!);
  }
  return out;
}

beforeAll(async () => {
  t = await openTestDb();
  service = new SearchService({ db: t.db, registry });
  resources = loadSyntheaResolved(8);
  for (const r of resources) {
    const list = byType.get(r.resourceType) ?? [];
    list.push(r);
    byType.set(r.resourceType, list);
    byRef.set(`${r.resourceType}/${r.id}`, r);
  }
  await insertResources(t.db, indexer, resources);
});
afterAll(async () => t?.close());

describe('search vs brute force over Synthea', () => {
  it(`${QUERIES} generated queries (single, AND, OR, modifiers, prefixes, chains) agree with fhirpath`, async () => {
    const failures: string[] = [];
    let nonEmpty = 0;
    let done = 0;
    let attempts = 0;
    const started = performance.now();
    while (done < QUERIES && attempts < QUERIES * 20) {
      attempts++;
      const type = pick(TYPES);
      const list = byType.get(type);
      if (!list?.length) continue;
      const params = registry.forType(type).filter((p) => p.expression && ['token', 'string', 'date', 'reference', 'quantity', 'uri'].includes(p.type));
      const terms: Array<{ g: Generated; p: CompiledSearchParam }> = [];
      const termCount = random() < 0.25 ? 2 : 1;
      for (let i = 0; i < termCount * 5 && terms.length < termCount; i++) {
        const p = pick(params);
        const r = pick(list);
        const values = oracleValues(p, r);
        if (!values.length) continue;
        let g = generate(type, p, r, pick(values));
        if (!g) continue;
        // OR a second value of the same param sometimes
        if (!g.mode && random() < 0.15) {
          const r2 = pick(list);
          const v2 = oracleValues(p, r2);
          const g2 = v2.length ? generate(type, p, r2, pick(v2)) : undefined;
          if (g2 && g2.param === g.param && !g2.mode) {
            const a = g;
            g = { ...g, value: `${g.value},${g2.value}`, match: (x) => a.match(x) || g2.match(x) };
          }
        }
        terms.push({ g, p });
      }
      if (terms.length === 0) continue;
      let expected: Set<string> | undefined;
      for (const { g, p } of terms) {
        const s = oracle(type, g, p);
        expected = expected ? new Set([...expected].filter((x) => s.has(x))) : s;
      }
      const query: [string, string][] = [...terms.map(({ g }) => [g.param, g.value] as [string, string]), ['_count', '1000']];
      const bundle = await service.search({ resourceType: type, params: query, baseUrl: BASE });
      const got = new Set((bundle.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!));
      const want = expected!;
      const label = `${type}?${query.map(([k, v]) => `${k}=${v}`).join('&')}`;
      if (bundle.total !== want.size) failures.push(`${label}: total ${bundle.total} != ${want.size}`);
      else if (want.size <= 1000 && (got.size !== want.size || [...want].some((x) => !got.has(x)))) failures.push(`${label}: ids differ`);
      if (want.size > 0) nonEmpty++;
      done++;
    }
    const ms = performance.now() - started;
    console.log(`oracle: ${done} queries over ${resources.length} resources on ${t.kind}, ${nonEmpty} non-empty, ${(ms / done).toFixed(1)} ms/query avg (incl. count)`);
    expect(failures.slice(0, 15)).toEqual([]);
    expect(done).toBe(QUERIES);
    expect(nonEmpty).toBeGreaterThan(QUERIES / 2);
  });
});
