import type { Extension, Observation, Patient, Questionnaire } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import {
  destination,
  index,
  loadExample,
  name,
  operation,
  parameters,
  source,
  value,
} from './fhirpath-patch-test-helpers.js';
import { applyFhirPathPatch } from './index.js';

const patient = (): Patient => ({
  resourceType: 'Patient',
  id: 'p1',
  identifier: [
    { system: 'http://example.org/mrn', value: 'A1' },
    { system: 'http://example.org/ssn', value: 'B2' },
  ],
  name: [{ family: 'Doe', given: ['Jane', 'Q'], _given: [null, { id: 'g-q' }] } as never],
  birthDate: '1970-01-01',
  deceasedBoolean: false,
});

function patch(resource: Patient, ...operations: ReturnType<typeof operation>[]): Patient {
  return applyFhirPathPatch(resource, parameters(...operations)) as Patient;
}

describe('applyFhirPathPatch: the examples of the spec page', () => {
  it('add: a birthDate to Patient', () => {
    const input: Patient = { resourceType: 'Patient', id: 'x' };
    const result = patch(input, operation('add', 'Patient', name('birthDate'), value({ valueDate: '1930-01-01' })));
    expect(result).toEqual({ resourceType: 'Patient', id: 'x', birthDate: '1930-01-01' });
    expect(input).toEqual({ resourceType: 'Patient', id: 'x' });
  });

  it('add: a complex value given as parts (a contact with a name)', () => {
    const result = patch(
      patient(),
      operation('add', 'Patient', name('contact'), { name: 'value', part: [{ name: 'name', valueHumanName: { text: 'a name' } }] }),
    );
    expect(result.contact).toEqual([{ name: { text: 'a name' } }]);
  });

  it('insert: an identifier at index 0', () => {
    const result = patch(
      patient(),
      operation('insert', 'Patient.identifier', index(0), value({ valueIdentifier: { system: 'http://example.org', value: 'value 3' } })),
    );
    expect(result.identifier?.map((i) => i.value)).toEqual(['value 3', 'A1', 'B2']);
  });

  it('delete: the birthDate', () => {
    expect(patch(patient(), operation('delete', 'Patient.birthDate'))).not.toHaveProperty('birthDate');
  });

  it('replace: the birthDate', () => {
    const result = patch(patient(), operation('replace', 'Patient.birthDate', value({ valueDate: '1930-01-01' })));
    expect(result.birthDate).toBe('1930-01-01');
  });

  it('move: identifier 1 to position 0', () => {
    const result = patch(patient(), operation('move', 'Patient.identifier', source(1), destination(0)));
    expect(result.identifier?.map((i) => i.value)).toEqual(['B2', 'A1']);
  });
});

