import { ResourceValidator } from './index.js';
const v = new ResourceValidator();
const cases: [string, unknown][] = [
  ['gender robot', { resourceType: 'Patient', gender: 'robot' }],
  ['unknown el', { resourceType: 'Patient', foo: 1 }],
  ['bool str', { resourceType: 'Patient', active: 'true' }],
  ['name obj', { resourceType: 'Patient', name: { family: 'x' } }],
  ['birth array', { resourceType: 'Patient', birthDate: ['2020-01-01'] }],
  ['bad date', { resourceType: 'Patient', birthDate: '2020-13-01' }],
  ['feb30', { resourceType: 'Patient', birthDate: '2020-02-30' }],
  ['dt no tz', { resourceType: 'Patient', deceasedDateTime: '2020-01-01T10:00:00' }],
  ['empty', { resourceType: 'Patient', name: [{ family: '' }] }],
  ['null', { resourceType: 'Patient', name: [{ family: null }] }],
  ['obs', { resourceType: 'Observation' }],
  ['valueFoo', { resourceType: 'Observation', status: 'final', code: { text: 'x' }, valueFoo: 1 }],
  ['ext', { resourceType: 'Patient', _birthDate: { extension: [{ url: 'http://x', valueString: 'a' }] } }],
  ['ext bad', { resourceType: 'Patient', _birthDate: { foo: 1 } }],
  ['given nulls', { resourceType: 'Patient', name: [{ given: ['a', null], _given: [null, { id: 'x' }] }] }],
  ['contained', { resourceType: 'Patient', contained: [{ resourceType: 'Patient', id: 'p', gender: 'x' }] }],
  ['bundle', { resourceType: 'Bundle', type: 'collection', entry: [{ resource: { resourceType: 'Foo' } }] }],
  ['coding', { resourceType: 'Observation', status: 'final', code: { text: 'x' }, category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'nope' }] }] }],
  ['unknown profile', { resourceType: 'Patient', meta: { profile: ['http://x/y'] } }],
  ['encounter class', { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' } }],
  ['sq', { resourceType: 'Observation', status: 'final', code: { text: 'x' }, referenceRange: [{ low: { value: 1, comparator: '<' } }] }],
];
for (const [name, r] of cases) console.log(name, JSON.stringify(v.validate(r).map((i) => `${i.severity} ${i.code} ${i.expression} ${i.diagnostics}`), null, 1));
console.log('bp ext', v.validate({ resourceType: 'Patient', extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace', valueString: 'x' }] }));
console.log('nested', v.validate({ resourceType: 'Patient', extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/patient-nationality', extension: [{ url: 'code', valueString: 'x' }, { url: 'foo', valueString: 'x' }] }] }));
