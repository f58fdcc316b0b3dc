import type { ElementDefinition, StructureDefinition } from 'fhir/r4.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadR4Bundle } from '../definitions/load.js';
import { loadUsCoreProfiles, ResourceValidator } from './index.js';

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const BP = 'http://hl7.org/fhir/StructureDefinition/bp';
const BODYWEIGHT = 'http://hl7.org/fhir/StructureDefinition/bodyweight';
const VSCAT = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] };
const mmHg = (value: number) => ({ value, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' });

function bloodPressure(components: [string, number][]) {
  return {
    resourceType: 'Observation',
    meta: { profile: [BP] },
    status: 'final',
    category: [VSCAT],
    code: { coding: [{ system: LOINC, code: '85354-9' }] },
    subject: { reference: 'Patient/1' },
    effectiveDateTime: '2020-01-01T10:00:00Z',
    component: components.map(([code, v]) => ({ code: { coding: [{ system: LOINC, code }] }, valueQuantity: mmHg(v) })),
  };
}

const bodyWeight = {
  resourceType: 'Observation',
  meta: { profile: [BODYWEIGHT] },
  status: 'final',
  category: [VSCAT],
  code: { coding: [{ system: LOINC, code: '29463-7' }] },
  subject: { reference: 'Patient/1' },
  effectiveDateTime: '2020-01-01',
  valueQuantity: { value: 70, unit: 'kg', system: UCUM, code: 'kg' },
};

/** A test profile: the base snapshot of `type`, edited, with extra (slice) elements after `after`. */
function derive(
  type: string,
  url: string,
  edit: (els: ElementDefinition[]) => void,
  after?: string,
  extra: ElementDefinition[] = [],
): StructureDefinition {
  const base = loadR4Bundle('profiles-resources.json').entry?.find(
    (e) => e.resource?.resourceType === 'StructureDefinition' && e.resource.id === type,
  )?.resource as StructureDefinition;
  const els = structuredClone(base.snapshot?.element ?? []);
  edit(els);
  if (after) {
    let at = els.findIndex((e) => e.path === after);
    while (at + 1 < els.length && els[at + 1].path.startsWith(after + '.')) at++;
    els.splice(at + 1, 0, ...extra);
  }
  return {
    resourceType: 'StructureDefinition',
    url,
    name: url.split('/').pop() ?? 'Test',
    status: 'draft',
    kind: 'resource',
    abstract: false,
    type,
    baseDefinition: base.url,
    derivation: 'constraint',
    snapshot: { element: els },
  };
}

const el = (e: Partial<ElementDefinition> & { id: string; path: string }): ElementDefinition => ({ min: 0, max: '*', ...e });
const find = (els: ElementDefinition[], id: string) => els.find((e) => e.id === id) as ElementDefinition;

const MRN = 'http://example.org/StructureDefinition/patient-mrn';
const mrnProfile = derive(
  'Patient',
  MRN,
  (els) => {
    find(els, 'Patient.identifier').slicing = { discriminator: [{ type: 'value', path: 'system' }], rules: 'closed' };
    find(els, 'Patient.active').fixedBoolean = true;
  },
  'Patient.identifier',
  [
    el({ id: 'Patient.identifier:mrn', path: 'Patient.identifier', sliceName: 'mrn', min: 1, max: '1', base: { path: 'Patient.identifier', min: 0, max: '*' }, type: [{ code: 'Identifier' }] }),
    el({ id: 'Patient.identifier:mrn.system', path: 'Patient.identifier.system', min: 1, max: '1', base: { path: 'Identifier.system', min: 0, max: '1' }, type: [{ code: 'uri' }], fixedUri: 'http://example.org/mrn' }),
    el({ id: 'Patient.identifier:mrn.value', path: 'Patient.identifier.value', min: 1, max: '1', base: { path: 'Identifier.value', min: 0, max: '1' }, type: [{ code: 'string' }] }),
  ],
);

const ONE_PATIENT = 'http://example.org/StructureDefinition/bundle-one-patient';
const bundleProfile = derive(
  'Bundle',
  ONE_PATIENT,
  (els) => {
    find(els, 'Bundle.entry').slicing = { discriminator: [{ type: 'type', path: 'resource' }], rules: 'open' };
  },
  'Bundle.entry',
  [
    el({ id: 'Bundle.entry:patient', path: 'Bundle.entry', sliceName: 'patient', min: 1, max: '1', base: { path: 'Bundle.entry', min: 0, max: '*' }, type: [{ code: 'BackboneElement' }] }),
    el({ id: 'Bundle.entry:patient.resource', path: 'Bundle.entry.resource', min: 1, max: '1', base: { path: 'Bundle.entry.resource', min: 0, max: '1' }, type: [{ code: 'Patient' }] }),
  ],
);

const BIRTHPLACE = 'http://example.org/StructureDefinition/patient-with-birthplace';
const birthPlaceProfile = derive(
  'Patient',
  BIRTHPLACE,
  (els) => {
    find(els, 'Patient.extension').slicing = { discriminator: [{ type: 'profile', path: '$this' }], rules: 'open' };
  },
  'Patient.extension',
  [
    el({
      id: 'Patient.extension:birthPlace',
      path: 'Patient.extension',
      sliceName: 'birthPlace',
      min: 1,
      max: '1',
      base: { path: 'DomainResource.extension', min: 0, max: '*' },
      type: [{ code: 'Extension', profile: ['http://hl7.org/fhir/StructureDefinition/patient-birthPlace'] }],
    }),
  ],
);

const errorsOf = (v: ResourceValidator, r: unknown, opts?: { profiles?: string[] }) =>
  v.validate(r, opts).filter((i) => i.severity === 'error');

describe('profiles and slicing', () => {
  let validator: ResourceValidator;
  beforeAll(() => {
    validator = new ResourceValidator({ extraProfiles: [mrnProfile, bundleProfile, birthPlaceProfile, ...loadUsCoreProfiles()] });
  });

  it('accepts blood pressure with the components in either order (unordered slicing)', () => {
    expect(errorsOf(validator, bloodPressure([['8480-6', 120], ['8462-4', 80]]))).toEqual([]);
    expect(errorsOf(validator, bloodPressure([['8462-4', 80], ['8480-6', 120]]))).toEqual([]);
    expect(errorsOf(validator, bloodPressure([['8462-4', 80], ['8480-6', 120], ['8867-4', 60]]))).toEqual([]);
  });

  it('rejects blood pressure without the systolic component', () => {
    const errors = errorsOf(validator, bloodPressure([['8462-4', 80], ['8302-2', 170]]));
    expect(errors).toContainEqual(
      expect.objectContaining({ code: 'required', expression: ['Observation.component'], diagnostics: expect.stringContaining("slice 'SystolicBP'") }),
    );
  });

  it('rejects blood pressure with a second systolic component (slice max)', () => {
    const errors = errorsOf(validator, bloodPressure([['8480-6', 120], ['8462-4', 80], ['8480-6', 121]]));
    expect(errors).toContainEqual(expect.objectContaining({ code: 'structure', expression: ['Observation.component'] }));
  });

  it('checks the vital-signs category slice and fixed values inside slices', () => {
    const wrongCategory = { ...bloodPressure([['8480-6', 120], ['8462-4', 80]]), category: [{ text: 'vitals' }] };
    expect(errorsOf(validator, wrongCategory)).toContainEqual(
      expect.objectContaining({ code: 'required', expression: ['Observation.category'], diagnostics: expect.stringContaining("'VSCat'") }),
    );
    const wrongUnit = bloodPressure([['8480-6', 120], ['8462-4', 80]]);
    wrongUnit.component[0].valueQuantity.code = 'mmHg';
    expect(errorsOf(validator, wrongUnit)).toContainEqual(
      expect.objectContaining({ code: 'value', expression: ['Observation.component[0].valueQuantity.code'] }),
    );
  });

  it('rejects a fixed value mismatch (bodyweight valueQuantity.system)', () => {
    expect(errorsOf(validator, bodyWeight)).toEqual([]);
    const r = { ...bodyWeight, valueQuantity: { ...bodyWeight.valueQuantity, system: 'http://example.org/units' } };
    expect(errorsOf(validator, r)).toEqual([
      expect.objectContaining({ severity: 'error', code: 'value', expression: ['Observation.valueQuantity.system'] }),
    ]);
  });

  it('rejects a type the profile removed from a choice (closed type slicing)', () => {
    const { valueQuantity: _, ...rest } = bodyWeight;
    const r = { ...rest, valueString: '70 kg' };
    expect(errorsOf(validator, r)).toContainEqual(expect.objectContaining({ code: 'structure', expression: ['Observation.valueString'] }));
  });

  it('enforces tightened cardinality (vitalsigns: subject 1..1)', () => {
    const r: Record<string, unknown> = { ...bodyWeight };
    delete r.subject;
    expect(errorsOf(validator, r)).toContainEqual(expect.objectContaining({ code: 'required', expression: ['Observation.subject'] }));
  });

  it('validates against profiles passed in opts.profiles', () => {
    const plain = { resourceType: 'Observation', status: 'final', code: { text: 'BP' } };
    expect(errorsOf(validator, plain)).toEqual([]);
    const errors = errorsOf(validator, plain, { profiles: [BP] });
    expect(errors.map((e) => e.expression?.[0])).toEqual(
      expect.arrayContaining(['Observation.category', 'Observation.subject', 'Observation.effective[x]', 'Observation.component']),
    );
  });

  it('rejects an item outside a closed slicing, and a fixed value mismatch', () => {
    const ok = { resourceType: 'Patient', meta: { profile: [MRN] }, active: true, identifier: [{ system: 'http://example.org/mrn', value: '1' }] };
    expect(errorsOf(validator, ok)).toEqual([]);
    const extra = { ...ok, identifier: [...ok.identifier, { system: 'http://example.org/ssn', value: '2' }] };
    expect(errorsOf(validator, extra)).toEqual([
      expect.objectContaining({ code: 'structure', expression: ['Patient.identifier[1]'], diagnostics: expect.stringContaining('closed') }),
    ]);
    expect(errorsOf(validator, { ...ok, active: false })).toEqual([
      expect.objectContaining({ code: 'value', expression: ['Patient.active'] }),
    ]);
    expect(errorsOf(validator, { ...ok, identifier: [{ system: 'http://example.org/mrn' }] })).toEqual([
      expect.objectContaining({ code: 'required', expression: ['Patient.identifier[0].value'] }),
    ]);
  });

  it('slices by resource type (type discriminator)', () => {
    // Distinct fullUrls: bdl-7 (an invariant of Bundle) refuses repeated ones.
    const entry = (resource: object, i: number) => ({ fullUrl: `urn:uuid:00000000-0000-4000-8000-00000000000${i}`, resource });
    const bundle = (...resources: object[]) => ({
      resourceType: 'Bundle',
      meta: { profile: [ONE_PATIENT] },
      type: 'collection',
      entry: resources.map(entry),
    });
    const obs = { resourceType: 'Observation', status: 'final', code: { text: 'x' } };
    expect(errorsOf(validator, bundle(obs, { resourceType: 'Patient' }))).toEqual([]);
    expect(errorsOf(validator, bundle(obs))).toEqual([
      expect.objectContaining({ code: 'required', expression: ['Bundle.entry'], diagnostics: expect.stringContaining("'patient'") }),
    ]);
    expect(errorsOf(validator, bundle({ resourceType: 'Patient' }, { resourceType: 'Patient' }))).toEqual([
      expect.objectContaining({ code: 'structure', expression: ['Bundle.entry'] }),
    ]);
  });

  it('slices by conformance to a profile (profile discriminator)', () => {
    const birthPlace = { url: 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace', valueAddress: { city: 'Boston' } };
    const p = { resourceType: 'Patient', meta: { profile: [BIRTHPLACE] } };
    expect(errorsOf(validator, { ...p, extension: [{ url: 'http://example.org/other', valueString: 'x' }, birthPlace] })).toEqual([]);
    expect(errorsOf(validator, { ...p, extension: [{ url: 'http://example.org/other', valueString: 'x' }] })).toEqual([
      expect.objectContaining({ code: 'required', expression: ['Patient.extension'] }),
    ]);
  });

  it('checks US Core extension profiles through extension slices', () => {
    const race = {
      url: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race',
      extension: [{ url: 'ombCategory', valueCoding: { system: 'urn:oid:2.16.840.1.113883.6.238', code: '2106-3' } }],
    };
    const p = {
      resourceType: 'Patient',
      meta: { profile: ['http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient'] },
      identifier: [{ system: 'http://example.org', value: '1' }],
      name: [{ family: 'Doe' }],
      gender: 'female',
    };
    expect(errorsOf(validator, { ...p, extension: [{ ...race, extension: [...race.extension, { url: 'text', valueString: 'White' }] }] })).toEqual([]);
    expect(errorsOf(validator, { ...p, extension: [race] })).toEqual([
      expect.objectContaining({ code: 'required', expression: ['Patient.extension[0].extension'], diagnostics: expect.stringContaining("'text'") }),
    ]);
  });

  it('reports a profile made for another resource type', () => {
    expect(errorsOf(validator, { resourceType: 'Patient', meta: { profile: [BP] } })).toEqual([
      expect.objectContaining({ code: 'invalid', expression: ['Patient.meta.profile[0]'] }),
    ]);
  });

  it('learns and replaces profiles at run time (addProfile)', () => {
    const v = new ResourceValidator();
    const r = { resourceType: 'Patient', meta: { profile: [MRN] }, active: true, identifier: [{ system: 'http://example.org/mrn', value: '1' }] };
    expect(v.validate(r)).toEqual([expect.objectContaining({ severity: 'warning', code: 'not-supported' })]);
    v.addProfile(mrnProfile);
    expect(v.validate(r)).toEqual([]);
    const stricter = structuredClone(mrnProfile);
    find(stricter.snapshot?.element ?? [], 'Patient.active').fixedBoolean = false;
    v.addProfile(stricter);
    expect(v.validate(r)).toEqual([expect.objectContaining({ severity: 'error', expression: ['Patient.active'] })]);
    const noSnapshot = { ...mrnProfile, snapshot: undefined };
    v.addProfile(noSnapshot);
    expect(v.validate(r)).toEqual([expect.objectContaining({ severity: 'warning', code: 'not-supported' })]);
  });
});

const VITALSIGNS = 'http://hl7.org/fhir/StructureDefinition/vitalsigns';
const US_CORE_PATIENT = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient';

/** A hospital's own profile with an invariant of its own, as a client would upload it. */
const DISCHARGED = 'http://example.org/StructureDefinition/encounter-discharged';
const dischargedProfile = derive('Encounter', DISCHARGED, (els) => {
  find(els, 'Encounter').constraint = [
    ...(find(els, 'Encounter').constraint ?? []),
    { key: 'hosp-1', severity: 'error', human: 'A finished encounter has an end', expression: "status = 'finished' implies period.end.exists()", source: DISCHARGED },
    { key: 'hosp-2', severity: 'warning', human: 'A finished encounter should name its discharge disposition', expression: "status = 'finished' implies hospitalization.dischargeDisposition.exists()", source: DISCHARGED },
  ];
});

describe('invariants that profiles add', () => {
  let validator: ResourceValidator;
  beforeAll(() => {
    validator = new ResourceValidator({ extraProfiles: [dischargedProfile, ...loadUsCoreProfiles()] });
  });

  it('vs-2: a vital sign without a value, component or member needs a dataAbsentReason', () => {
    const { valueQuantity: _, ...noValue } = bodyWeight;
    const errors = errorsOf(validator, { ...noValue, meta: { profile: [VITALSIGNS] } });
    expect(errors).toContainEqual(
      expect.objectContaining({ code: 'invariant', expression: ['Observation'], diagnostics: expect.stringMatching(/^vs-2: .* \(profile http:\/\/hl7\.org\/fhir\/StructureDefinition\/vitalsigns\)$/) }),
    );
    const absent = { ...noValue, meta: { profile: [VITALSIGNS] }, dataAbsentReason: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'unknown' }] } };
    expect(errorsOf(validator, absent).filter((e) => e.code === 'invariant')).toEqual([]);
    // Without the profile claimed, vs-2 is none of the base specification's business.
    expect(errorsOf(validator, { ...noValue, meta: {} }).filter((e) => e.code === 'invariant')).toEqual([]);
  });

  it('vs-1: a vital sign taken at a dateTime is dated to the day at least (the choice is typed by its value)', () => {
    const yearOnly = { ...bodyWeight, effectiveDateTime: '2020' };
    expect(errorsOf(validator, yearOnly)).toContainEqual(
      expect.objectContaining({ code: 'invariant', expression: ['Observation.effectiveDateTime'], diagnostics: expect.stringMatching(/^vs-1: /) }),
    );
    expect(errorsOf(validator, { ...bodyWeight, effectiveDateTime: '2020-03' }).filter((e) => e.code === 'invariant')).toHaveLength(1);
    expect(errorsOf(validator, bodyWeight)).toEqual([]);
  });

  it('vs-3: every component of a blood pressure carries a value or a dataAbsentReason', () => {
    const bp = bloodPressure([['8480-6', 120], ['8462-4', 80]]);
    delete (bp.component[1] as { valueQuantity?: unknown }).valueQuantity;
    const errors = errorsOf(validator, bp);
    expect(errors).toContainEqual(expect.objectContaining({ code: 'invariant', expression: ['Observation.component[1]'], diagnostics: expect.stringMatching(/^vs-3: /) }));
    // Stated on the component element and again on each slice: reported once.
    expect(errors.filter((e) => e.diagnostics?.startsWith('vs-3:'))).toHaveLength(1);
  });

  it('us-core-6: a US Core Patient has a family or given name, or says why not', () => {
    const patient = { resourceType: 'Patient', meta: { profile: [US_CORE_PATIENT] }, identifier: [{ system: 'http://example.org/mrn', value: '1' }], gender: 'female', name: [{ text: 'Jane' }] };
    expect(errorsOf(validator, patient)).toContainEqual(expect.objectContaining({ code: 'invariant', expression: ['Patient'], diagnostics: expect.stringMatching(/^us-core-6: /) }));
    expect(errorsOf(validator, { ...patient, name: [{ family: 'Doe' }] })).toEqual([]);
  });

  it("a hospital's own profile: errors refuse, warnings only when asked for", () => {
    const finished = { resourceType: 'Encounter', meta: { profile: [DISCHARGED] }, status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' }, period: { start: '2024-01-01' } };
    expect(errorsOf(validator, finished)).toEqual([
      expect.objectContaining({ code: 'invariant', expression: ['Encounter'], diagnostics: `hosp-1: A finished encounter has an end (profile ${DISCHARGED})` }),
    ]);
    const ended = { ...finished, period: { start: '2024-01-01', end: '2024-01-03' } };
    expect(validator.validate(ended)).toEqual([]);
    expect(validator.validate(ended, { warnings: true })).toContainEqual(
      expect.objectContaining({ severity: 'warning', code: 'invariant', diagnostics: expect.stringMatching(/^hosp-2: /) }),
    );
    // Asked for by the caller rather than claimed ($validate?profile=…): the same checks.
    const { meta: _, ...unclaimed } = finished;
    expect(errorsOf(validator, unclaimed, { profiles: [DISCHARGED] })).toContainEqual(expect.objectContaining({ diagnostics: expect.stringMatching(/^hosp-1: /) }));
  });
});
