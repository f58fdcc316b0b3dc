import type { Parameters, ParametersParameter, Patient } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { destination, failure, index, name, operation, parameters, source, value } from './fhirpath-patch-test-helpers.js';
import { applyFhirPathPatch } from './index.js';

const patient = (): Patient => ({
  resourceType: 'Patient',
  id: 'p1',
  identifier: [
    { system: 'http://example.org/mrn', value: 'A1' },
    { system: 'http://example.org/ssn', value: 'B2' },
  ],
  name: [
    { family: 'Doe', given: ['Jane'] },
    { family: 'Roe', given: ['J'] },
  ],
  birthDate: '1970-01-01',
  deceasedBoolean: false,
  contained: [{ resourceType: 'Organization', id: 'o1', name: 'Org' }],
});

const raw = (...parts: unknown[]): ParametersParameter => ({ name: 'operation', part: parts as ParametersParameter[] });
const type = (code: string) => ({ name: 'type', valueCode: code });
const path = (p: string) => ({ name: 'path', valueString: p });

interface Case {
  name: string;
  patch: unknown;
  message: RegExp;
}

const malformedCases: Case[] = [
  { name: 'not a Parameters resource', patch: { resourceType: 'Bundle' }, message: /must be a Parameters resource/ },
  { name: 'not an object', patch: 'add birthDate', message: /must be a Parameters resource/ },
  { name: 'parameter not a list', patch: { resourceType: 'Parameters', parameter: {} }, message: /must be a list/ },
  { name: 'parameter not named operation', patch: parameters({ name: 'op', part: [] }), message: /operation\[0\]: every parameter .* named 'operation'/ },
  { name: 'operation without parts', patch: parameters({ name: 'operation' }), message: /operation\[0\]: the operation has no parts/ },
  { name: 'part without a name', patch: parameters(raw(type('delete'), { valueString: 'x' })), message: /part\[1\] must be an object with a name/ },
  { name: 'unknown part', patch: parameters(raw(type('delete'), path('Patient.birthDate'), { name: 'where', valueString: 'x' })), message: /unknown part 'where'/ },
  { name: 'duplicate part', patch: parameters(raw(type('delete'), path('Patient.birthDate'), path('Patient.gender'))), message: /part 'path' is given more than once/ },
  { name: 'missing type', patch: parameters(raw(path('Patient.birthDate'))), message: /missing part 'type'/ },
  { name: 'unknown type', patch: parameters(operation('upsert', 'Patient')), message: /unknown operation type 'upsert'/ },
  { name: 'type without a value', patch: parameters(raw({ name: 'type' }, path('Patient'))), message: /part 'type' must have a non-empty valueCode/ },
  { name: 'delete without path', patch: parameters(raw(type('delete'))), message: /\(delete\): missing part 'path'/ },
  { name: 'add without name', patch: parameters(operation('add', 'Patient', value({ valueDate: '2000' }))), message: /\(add\): missing part 'name'/ },
  { name: 'add without value', patch: parameters(operation('add', 'Patient', name('birthDate'))), message: /\(add\): missing part 'value'/ },
  { name: 'insert without index', patch: parameters(operation('insert', 'Patient.identifier', value({ valueIdentifier: {} }))), message: /\(insert\): missing part 'index'/ },
  { name: 'replace without value', patch: parameters(operation('replace', 'Patient.birthDate')), message: /\(replace\): missing part 'value'/ },
  { name: 'move without destination', patch: parameters(operation('move', 'Patient.identifier', source(0))), message: /\(move\): missing part 'destination'/ },
  { name: 'part that does not apply', patch: parameters(operation('replace', 'Patient.birthDate', name('x'), value({ valueDate: '2000' }))), message: /part 'name' does not apply to replace/ },
  { name: 'path as valueCode', patch: parameters(raw(type('delete'), { name: 'path', valueCode: 'Patient.birthDate' })), message: /part 'path' must have a non-empty valueString/ },
  { name: 'empty path', patch: parameters(operation('delete', '')), message: /part 'path' must have a non-empty valueString/ },
  { name: 'path that is not FHIRPath', patch: parameters(operation('delete', 'Patient..name')), message: /path 'Patient\.\.name' is not valid FHIRPath/ },
  { name: 'negative index', patch: parameters(operation('insert', 'Patient.identifier', index(-1), value({ valueIdentifier: {} }))), message: /part 'index' must be a valueInteger of 0 or more/ },
  { name: 'index as a string', patch: parameters(operation('move', 'Patient.identifier', { name: 'source', valueString: '0' }, destination(1))), message: /part 'source' must be a valueInteger/ },
  { name: 'value with two value[x]', patch: parameters(operation('replace', 'Patient.birthDate', value({ valueDate: '2000', valueString: 'x' }))), message: /exactly one of value\[x\], resource or part, found valueDate, valueString/ },
  { name: 'value with nothing', patch: parameters(operation('replace', 'Patient.birthDate', { name: 'value' })), message: /found none/ },
  { name: 'value of an unknown datatype', patch: parameters(operation('replace', 'Patient.birthDate', { name: 'value', valueFoo: 1 } as never)), message: /valueFoo is not a FHIR R4 datatype/ },
  { name: 'value that is a resource type', patch: parameters(operation('replace', 'Patient.birthDate', { name: 'value', valuePatient: {} } as never)), message: /valuePatient is not a FHIR R4 datatype/ },
  { name: 'boolean given as a string', patch: parameters(operation('replace', 'Patient.active', value({ valueBoolean: 'yes' as never }))), message: /valueBoolean does not hold a valid boolean/ },
  { name: 'integer with a fraction', patch: parameters(operation('replace', 'Patient.multipleBirth', value({ valueInteger: 1.5 }))), message: /valueInteger does not hold a valid integer/ },
  { name: 'complex type given as a string', patch: parameters(operation('replace', 'Patient.name[0]', value({ valueHumanName: 'Doe' as never }))), message: /valueHumanName does not hold a valid HumanName/ },
  { name: '_value[x] that is not an object', patch: parameters(operation('replace', 'Patient.birthDate', { name: 'value', valueDate: '2000', _valueDate: 'x' } as never)), message: /_valueDate must be an object/ },
  { name: 'empty part list', patch: parameters(operation('add', 'Patient', name('contact'), { name: 'value', part: [] })), message: /part must be a non-empty list/ },
  { name: 'nested part without a name', patch: parameters(operation('add', 'Patient', name('contact'), { name: 'value', part: [{ valueString: 'x' } as never] })), message: /part\[0\] must be an object with a name/ },
  { name: 'nested part without a value', patch: parameters(operation('add', 'Patient', name('contact'), { name: 'value', part: [{ name: 'gender' }] })), message: /part 'gender': expected exactly one/ },
  { name: 'resource without resourceType', patch: parameters(operation('add', 'Patient', name('contained'), { name: 'value', resource: { id: 'x' } as never })), message: /resource must be a FHIR resource with a resourceType/ },
];

