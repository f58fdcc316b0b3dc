import { describe, expect, it } from 'vitest';
import type { Resource } from 'fhir/r4.js';
import { compileExpression, type CompiledExpression } from './expression.js';
import { SearchParameterRegistry, splitUnion } from './registry.js';
import { loadFhirExamples, loadSynthea } from '../../test/support/shared-data.js';

/**
 * The compiled accessors must find exactly what fhirpath finds, for every parameter over every
 * example resource and a sample of Synthea entries (values compared as sets of type+JSON).
 */
const registry = new SearchParameterRegistry({ packs: ['uscore'] });
const fallbacks = new Map<string, CompiledExpression>();

function key(nodes: { v: unknown; t: string }[]): string[] {
  return [...new Set(nodes.map((n) => `${n.t.includes(".") ? "BackboneElement" : n.t}:${JSON.stringify(n.v)}`))].sort();
}

function compare(resources: Resource[]): { checked: number; fast: number; slow: Set<string>; mismatches: string[] } {
  let checked = 0;
  let fast = 0;
  const slow = new Set<string>();
  const mismatches: string[] = [];
  for (const r of resources) {
    for (const p of registry.forType(r.resourceType)) {
      if (!p.expression || !p.accessor) continue;
      if (!p.accessor.fast) {
        slow.add(p.expression);
        continue;
      }
      // The oracle evaluates each union term with fhirpath and unites the results as a set:
      // fhirpath.js's own union dedupes by FHIRPath equality (1e-245 g = 1e-22 g) and fails on
      // Quantities with a comparator, neither of which matters for indexing.
      const terms = splitUnion(p.expression).map((t) => {
        let c = fallbacks.get(t);
        if (!c) fallbacks.set(t, (c = compileExpression(t, true)));
        return c;
      });
      const got = key(p.accessor.evaluate(r));
      const want = key(terms.flatMap((t) => t.evaluate(r)));
      checked++;
      if (got.length) fast++;
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        mismatches.push(`${r.resourceType}/${r.id} ${p.code} [${p.expression}]\n got ${JSON.stringify(got).slice(0, 300)}\n want ${JSON.stringify(want).slice(0, 300)}`);
      }
    }
  }
  return { checked, fast, slow, mismatches };
}

describe('compiled search parameter accessors', () => {
  it('compile the official R4 expressions on the fast path (few fallbacks)', () => {
    const official = new Set<string>();
    const slow: string[] = [];
    for (const type of ['Patient', 'Observation', 'Condition', 'Encounter', 'MedicationRequest', 'Bundle', 'MolecularSequence', 'Group']) {
      for (const p of registry.forType(type)) {
        if (!p.accessor) continue;
        official.add(p.expression!);
        if (!p.accessor.fast) slow.push(p.expression!);
      }
    }
    // Only genuinely unusual expressions may use fhirpath (none of these types' now:
    // `Patient.deceased.exists() and Patient.deceased != false` has its fast path too).
    expect(slow).toEqual([]);
  });

  it('agree with fhirpath on every FHIR example resource', () => {
    const res = compare(loadFhirExamples());
    console.log(`examples: ${res.checked} (resource, param) pairs checked, ${res.fast} non-empty; fallback expressions: ${[...res.slow].join(' ;; ')}`);
    expect(res.mismatches.slice(0, 20)).toEqual([]);
    expect(res.fast).toBeGreaterThan(1000);
  });

  it('agree with fhirpath on a sample of Synthea bundle entries', () => {
    const all = loadSynthea(12);
    const sample = all.filter((_, i) => i % 3 === 0);
    const res = compare(sample);
    console.log(`synthea: ${sample.length} resources, ${res.checked} pairs checked, ${res.fast} non-empty`);
    expect(res.mismatches.slice(0, 20)).toEqual([]);
    expect(res.fast).toBeGreaterThan(1000);
  });
});
