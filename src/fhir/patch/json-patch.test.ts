import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Observation, Patient, Resource } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { FhirError } from '../errors.js';
import { applyJsonPatch } from './index.js';

const examples = path.resolve(process.cwd(), '../shared/data/fhir-examples');
const load = <T extends Resource>(file: string): T => JSON.parse(readFileSync(path.join(examples, file), 'utf8')) as T;

function failure(fn: () => unknown): FhirError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FhirError) return e;
    throw new Error(`expected a FhirError, got ${String(e)}`);
  }
  throw new Error('expected the patch to fail');
}

const base = (): Patient => ({
  resourceType: 'Patient',
  id: 'p1',
  active: true,
  name: [{ family: 'Doe', given: ['Jane', 'Q'] }],
  telecom: [{ system: 'phone', value: '1' }],
});

describe('applyJsonPatch: operations', () => {
  const cases: { name: string; ops: unknown[]; expect: (r: Patient) => void }[] = [
    {
      name: 'add a new member',
      ops: [{ op: 'add', path: '/gender', value: 'female' }],
      expect: (r) => expect(r.gender).toBe('female'),
    },
    {
      name: 'add replaces an existing member',
      ops: [{ op: 'add', path: '/active', value: false }],
      expect: (r) => expect(r.active).toBe(false),
    },
    {
      name: 'add inserts into an array at an index',
      ops: [{ op: 'add', path: '/name/0/given/1', value: 'Ann' }],
      expect: (r) => expect(r.name?.[0].given).toEqual(['Jane', 'Ann', 'Q']),
    },
    {
      name: 'add appends with "-"',
      ops: [{ op: 'add', path: '/telecom/-', value: { system: 'email', value: 'a@b' } }],
      expect: (r) => expect(r.telecom?.map((t) => t.system)).toEqual(['phone', 'email']),
    },
    {
      name: 'add at index == length appends',
      ops: [{ op: 'add', path: '/name/0/given/2', value: 'Z' }],
      expect: (r) => expect(r.name?.[0].given).toEqual(['Jane', 'Q', 'Z']),
    },
    {
      name: 'remove a member',
      ops: [{ op: 'remove', path: '/active' }],
      expect: (r) => expect(r).not.toHaveProperty('active'),
    },
    {
      name: 'remove an array item shifts the rest',
      ops: [{ op: 'remove', path: '/name/0/given/0' }],
      expect: (r) => expect(r.name?.[0].given).toEqual(['Q']),
    },
    {
      name: 'replace a value',
      ops: [{ op: 'replace', path: '/name/0/family', value: 'Roe' }],
      expect: (r) => expect(r.name?.[0].family).toBe('Roe'),
    },
    {
      name: 'move between members',
      ops: [{ op: 'move', from: '/name/0/given/1', path: '/name/0/suffix' }],
      expect: (r) => {
        expect(r.name?.[0].given).toEqual(['Jane']);
        expect(r.name?.[0].suffix).toBe('Q');
      },
    },
    {
      name: 'move within an array',
      ops: [{ op: 'move', from: '/name/0/given/1', path: '/name/0/given/0' }],
      expect: (r) => expect(r.name?.[0].given).toEqual(['Q', 'Jane']),
    },
    {
      name: 'copy is by value',
      ops: [
        { op: 'copy', from: '/name/0', path: '/name/-' },
        { op: 'replace', path: '/name/1/family', value: 'Copy' },
      ],
      expect: (r) => expect(r.name?.map((n) => n.family)).toEqual(['Doe', 'Copy']),
    },
    {
      name: 'test that passes lets later operations run',
      ops: [
        { op: 'test', path: '/name/0', value: { given: ['Jane', 'Q'], family: 'Doe' } },
        { op: 'replace', path: '/active', value: false },
      ],
      expect: (r) => expect(r.active).toBe(false),
    },
    {
      name: 'escaped pointer segments (~0, ~1)',
      ops: [{ op: 'add', path: '/extension', value: [{ url: 'a/b~c', valueString: 'x' }] }, { op: 'test', path: '/extension/0/url', value: 'a/b~c' }],
      expect: (r) => expect(r.extension?.[0].url).toBe('a/b~c'),
    },
    {
      name: 'replace of the whole document keeping type and id',
      ops: [{ op: 'replace', path: '', value: { resourceType: 'Patient', id: 'p1', gender: 'other' } }],
      expect: (r) => expect(r).toEqual({ resourceType: 'Patient', id: 'p1', gender: 'other' }),
    },
    {
      name: 'empty patch returns an equal copy',
      ops: [],
      expect: (r) => expect(r).toEqual(base()),
    },
  ];

  it.each(cases)('$name', ({ ops, expect: check }) => {
    const input = base();
    const result = applyJsonPatch(input, ops) as Patient;
    check(result);
    expect(input).toEqual(base());
  });

  it('never shares objects with the input or the patch', () => {
    const input = base();
    const value = { system: 'email', value: 'x@y' };
    const result = applyJsonPatch(input, [{ op: 'add', path: '/telecom/-', value }]) as Patient;
    result.telecom![1].value = 'changed';
    result.name![0].family = 'changed';
    expect(value.value).toBe('x@y');
    expect(input.name![0].family).toBe('Doe');
  });
});

