import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Bundle, Coding, Observation, Patient, Resource } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { applyElements, applySummary, SUBSETTED_SYSTEM } from './index.js';

const examples = path.resolve(process.cwd(), '../shared/data/fhir-examples');
const load = <T extends Resource>(file: string): T => JSON.parse(readFileSync(path.join(examples, file), 'utf8')) as T;

const subsetted = (r: Resource): Coding[] =>
  (r.meta?.tag ?? []).filter((t) => t.system === SUBSETTED_SYSTEM && t.code === 'SUBSETTED');

describe('applySummary(_summary=true)', () => {
  it('keeps the summary elements of Patient-example and drops the rest', () => {
    const input = load<Patient>('Patient-example.json');
    const result = applySummary(input, 'true') as Patient;
    expect(Object.keys(result).sort()).toEqual(
      ['resourceType', 'id', 'meta', 'identifier', 'active', 'name', 'telecom', 'gender', 'birthDate', 'deceasedBoolean', 'address', 'managingOrganization'].sort(),
    );
    // text and contact are not summary; _birthDate holds the primitive's extension (not summary).
    expect(result).not.toHaveProperty('text');
    expect(result).not.toHaveProperty('contact');
    expect(result).not.toHaveProperty('_birthDate');
    expect(result.birthDate).toBe('1974-12-25');
    expect(result.name).toEqual(input.name);
    expect(subsetted(result)).toHaveLength(1);
    expect(input).toEqual(load<Patient>('Patient-example.json'));
  });

  it('reduces kept complex values to their summary children (Observation-blood-pressure)', () => {
    const input = load<Observation>('Observation-blood-pressure.json');
    const result = applySummary(input, 'true') as Observation;
    expect(result.status).toBe('final');
    expect(result.code).toEqual(input.code);
    expect(result.performer).toEqual(input.performer);
    expect(result.effectiveDateTime).toBe('2012-09-17');
    for (const key of ['category', 'interpretation', 'bodySite', 'text']) expect(result).not.toHaveProperty(key);
    // component is summary, but inside it only code and value[x] are.
    expect(result.component).toHaveLength(2);
    for (const [i, component] of (result.component ?? []).entries()) {
      expect(Object.keys(component).sort()).toEqual(['code', 'valueQuantity']);
      expect(component.valueQuantity).toEqual(input.component?.[i].valueQuantity);
    }
    expect(input.component?.[0]).toHaveProperty('interpretation');
    expect(result.meta?.profile).toEqual(input.meta?.profile);
    expect(subsetted(result)).toHaveLength(1);
  });

  it('drops non-summary children of datatypes and keeps Extension values whole', () => {
    const input: Patient = {
      resourceType: 'Patient',
      id: 'x',
      name: [{ id: 'n1', family: 'Doe', extension: [{ url: 'http://example.org/e', valueString: 'x' }] }],
      modifierExtension: [{ url: 'http://example.org/m', valueBoolean: true }],
      managingOrganization: { reference: 'Organization/1', extension: [{ url: 'http://example.org/r', valueCode: 'y' }] },
    };
    const result = applySummary(input, 'true') as Patient;
    expect(result.name).toEqual([{ family: 'Doe' }]);
    expect(result.managingOrganization).toEqual({ reference: 'Organization/1' });
    // Resource-level modifierExtension is not marked summary in R4.
    expect(result).not.toHaveProperty('modifierExtension');
  });

  it('keeps a backbone modifierExtension (summary) with its whole Extension content', () => {
    const input: Patient = {
      resourceType: 'Patient',
      id: 'x',
      link: [{ other: { reference: 'Patient/y' }, type: 'seealso', modifierExtension: [{ url: 'http://example.org/m', valueBoolean: true }] }],
    };
    const result = applySummary(input, 'true') as Patient;
    expect(result.link).toEqual(input.link);
    expect(subsetted(result)).toHaveLength(0);
  });

  it('keeps nested resources of a Bundle whole', () => {
    const input = load<Bundle>('Bundle-bundle-example.json');
    const result = applySummary(input, 'true') as Bundle;
    expect(result.entry).toEqual(input.entry);
    expect(result.link).toEqual(input.link);
  });

  it('does not tag or change a resource that only has summary elements', () => {
    const input: Patient = { resourceType: 'Patient', id: 'x', gender: 'male', meta: { versionId: '3' } };
    expect(applySummary(input, 'true')).toEqual(input);
  });

  it('falls back to the base Resource elements for an unknown resource type', () => {
    const input = { resourceType: 'Unknown', id: 'x', meta: { versionId: '1' }, custom: 1 } as Resource;
    const result = applySummary(input, 'true');
    expect(Object.keys(result).sort()).toEqual(['id', 'meta', 'resourceType']);
    expect(subsetted(result)).toHaveLength(1);
  });

  it('treats count like true for a single resource', () => {
    const input = load<Patient>('Patient-example.json');
    expect(applySummary(input, 'count')).toEqual(applySummary(input, 'true'));
  });

  it('adds SUBSETTED once, next to existing meta content', () => {
    const input: Patient = {
      resourceType: 'Patient',
      id: 'x',
      meta: { versionId: '2', tag: [{ system: 'http://example.org/tags', code: 'vip' }] },
      text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' },
    };
    const once = applySummary(input, 'true');
    const twice = applySummary(once, 'data');
    expect(once.meta?.versionId).toBe('2');
    expect(once.meta?.tag).toEqual([
      { system: 'http://example.org/tags', code: 'vip' },
      { system: SUBSETTED_SYSTEM, code: 'SUBSETTED', display: 'subsetted' },
    ]);
    expect(subsetted(twice)).toHaveLength(1);
    expect(input.meta?.tag).toHaveLength(1);
  });

  it('holds for every R4 example: type and id kept, idempotent, tagged exactly when reduced', () => {
    const files = readdirSync(examples).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(600);
    for (const file of files) {
      const input = load<Resource>(file);
      const result = applySummary(input, 'true');
      expect(result.resourceType, file).toBe(input.resourceType);
      expect(result.id, file).toBe(input.id);
      for (const key of Object.keys(result)) {
        if (key !== 'meta') expect(input, `${file}: ${key}`).toHaveProperty(key);
      }
      const again = applySummary(result, 'true');
      expect(again, file).toEqual(result);
      const changed = JSON.stringify({ ...result, meta: undefined }) !== JSON.stringify({ ...input, meta: undefined });
      expect(subsetted(result).length > 0, file).toBe(changed || subsetted(input).length > 0);
    }
  });
});

