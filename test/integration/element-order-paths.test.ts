import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inDefinitionOrder } from '../../src/http/element-order.js';
import { reorderResourceText } from '../../src/http/element-order-text.js';

/**
 * Reads reorder the stored text (element-order-text.ts), Bundles reorder parsed objects
 * (element-order.ts): both must give the same bytes, and lose nothing, for anything stored.
 * PostgreSQL's jsonb::text is imitated: keys by length then bytes, `", "` and `": "`.
 */
function jsonbText(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(', ')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort((a, b) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
    return `{${keys.map((k) => `${JSON.stringify(k)}: ${jsonbText((value as Record<string, unknown>)[k])}`).join(', ')}}`;
  }
  return JSON.stringify(value);
}

const key = fc.oneof(
  fc.constantFrom('id', 'meta', 'text', 'extension', 'url', 'valueString', 'valueCodeableConcept', 'coding', 'system', 'code', 'display', 'status', 'name', 'given', '_given', 'family', 'contained', 'resourceType', 'entry', 'resource', 'fullUrl', 'subject', 'reference', 'component'),
  // Not array-index keys: JavaScript objects enumerate those first whatever the order (FHIR names start with a letter or _).
  fc.string({ maxLength: 6 }).filter((k) => !/^(0|[1-9]\d*)$/.test(k)),
);
const leaf = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('a "quoted" \\ value', '\\', '"', 'ünïcødé ✓', '\n\t'), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('tree'), { maxLength: 4 }), fc.dictionary(key, tie('tree'), { maxKeys: 6 })),
}));
const resource = fc.tuple(fc.constantFrom('Patient', 'Observation', 'Bundle', 'Parameters', 'Nope'), fc.dictionary(key, tree, { maxKeys: 8 })).map(([type, body]) => ({ ...body, resourceType: type }));

describe('element order: text path and object path', () => {
  it('agree byte for byte and keep every value (generated resources)', () => {
    fc.assert(
      fc.property(resource, (r) => {
        const stored = jsonbText(r);
        const viaObjects = JSON.stringify(inDefinitionOrder(JSON.parse(stored)));
        expect(reorderResourceText(stored, r.resourceType)).toBe(viaObjects);
        expect(reorderResourceText(stored)).toBe(viaObjects);
        expect(JSON.parse(viaObjects)).toEqual(JSON.parse(stored));
        expect(Object.keys(JSON.parse(viaObjects))[0]).toBe('resourceType');
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses text that is not JSON (the caller then parses, and JSON.parse reports it)', () => {
    for (const bad of ['{"a": 1', '{"a" 1}', '{"a": "x}', '[1, 2', '{"a": 1} x', '']) {
      expect(() => reorderResourceText(bad, 'Patient'), bad).toThrow();
    }
  });
});