describe('applyJsonPatch: failures', () => {
  const cases: { name: string; patch: unknown; status: 400 | 422; message: RegExp }[] = [
    { name: 'document not an array', patch: { op: 'add' }, status: 400, message: /must be an array/ },
    { name: 'operation not an object', patch: [[]], status: 400, message: /operation\[0\].*JSON object/ },
    { name: 'unknown op', patch: [{ op: 'merge', path: '/a' }], status: 400, message: /operation\[0\].*"op" must be one of/ },
    { name: 'missing op', patch: [{ path: '/a' }], status: 400, message: /operation\[0\].*"op"/ },
    { name: 'path missing', patch: [{ op: 'remove' }], status: 400, message: /operation\[0\].*"path" must be a JSON Pointer/ },
    { name: 'path without leading slash', patch: [{ op: 'remove', path: 'active' }], status: 400, message: /start with "\/"/ },
    { name: 'bad ~ escape', patch: [{ op: 'remove', path: '/a~2b' }], status: 400, message: /invalid "~" escape/ },
    { name: 'value missing for add', patch: [{ op: 'add', path: '/gender' }], status: 400, message: /operation\[0\].*"value" is required/ },
    { name: 'value missing for test', patch: [{ op: 'test', path: '/gender' }], status: 400, message: /"value" is required/ },
    { name: 'from missing for move', patch: [{ op: 'move', path: '/gender' }], status: 400, message: /"from" must be a JSON Pointer/ },
    { name: 'second operation malformed, none applied', patch: [{ op: 'remove', path: '/active' }, { op: 'copy', path: '/x' }], status: 400, message: /operation\[1\]/ },
    { name: '__proto__ segment', patch: [{ op: 'add', path: '/__proto__/polluted', value: 1 }], status: 400, message: /"__proto__" is not allowed/ },
    { name: 'constructor/prototype segments', patch: [{ op: 'add', path: '/constructor/prototype/polluted', value: 1 }], status: 400, message: /"constructor" is not allowed/ },
    { name: '__proto__ in from', patch: [{ op: 'copy', from: '/__proto__', path: '/x' }], status: 400, message: /"from" segment "__proto__"/ },
    { name: 'remove of a missing member', patch: [{ op: 'remove', path: '/gender' }], status: 422, message: /operation\[0\] \(remove \/gender\): the path does not exist/ },
    { name: 'replace of a missing member', patch: [{ op: 'replace', path: '/gender', value: 'male' }], status: 422, message: /does not exist/ },
    { name: 'add below a missing parent', patch: [{ op: 'add', path: '/contact/0/name', value: {} }], status: 422, message: /does not exist/ },
    { name: 'add beyond the end of an array', patch: [{ op: 'add', path: '/telecom/5', value: {} }], status: 422, message: /index 5 is out of range: the array has 1 items/ },
    { name: 'array index with leading zero', patch: [{ op: 'replace', path: '/telecom/00', value: {} }], status: 422, message: /does not exist/ },
    { name: 'non-numeric array index', patch: [{ op: 'add', path: '/telecom/first', value: {} }], status: 422, message: /not an array index/ },
    { name: 'inherited member is not a member', patch: [{ op: 'remove', path: '/toString' }], status: 422, message: /does not exist/ },
    { name: 'path through a primitive', patch: [{ op: 'add', path: '/active/x', value: 1 }], status: 422, message: /does not exist/ },
    { name: 'failing test', patch: [{ op: 'test', path: '/active', value: false }], status: 422, message: /operation\[0\] \(test \/active\): test failed: the value is true/ },
    { name: 'test failing later in the sequence', patch: [{ op: 'replace', path: '/active', value: false }, { op: 'test', path: '/active', value: true }], status: 422, message: /operation\[1\]/ },
    { name: 'test on a missing member', patch: [{ op: 'test', path: '/gender', value: 'x' }], status: 422, message: /does not exist/ },
    { name: 'move from a missing member', patch: [{ op: 'move', from: '/gender', path: '/x' }], status: 422, message: /"from" \/gender: the path does not exist/ },
    { name: 'move into its own child', patch: [{ op: 'move', from: '/name/0', path: '/name/0/given/0' }], status: 422, message: /own child/ },
    { name: 'remove id', patch: [{ op: 'remove', path: '/id' }], status: 422, message: /operation\[0\].*id cannot be removed or changed/ },
    { name: 'replace id', patch: [{ op: 'replace', path: '/id', value: 'other' }], status: 422, message: /id cannot be removed or changed/ },
    { name: 'remove resourceType', patch: [{ op: 'remove', path: '/resourceType' }], status: 422, message: /resourceType cannot be removed or changed/ },
    { name: 'replace the document with another type', patch: [{ op: 'replace', path: '', value: { resourceType: 'Group', id: 'p1' } }], status: 422, message: /resourceType/ },
    { name: 'replace the document with a non-object', patch: [{ op: 'add', path: '', value: 3 }], status: 422, message: /no longer a resource/ },
    { name: 'remove the whole document', patch: [{ op: 'remove', path: '' }], status: 422, message: /whole resource cannot be removed/ },
  ];

  it.each(cases)('$name → $status', ({ patch, status, message }) => {
    const input = base();
    const error = failure(() => applyJsonPatch(input, patch));
    expect(error.status).toBe(status);
    expect(error.message).toMatch(message);
    expect(input).toEqual(base());
  });

  it('does not pollute Object.prototype', () => {
    for (const path of ['/__proto__/polluted', '/constructor/prototype/polluted', '/name/0/__proto__/polluted']) {
      failure(() => applyJsonPatch(base(), [{ op: 'add', path, value: 'yes' }]));
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('reports the failing location as a FHIRPath expression', () => {
    const error = failure(() => applyJsonPatch(base(), [{ op: 'replace', path: '/name/0/prefix', value: 'Dr' }]));
    expect(error.issues[0].expression).toEqual(['Patient.name[0].prefix']);
    expect(error.issues[0].code).toBe('not-found');
  });
});

describe('applyJsonPatch on real examples', () => {
  it('updates an Observation value and status', () => {
    const observation = load<Observation>('Observation-example.json');
    const result = applyJsonPatch(observation, [
      { op: 'test', path: '/status', value: 'final' },
      { op: 'replace', path: '/status', value: 'amended' },
      { op: 'replace', path: '/valueQuantity/value', value: 84.1 },
      { op: 'add', path: '/note', value: [{ text: 'Re-weighed' }] },
      { op: 'remove', path: '/encounter' },
    ]) as Observation;
    expect(result.status).toBe('amended');
    expect(result.valueQuantity?.value).toBe(84.1);
    expect(result.note).toEqual([{ text: 'Re-weighed' }]);
    expect(result.encounter).toBeUndefined();
    expect(result.code).toEqual(observation.code);
    expect(observation.status).toBe('final');
  });

  it('edits a Patient name list', () => {
    const patient = load<Patient>('Patient-example.json');
    const result = applyJsonPatch(patient, [
      { op: 'test', path: '/name/1/use', value: 'usual' },
      { op: 'move', from: '/name/1', path: '/name/0' },
      { op: 'add', path: '/name/0/given/-', value: 'Jimmy' },
    ]) as Patient;
    expect(result.name?.map((n) => n.use)).toEqual(['usual', 'official', 'maiden']);
    expect(result.name?.[0].given).toEqual(['Jim', 'Jimmy']);
  });
});