describe('applySummary(text | data | false)', () => {
  it('text keeps text, id, meta and mandatory top-level elements', () => {
    const input = load<Observation>('Observation-example.json');
    const result = applySummary(input, 'text') as Observation;
    expect(Object.keys(result).sort()).toEqual(['code', 'id', 'meta', 'resourceType', 'status', 'text']);
    expect(result.text).toEqual(input.text);
    expect(result.code).toEqual(input.code);
    expect(subsetted(result)).toHaveLength(1);
  });

  it('data removes only text', () => {
    const input = load<Patient>('Patient-example.json');
    const result = applySummary(input, 'data');
    const { text: _text, ...rest } = input;
    expect({ ...result, meta: undefined }).toEqual({ ...rest, meta: undefined });
    expect(subsetted(result)).toHaveLength(1);
  });

  it('data on a resource without text changes nothing and adds no tag', () => {
    const input: Patient = { resourceType: 'Patient', id: 'x', gender: 'male' };
    expect(applySummary(input, 'data')).toEqual(input);
  });

  it('false returns an equal copy', () => {
    const input = load<Patient>('Patient-example.json');
    const result = applySummary(input, 'false');
    expect(result).toEqual(input);
    expect(result).not.toBe(input);
  });
});

describe('applyElements', () => {
  const patient = () => load<Patient>('Patient-example.json');

  it('keeps the listed elements plus id and meta, with primitive extensions', () => {
    const result = applyElements(patient(), ['name', 'birthDate']) as Patient;
    expect(Object.keys(result).sort()).toEqual(['_birthDate', 'birthDate', 'id', 'meta', 'name', 'resourceType']);
    expect(result.name).toEqual(patient().name);
    expect(subsetted(result)).toHaveLength(1);
  });

  it('accepts a choice element by base name, [x] form or JSON key', () => {
    for (const name of ['deceased', 'deceased[x]', 'deceasedBoolean', 'Patient.deceased']) {
      expect((applyElements(patient(), [name]) as Patient).deceasedBoolean, name).toBe(false);
    }
  });

  it('always keeps mandatory elements', () => {
    const result = applyElements(load<Observation>('Observation-example.json'), ['subject']) as Observation;
    expect(Object.keys(result).sort()).toEqual(['code', 'id', 'meta', 'resourceType', 'status', 'subject']);
  });

  it('ignores unknown names, names of other types and nested paths', () => {
    const result = applyElements(patient(), ['nickname', 'Observation.code', 'name.family', ' gender ']) as Patient;
    expect(Object.keys(result).sort()).toEqual(['gender', 'id', 'meta', 'resourceType']);
  });

  it('does not add modifier elements the client did not list (R4: clients list them)', () => {
    expect(applyElements(patient(), ['gender'])).not.toHaveProperty('active');
  });

  it('adds no tag when every element was requested', () => {
    const input: Patient = { resourceType: 'Patient', id: 'x', gender: 'male', active: true };
    expect(applyElements(input, ['gender', 'active'])).toEqual(input);
  });
});