const unprocessableCases: Case[] = [
  { name: 'add: path matches nothing', patch: parameters(operation('add', 'Patient.contact', name('gender'), value({ valueCode: 'male' }))), message: /operation\[0\] \(add at 'Patient.contact'\): the path matched no element; exactly one is required/ },
  { name: 'add: path matches several', patch: parameters(operation('add', 'Patient.name', name('prefix'), value({ valueString: 'Dr' }))), message: /matched 2 elements; exactly one is required/ },
  { name: 'add: to a primitive', patch: parameters(operation('add', 'Patient.birthDate', name('id'), value({ valueString: 'x' }))), message: /Patient.birthDate is not a complex element/ },
  { name: 'add: unknown element', patch: parameters(operation('add', 'Patient', name('nickname'), value({ valueString: 'x' }))), message: /Patient has no element 'nickname'/ },
  { name: 'add: prototype key as a name', patch: parameters(operation('add', 'Patient', name('__proto__'), value({ valueString: 'x' }))), message: /Patient has no element '__proto__'/ },
  { name: 'add: non-repeating element already present', patch: parameters(operation('add', 'Patient', name('birthDate'), value({ valueDate: '2000' }))), message: /Patient.birthDate already has a value; use replace/ },
  { name: 'add: other type of a present choice element', patch: parameters(operation('add', 'Patient', name('deceased'), value({ valueDateTime: '2020' }))), message: /Patient.deceased already has a value/ },
  { name: 'add: suffixed name of a present choice element', patch: parameters(operation('add', 'Patient', name('deceasedDateTime'), value({ valueDateTime: '2020' }))), message: /Patient.deceased already has a value/ },
  { name: 'add: wrong primitive type', patch: parameters(operation('add', 'Patient', name('gender'), value({ valueBoolean: true }))), message: /a value of type boolean cannot be stored in Patient.gender \(code\)/ },
  { name: 'add: primitive where a complex type belongs', patch: parameters(operation('add', 'Patient', name('maritalStatus'), value({ valueCode: 'M' }))), message: /a value of type code cannot be stored in Patient.maritalStatus \(CodeableConcept\)/ },
  { name: 'add: type not allowed for a choice element', patch: parameters(operation('add', 'Patient', name('multipleBirth'), value({ valueString: 'twins' }))), message: /a value of type string is not allowed for Patient.multipleBirth \(boolean \| integer\)/ },
  { name: 'add: suffix and value disagree', patch: parameters(operation('add', 'Patient', name('multipleBirthBoolean'), value({ valueInteger: 2 }))), message: /not allowed for Patient.multipleBirthBoolean \(boolean\)/ },
  { name: 'add: parts with an unknown child', patch: parameters(operation('add', 'Patient', name('contact'), { name: 'value', part: [{ name: 'nickname', valueString: 'x' }] })), message: /Patient.contact has no element 'nickname'/ },
  { name: 'add: parts repeating a single child', patch: parameters(operation('add', 'Patient', name('contact'), { name: 'value', part: [{ name: 'gender', valueCode: 'male' }, { name: 'gender', valueCode: 'female' }] })), message: /Patient.contact.gender allows only one value/ },
  { name: 'add: parts with a wrongly typed child', patch: parameters(operation('add', 'Patient', name('contact'), { name: 'value', part: [{ name: 'name', valueString: 'x' }] })), message: /a value of type string cannot be stored in Patient.contact.name \(HumanName\)/ },
  { name: 'add: parts for a primitive', patch: parameters(operation('add', 'Patient', name('gender'), { name: 'value', part: [{ name: 'id', valueString: 'x' }] })), message: /Patient.gender is a code, which cannot be built from parts/ },
  { name: 'add: parts for a choice named without type', patch: parameters(operation('add', 'Patient.contained[0]', name('extension'), { name: 'value', part: [{ name: 'url', valueUri: 'u' }, { name: 'value', part: [{ name: 'text', valueString: 'x' }] }] })), message: /Extension.value is a choice element/ },
  { name: 'add: resource where a datatype belongs', patch: parameters(operation('add', 'Patient', name('managingOrganization'), { name: 'value', resource: { resourceType: 'Organization' } })), message: /a resource of type Organization cannot be stored in Patient.managingOrganization/ },
  { name: 'add: datatype where a resource belongs', patch: parameters(operation('add', 'Patient', name('contained'), value({ valueString: 'x' }))), message: /holds a resource; supply it in a 'resource' part/ },
  { name: 'insert: index beyond the end', patch: parameters(operation('insert', 'Patient.identifier', index(3), value({ valueIdentifier: {} }))), message: /operation\[0\] \(insert at 'Patient.identifier'\): index 3 is out of range: Patient.identifier has 2 items, so the index must be 0..2/ },
  { name: 'insert: into an absent list beyond 0', patch: parameters(operation('insert', 'Patient.telecom', index(1), value({ valueContactPoint: {} }))), message: /index 1 is out of range: Patient.telecom has 0 items/ },
  { name: 'insert: path selects part of a list', patch: parameters(operation('insert', "Patient.identifier.where(value = 'A1')", index(0), value({ valueIdentifier: {} }))), message: /selects 1 of the 2 items of Patient.identifier; it must select the whole list/ },
  { name: 'insert: path selects items of two lists', patch: parameters(operation('insert', 'Patient.name.given', index(0), value({ valueString: 'x' }))), message: /must select the items of a single list/ },
  { name: 'insert: path selects a single element', patch: parameters(operation('insert', 'Patient.birthDate', index(0), value({ valueDate: '2000' }))), message: /must select the items of a single list/ },
  { name: 'insert: absent non-list element', patch: parameters(operation('insert', 'Patient.gender', index(0), value({ valueCode: 'male' }))), message: /Patient.gender is not a list/ },
  { name: 'insert: path matches nothing', patch: parameters(operation('insert', 'Patient.contact.telecom', index(0), value({ valueContactPoint: {} }))), message: /the path matched no element/ },
  { name: 'insert: wrong type', patch: parameters(operation('insert', 'Patient.identifier', index(0), value({ valueString: 'x' }))), message: /a value of type string cannot be stored in Patient.identifier \(Identifier\)/ },
  { name: 'delete: several matches', patch: parameters(operation('delete', 'Patient.identifier')), message: /matched 2 elements; only a single element can be deleted/ },
  { name: 'delete: the resource itself', patch: parameters(operation('delete', 'Patient')), message: /the resource itself cannot be deleted/ },
  { name: 'delete: id', patch: parameters(operation('delete', 'Patient.id')), message: /operation\[0\] \(delete at 'Patient.id'\): id cannot be removed or changed/ },
  { name: 'replace: no match', patch: parameters(operation('replace', 'Patient.gender', value({ valueCode: 'male' }))), message: /matched no element; exactly one is required/ },
  { name: 'replace: several matches', patch: parameters(operation('replace', 'Patient.name.family', value({ valueString: 'X' }))), message: /matched 2 elements; exactly one is required/ },
  { name: 'replace: the resource itself', patch: parameters(operation('replace', 'Patient', value({ valueString: 'x' }))), message: /the resource itself cannot be replaced/ },
  { name: 'replace: id', patch: parameters(operation('replace', 'Patient.id', value({ valueId: 'p2' }))), message: /id cannot be removed or changed/ },
  { name: 'replace: wrong type', patch: parameters(operation('replace', 'Patient.birthDate', value({ valueInteger: 1970 }))), message: /a value of type integer cannot be stored in Patient.birthDate \(date\)/ },
  { name: 'replace: choice type not allowed', patch: parameters(operation('replace', 'Patient.deceased', value({ valueString: 'yes' }))), message: /not allowed for Patient.deceased/ },
  { name: 'move: source out of range', patch: parameters(operation('move', 'Patient.identifier', source(2), destination(0))), message: /source 2 is out of range: Patient.identifier has 2 items/ },
  { name: 'move: destination out of range', patch: parameters(operation('move', 'Patient.identifier', source(0), destination(5))), message: /destination 5 is out of range/ },
  { name: 'move: not a list', patch: parameters(operation('move', 'Patient.birthDate', source(0), destination(0))), message: /must select the items of a single list/ },
  { name: 'path computing a value', patch: parameters(operation('replace', '1 + 1', value({ valueInteger: 3 }))), message: /must select elements of the resource, not computed values/ },
  { name: 'path crossing into another resource', patch: parameters(operation('delete', 'Patient.managingOrganization.resolve().name')), message: /the path could not be evaluated/ },
  { name: 'the failing operation is named', patch: parameters(operation('delete', 'Patient.birthDate'), operation('replace', 'Patient.birthDate', value({ valueDate: '2000' }))), message: /^operation\[1\] \(replace at 'Patient.birthDate'\): the path matched no element/ },
];