describe('applyFhirPathPatch: operations', () => {
  const cases: { name: string; op: ReturnType<typeof operation>; check: (r: Patient) => void }[] = [
    {
      name: 'add appends to a repeating element',
      op: operation('add', 'Patient', name('identifier'), value({ valueIdentifier: { value: 'C3' } })),
      check: (r) => expect(r.identifier?.map((i) => i.value)).toEqual(['A1', 'B2', 'C3']),
    },
    {
      name: 'add creates a list for a repeating element that is absent',
      op: operation('add', 'Patient', name('telecom'), value({ valueContactPoint: { system: 'phone', value: '1' } })),
      check: (r) => expect(r.telecom).toEqual([{ system: 'phone', value: '1' }]),
    },
    {
      name: 'add into a nested complex element',
      op: operation('add', 'Patient.name[0]', name('prefix'), value({ valueString: 'Dr' })),
      check: (r) => expect(r.name?.[0].prefix).toEqual(['Dr']),
    },
    {
      name: 'add a choice element by base name takes the type from the value',
      op: operation('add', 'Patient', name('multipleBirth'), value({ valueInteger: 2 })),
      check: (r) => expect(r.multipleBirthInteger).toBe(2),
    },
    {
      name: 'add a choice element named with its type suffix',
      op: operation('add', 'Patient', name('multipleBirthBoolean'), value({ valueBoolean: true })),
      check: (r) => expect(r.multipleBirthBoolean).toBe(true),
    },
    {
      name: 'add an extension built from parts',
      op: operation('add', 'Patient', name('extension'), {
        name: 'value',
        part: [
          { name: 'url', valueUri: 'http://example.org/ext' },
          { name: 'value', valueCode: 'x' },
        ],
      }),
      check: (r) => expect(r.extension).toEqual([{ url: 'http://example.org/ext', valueCode: 'x' }]),
    },
    {
      name: 'add with parts repeats a repeating child and keeps primitive extensions',
      op: operation('add', 'Patient', name('name'), {
        name: 'value',
        part: [
          { name: 'family', valueString: 'Roe' },
          { name: 'given', valueString: 'A' },
          { name: 'given', valueString: 'B', _valueString: { id: 'b' } } as never,
        ],
      }),
      check: (r) =>
        expect(r.name?.[1]).toEqual({ family: 'Roe', given: ['A', 'B'], _given: [null, { id: 'b' }] }),
    },
    {
      name: 'add a contained resource',
      op: operation('add', 'Patient', name('contained'), { name: 'value', resource: { resourceType: 'Organization', id: 'o1', name: 'Org' } }),
      check: (r) => expect(r.contained).toEqual([{ resourceType: 'Organization', id: 'o1', name: 'Org' }]),
    },
    {
      name: 'insert into a primitive list keeps `_given` aligned',
      op: operation('insert', 'Patient.name.given', index(1), value({ valueString: 'Ann' })),
      check: (r) => expect(r.name?.[0]).toMatchObject({ given: ['Jane', 'Ann', 'Q'], _given: [null, null, { id: 'g-q' }] }),
    },
    {
      name: 'insert at the end (index == length)',
      op: operation('insert', 'Patient.identifier', index(2), value({ valueIdentifier: { value: 'Z' } })),
      check: (r) => expect(r.identifier?.[2]).toEqual({ value: 'Z' }),
    },
    {
      name: 'insert into an absent list at index 0',
      op: operation('insert', 'Patient.address', index(0), value({ valueAddress: { city: 'Paris' } })),
      check: (r) => expect(r.address).toEqual([{ city: 'Paris' }]),
    },
    {
      name: 'delete one item of a list selected with where()',
      op: operation('delete', "Patient.identifier.where(system = 'http://example.org/ssn')"),
      check: (r) => expect(r.identifier).toEqual([{ system: 'http://example.org/mrn', value: 'A1' }]),
    },
    {
      name: 'delete a primitive list item with its extension',
      op: operation('delete', 'Patient.name.given[1]'),
      check: (r) => expect(r.name?.[0]).toEqual({ family: 'Doe', given: ['Jane'] }),
    },
    {
      name: 'delete a choice element by its base name',
      op: operation('delete', 'Patient.deceased'),
      check: (r) => expect(r).not.toHaveProperty('deceasedBoolean'),
    },
    {
      name: 'delete of a path that matches nothing is not an error',
      op: operation('delete', 'Patient.gender'),
      check: (r) => expect(r).toEqual(patient()),
    },
    {
      name: 'delete of the last child removes the emptied container',
      op: operation('delete', 'Patient.name.family'),
      check: (r) => expect(r.name?.[0]).toEqual({ given: ['Jane', 'Q'], _given: [null, { id: 'g-q' }] }),
    },
    {
      name: 'replace a list item in place',
      op: operation('replace', 'Patient.identifier[1]', value({ valueIdentifier: { value: 'NEW' } })),
      check: (r) => expect(r.identifier?.map((i) => i.value)).toEqual(['A1', 'NEW']),
    },
    {
      name: 'replace a choice element with another of its types',
      op: operation('replace', 'Patient.deceased', value({ valueDateTime: '2020-02-02' })),
      check: (r) => {
        expect(r.deceasedDateTime).toBe('2020-02-02');
        expect(r).not.toHaveProperty('deceasedBoolean');
      },
    },
    {
      name: 'replace accepts a compatible primitive (valueString into a code)',
      op: operation('replace', 'Patient.identifier[0].system', value({ valueString: 'urn:x' })),
      check: (r) => expect(r.identifier?.[0].system).toBe('urn:x'),
    },
    {
      name: 'replace keeps the key position in the object',
      op: operation('replace', 'Patient.birthDate', value({ valueDate: '1999-09-09' })),
      check: (r) => expect(Object.keys(r)).toEqual(Object.keys(patient())),
    },
    {
      name: 'move within a primitive list moves `_given` too',
      op: operation('move', 'Patient.name.given', source(1), destination(0)),
      check: (r) => expect(r.name?.[0]).toMatchObject({ given: ['Q', 'Jane'], _given: [{ id: 'g-q' }, null] }),
    },
  ];

  it.each(cases)('$name', ({ op, check }) => {
    const input = patient();
    check(patch(input, op));
    expect(input).toEqual(patient());
  });

  it('applies operations in sequence, each seeing the previous result', () => {
    const result = patch(
      patient(),
      operation('add', 'Patient', name('gender'), value({ valueCode: 'female' })),
      operation('replace', 'Patient.gender', value({ valueCode: 'other' })),
      operation('delete', 'Patient.identifier[0]'),
      operation('insert', 'Patient.identifier', index(1), value({ valueIdentifier: { value: 'last' } })),
    );
    expect(result.gender).toBe('other');
    expect(result.identifier?.map((i) => i.value)).toEqual(['B2', 'last']);
  });

  it('returns a copy for an empty Parameters', () => {
    const input = patient();
    const result = applyFhirPathPatch(input, { resourceType: 'Parameters' });
    expect(result).toEqual(input);
    expect(result).not.toBe(input);
  });
});

