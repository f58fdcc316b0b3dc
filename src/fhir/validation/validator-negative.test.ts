import { beforeAll, describe, expect, it } from 'vitest';
import { ResourceValidator } from './index.js';

const obs = { resourceType: 'Observation', status: 'final', code: { text: 'weight' } };
const patient = { resourceType: 'Patient' };

interface Case {
  name: string;
  resource: unknown;
  severity: 'error' | 'warning';
  code: string;
  expression: string;
}

/** One wrong thing per case, with where and how it must be reported. */
const cases: Case[] = [
  { name: 'unknown element', resource: { ...patient, foo: 1 }, severity: 'error', code: 'structure', expression: 'Patient.foo' },
  {
    name: 'unknown element inside a backbone element',
    resource: { ...patient, contact: [{ gender: 'male', nickname: 'x' }] },
    severity: 'error',
    code: 'structure',
    expression: 'Patient.contact[0].nickname',
  },
  {
    name: 'unknown element inside a datatype',
    resource: { ...patient, name: [{ family: 'Doe', surname: 'x' }] },
    severity: 'error',
    code: 'structure',
    expression: 'Patient.name[0].surname',
  },
  { name: 'string for boolean', resource: { ...patient, active: 'true' }, severity: 'error', code: 'value', expression: 'Patient.active' },
  { name: 'array for max=1', resource: { ...patient, birthDate: ['2000-01-01'] }, severity: 'error', code: 'structure', expression: 'Patient.birthDate' },
  { name: 'object for array', resource: { ...patient, name: { family: 'Doe' } }, severity: 'error', code: 'structure', expression: 'Patient.name' },
  { name: 'empty array', resource: { ...patient, name: [] }, severity: 'error', code: 'structure', expression: 'Patient.name' },
  { name: 'empty object', resource: { ...patient, name: [{}] }, severity: 'error', code: 'structure', expression: 'Patient.name[0]' },
  { name: 'bad month', resource: { ...patient, birthDate: '2020-13-01' }, severity: 'error', code: 'value', expression: 'Patient.birthDate' },
  { name: 'nonexistent day', resource: { ...patient, birthDate: '2021-02-29' }, severity: 'error', code: 'value', expression: 'Patient.birthDate' },
  {
    name: 'dateTime with hours but no timezone',
    resource: { ...obs, effectiveDateTime: '2020-01-01T10:00:00' },
    severity: 'error',
    code: 'value',
    expression: 'Observation.effectiveDateTime',
  },
  { name: 'instant without time', resource: { ...obs, issued: '2020-01-01' }, severity: 'error', code: 'value', expression: 'Observation.issued' },
  { name: 'empty string', resource: { ...patient, name: [{ family: '' }] }, severity: 'error', code: 'value', expression: 'Patient.name[0].family' },
  { name: 'null value', resource: { ...patient, name: [{ family: null }] }, severity: 'error', code: 'structure', expression: 'Patient.name[0].family' },
  { name: 'null in array', resource: { ...patient, name: [{ given: ['a', null] }] }, severity: 'error', code: 'structure', expression: 'Patient.name[0].given[1]' },
  { name: 'decimal as string', resource: { ...obs, valueQuantity: { value: '1.5' } }, severity: 'error', code: 'value', expression: 'Observation.valueQuantity.value' },
  { name: 'integer out of range', resource: { ...obs, valueInteger: 2147483648 }, severity: 'error', code: 'value', expression: 'Observation.valueInteger' },
  { name: 'fractional integer', resource: { ...obs, valueInteger: 1.5 }, severity: 'error', code: 'value', expression: 'Observation.valueInteger' },
  { name: 'id too long', resource: { ...patient, id: 'x'.repeat(65) }, severity: 'error', code: 'value', expression: 'Patient.id' },
  { name: 'code with leading space', resource: { ...patient, gender: ' male' }, severity: 'error', code: 'value', expression: 'Patient.gender' },
  { name: 'uri with whitespace', resource: { ...patient, implicitRules: 'http://x y' }, severity: 'error', code: 'value', expression: 'Patient.implicitRules' },
  {
    name: 'bad base64Binary',
    resource: { ...patient, photo: [{ data: 'abc$' }] },
    severity: 'error',
    code: 'value',
    expression: 'Patient.photo[0].data',
  },
  { name: 'missing status', resource: { resourceType: 'Observation', code: { text: 'x' } }, severity: 'error', code: 'required', expression: 'Observation.status' },
  { name: 'missing code', resource: { resourceType: 'Observation', status: 'final' }, severity: 'error', code: 'required', expression: 'Observation.code' },
  {
    name: 'missing required choice',
    resource: { resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: 'Patient/1' } },
    severity: 'error',
    code: 'required',
    expression: 'MedicationRequest.medication[x]',
  },
  { name: 'code not in required value set', resource: { ...patient, gender: 'robot' }, severity: 'error', code: 'code-invalid', expression: 'Patient.gender' },
  {
    name: 'CodeableConcept not in required value set',
    resource: {
      resourceType: 'Condition',
      subject: { reference: 'Patient/1' },
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'gone' }] },
    },
    severity: 'error',
    code: 'code-invalid',
    expression: 'Condition.clinicalStatus',
  },
  { name: 'bad choice suffix', resource: { ...obs, valueFoo: 1 }, severity: 'error', code: 'structure', expression: 'Observation.valueFoo' },
  { name: 'two choice types', resource: { ...obs, valueString: 'a', valueBoolean: true }, severity: 'error', code: 'structure', expression: 'Observation.valueBoolean' },
  { name: 'primitive extension with other content', resource: { ...patient, _birthDate: { foo: 1 } }, severity: 'error', code: 'structure', expression: 'Patient.birthDate.foo' },
  {
    name: 'primitive extension array not aligned',
    resource: { ...patient, name: [{ given: ['a', 'b'], _given: [{ id: 'x', extension: [{ url: 'http://x', valueString: 'y' }] }] }] },
    severity: 'error',
    code: 'structure',
    expression: 'Patient.name[0].given',
  },
  { name: 'extension sibling of a non-primitive', resource: { ...patient, _name: [{ id: 'x' }] }, severity: 'error', code: 'structure', expression: 'Patient._name' },
  {
    name: 'extension with value and extensions (ext-1)',
    resource: { ...patient, extension: [{ url: 'http://x', valueString: 'a', extension: [{ url: 'y', valueString: 'b' }] }] },
    severity: 'error',
    code: 'invariant',
    expression: 'Patient.extension[0]',
  },
  { name: 'extension without url', resource: { ...patient, extension: [{ valueString: 'a' }] }, severity: 'error', code: 'required', expression: 'Patient.extension[0].url' },
  {
    name: 'known extension with the wrong value type',
    resource: { ...patient, extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace', valueString: 'Boston' }] },
    severity: 'error',
    code: 'structure',
    expression: 'Patient.extension[0].valueString',
  },
  {
    name: 'reference to a type the element does not allow',
    resource: { ...obs, subject: { reference: 'Medication/123' } },
    severity: 'error',
    code: 'structure',
    expression: 'Observation.subject.reference',
  },
  {
    name: 'SimpleQuantity with a comparator',
    resource: { ...obs, referenceRange: [{ low: { value: 1, comparator: '<' } }] },
    severity: 'error',
    code: 'structure',
    expression: 'Observation.referenceRange[0].low.comparator',
  },
  {
    name: 'invalid contained resource',
    resource: { ...patient, contained: [{ resourceType: 'Patient', id: 'p1', birthDate: '2020-02-30' }] },
    severity: 'error',
    code: 'value',
    expression: 'Patient.contained[0].birthDate',
  },
  {
    name: 'contained resource of unknown type',
    resource: { ...patient, contained: [{ resourceType: 'Spaceship', id: 'x' }] },
    severity: 'error',
    code: 'structure',
    expression: 'Patient.contained[0].resourceType',
  },
  {
    name: 'invalid Bundle entry resource',
    resource: { resourceType: 'Bundle', type: 'collection', entry: [{ resource: { resourceType: 'Observation', status: 'final' } }] },
    severity: 'error',
    code: 'required',
    expression: 'Bundle.entry[0].resource.code',
  },
  {
    name: 'invalid Parameters resource',
    resource: { resourceType: 'Parameters', parameter: [{ name: 'p', resource: { ...patient, active: 1 } }] },
    severity: 'error',
    code: 'value',
    expression: 'Parameters.parameter[0].resource.active',
  },
  { name: 'resourceType missing', resource: { id: 'x' }, severity: 'error', code: 'required', expression: 'Resource.resourceType' },
  { name: 'unknown resourceType', resource: { resourceType: 'Quantity' }, severity: 'error', code: 'structure', expression: 'Resource.resourceType' },
  { name: 'not an object', resource: [patient], severity: 'error', code: 'structure', expression: 'Resource' },
  {
    name: 'resourceType inside a datatype',
    resource: { ...patient, name: [{ resourceType: 'HumanName', family: 'x' }] },
    severity: 'error',
    code: 'structure',
    expression: 'Patient.name[0].resourceType',
  },
  {
    name: 'unknown profile (default: warning)',
    resource: { ...patient, meta: { profile: ['http://example.org/StructureDefinition/unknown'] } },
    severity: 'warning',
    code: 'not-supported',
    expression: 'Patient.meta.profile[0]',
  },
];

