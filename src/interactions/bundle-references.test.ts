import type { Observation, Resource } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { rewriteAndCollect } from './bundle-references.js';

const PATIENT = 'urn:uuid:11111111-0000-4000-8000-000000000001';

function observation(): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '1-1' }] },
    subject: { reference: PATIENT },
    performer: [{ reference: 'Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123' }, { reference: '#p1' }],
    contained: [{ resourceType: 'Provenance', target: [{ reference: PATIENT }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { reference: 'Organization?identifier=x|1' } }] } as Resource],
    extension: [{ url: 'http://example.org/about', valueUri: PATIENT }],
  } as Observation;
}

describe('rewriteAndCollect', () => {
  it('rewrites fullUrls everywhere and collects conditional references, without changing its input', () => {
    const input = observation();
    const before = JSON.stringify(input);
    const { resource, conditional } = rewriteAndCollect(input, new Map([[PATIENT, 'Patient/p']]));
    expect(JSON.stringify(input)).toBe(before);
    const out = resource as Observation;
    expect(out.subject?.reference).toBe('Patient/p');
    expect((out.contained?.[0] as unknown as { target: Array<{ reference: string }> }).target[0].reference).toBe('Patient/p');
    expect(out.extension?.[0].valueUri).toBe('Patient/p');
    expect(out.performer?.[1].reference).toBe('#p1');
    expect([...conditional].sort()).toEqual(['Organization?identifier=x|1', 'Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123']);
    // copy-on-write: untouched subtrees are shared, not copied
    expect(out.code).toBe(input.code);
    expect(out.performer).toBe(input.performer);
  });

  it('returns the input itself when nothing is rewritten', () => {
    const input = observation();
    const { resource, conditional } = rewriteAndCollect(input, new Map());
    expect(resource).toBe(input);
    expect(conditional.size).toBe(2);
  });

  it('a value only counts as conditional under a `reference` key', () => {
    const input = { resourceType: 'Basic', code: { text: 'Patient?name=x' } } as Resource;
    expect(rewriteAndCollect(input, new Map()).conditional.size).toBe(0);
  });
});