describe('applyFhirPathPatch: malformed patches are 400', () => {
  it.each(malformedCases)('$name', ({ patch, message }) => {
    const input = patient();
    const error = failure(() => applyFhirPathPatch(input, patch as Parameters));
    expect(error.category).toBe('incorrect');
    expect(error.status).toBe(400);
    expect(error.message).toMatch(message);
    expect(input).toEqual(patient());
  });
});

describe('applyFhirPathPatch: hostile input', () => {
  it('answers 400, not a crash, for absurdly deep nested parts', () => {
    let nested: Record<string, unknown> = { name: 'value', valueString: 'x' };
    for (let i = 0; i < 20_000; i++) nested = { name: 'value', part: [nested] };
    const error = failure(() => applyFhirPathPatch(patient(), parameters(operation('add', 'Patient', name('contact'), nested as never))));
    expect(error.status).toBe(400);
  });
});

describe('applyFhirPathPatch: patches that cannot be applied are 422', () => {
  it.each(unprocessableCases)('$name', ({ patch, message }) => {
    const input = patient();
    const error = failure(() => applyFhirPathPatch(input, patch as Parameters));
    expect(error.category).toBe('invalid');
    expect(error.status).toBe(422);
    expect(error.message).toMatch(message);
    expect(input).toEqual(patient());
  });

  it('points the issue at the operation in the Parameters resource', () => {
    const error = failure(() =>
      applyFhirPathPatch(patient(), parameters(operation('delete', 'Patient.gender'), operation('delete', 'Patient.identifier'))),
    );
    expect(error.issues[0].expression).toEqual(['Parameters.parameter[1]']);
  });

  it('points a malformed part at the part itself', () => {
    const error = failure(() => applyFhirPathPatch(patient(), parameters(operation('insert', 'Patient.identifier', index(-1), value({ valueIdentifier: {} })))));
    expect(error.issues[0].expression).toEqual(['Parameters.parameter[0].part[2]']);
  });
});