describe('ResourceValidator negative cases', () => {
  let validator: ResourceValidator;
  beforeAll(() => {
    validator = new ResourceValidator();
  });

  it('accepts the valid baselines the cases start from', () => {
    expect(validator.validate(patient)).toEqual([]);
    expect(validator.validate(obs)).toEqual([]);
    expect(validator.validate({ ...patient, _birthDate: { extension: [{ url: 'http://x', valueString: 'a' }] } })).toEqual([]);
    expect(
      validator.validate({ ...patient, name: [{ given: ['a', null], _given: [null, { extension: [{ url: 'http://x', valueString: 'y' }] }] }] }),
    ).toEqual([]);
  });

  it.each(cases)('$name → $severity at $expression', (c) => {
    const issues = validator.validate(c.resource);
    expect(issues).toContainEqual(
      expect.objectContaining({ severity: c.severity, code: c.code, expression: [c.expression], diagnostics: expect.any(String) }),
    );
    if (c.severity === 'warning') expect(issues.filter((i) => i.severity === 'error')).toEqual([]);
  });

  it('reports an unknown profile as an error under strictProfiles', () => {
    const strict = new ResourceValidator({ strictProfiles: true });
    const issues = strict.validate({ ...patient, meta: { profile: ['http://example.org/StructureDefinition/unknown'] } });
    expect(issues).toEqual([expect.objectContaining({ severity: 'error', code: 'not-supported', expression: ['Patient.meta.profile[0]'] })]);
  });

  it('knows the 146 R4 resource types and nothing else', () => {
    expect(validator.resourceTypes()).toHaveLength(146);
    expect(validator.isResourceType('Patient')).toBe(true);
    expect(validator.isResourceType('Parameters')).toBe(true);
    for (const t of ['Quantity', 'DomainResource', 'Resource', 'BackboneElement', 'SubscriptionStatus', 'patient']) {
      expect(validator.isResourceType(t)).toBe(false);
    }
  });
});