describe('applyFhirPathPatch on real examples', () => {
  it('patches the spec Patient example', () => {
    const input = loadExample<Patient>('Patient-example.json');
    const result = patch(
      input,
      operation('replace', "Patient.telecom.where(use = 'work').value", value({ valueString: '(03) 5555 0000' })),
      operation('delete', "Patient.name.where(use = 'maiden')"),
      operation('replace', 'Patient.contact.name.family', value({ valueString: 'Marché' })),
      operation('add', 'Patient', name('maritalStatus'), value({ valueCodeableConcept: { text: 'Married' } })),
      operation('replace', 'Patient.active', value({ valueBoolean: false })),
    );
    expect(result.telecom?.find((t) => t.use === 'work')?.value).toBe('(03) 5555 0000');
    expect(result.name?.map((n) => n.use)).toEqual(['official', 'usual']);
    // Replacing a primitive replaces the whole element, including its extension.
    expect(result.contact?.[0].name).toEqual({ family: 'Marché', given: ['Bénédicte'] });
    expect(result.maritalStatus).toEqual({ text: 'Married' });
    expect(result.active).toBe(false);
    // birthDate keeps its birth-time extension, untouched by the patch.
    expect((result as Patient & { _birthDate?: { extension?: Extension[] } })._birthDate?.extension?.[0].url).toBe(
      'http://hl7.org/fhir/StructureDefinition/patient-birthTime',
    );
    expect(input).toEqual(loadExample<Patient>('Patient-example.json'));
  });

  it('patches a blood pressure Observation component', () => {
    const input = loadExample<Observation>('Observation-blood-pressure.json');
    const result = applyFhirPathPatch(
      input,
      parameters(
        operation('replace', "Observation.component.where(code.coding.code contains '8480-6').value.value", value({ valueDecimal: 112 })),
        operation('replace', 'Observation.status', value({ valueCode: 'amended' })),
        operation('add', 'Observation', name('note'), { name: 'value', part: [{ name: 'text', valueMarkdown: 'Re-measured' }] }),
        operation('move', 'Observation.component', source(0), destination(1)),
      ),
    ) as Observation;
    expect(result.status).toBe('amended');
    expect(result.note).toEqual([{ text: 'Re-measured' }]);
    expect(result.component?.[1].code.coding?.[0].code).toBe('8480-6');
    expect(result.component?.[1].valueQuantity).toMatchObject({ value: 112, unit: 'mmHg' });
  });

  it('reaches nested backbone elements defined elsewhere (Questionnaire.item.item)', () => {
    const input: Questionnaire = {
      resourceType: 'Questionnaire',
      id: 'q',
      status: 'draft',
      item: [{ linkId: '1', type: 'group', item: [{ linkId: '1.1', type: 'string' }] }],
    };
    const result = applyFhirPathPatch(
      input,
      parameters(
        operation('add', "Questionnaire.item.item.where(linkId = '1.1')", name('text'), value({ valueString: 'Name?' })),
        operation('add', 'Questionnaire.item[0]', name('item'), {
          name: 'value',
          part: [
            { name: 'linkId', valueString: '1.2' },
            { name: 'type', valueCode: 'boolean' },
          ],
        }),
      ),
    ) as Questionnaire;
    expect(result.item?.[0].item).toEqual([
      { linkId: '1.1', type: 'string', text: 'Name?' },
      { linkId: '1.2', type: 'boolean' },
    ]);
  });
});
