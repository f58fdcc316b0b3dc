import { describe, expect, it } from 'vitest';
import { ResourceValidator } from './index.js';
import { navigatedNames, topLevelSplit } from './invariants.js';

/** The R4 invariants (ElementDefinition.constraint) evaluated from the definitions (invariants.ts). */

const validator = new ResourceValidator();
const invariantErrors = (r: unknown) =>
  validator
    .validate(r)
    .filter((i) => i.code === 'invariant' && i.severity === 'error')
    .map((i) => `${i.diagnostics?.split(':')[0]} @ ${i.expression?.[0]}`);

const obs = { resourceType: 'Observation', status: 'final', code: { text: 'x' } };

describe('R4 invariants', () => {
  it('obs-6: a value and a dataAbsentReason together', () => {
    expect(invariantErrors({ ...obs, valueString: 'a' })).toEqual([]);
    expect(invariantErrors({ ...obs, valueString: 'a', dataAbsentReason: { text: 'unknown' } })).toEqual(['obs-6 @ Observation']);
  });

  it('datatype invariants wherever the type is used: qty-3 (code without system), per-1 (start after end)', () => {
    expect(invariantErrors({ ...obs, valueQuantity: { value: 1, code: 'mg' } })).toEqual(['qty-3 @ Observation.valueQuantity']);
    expect(invariantErrors({ ...obs, valueQuantity: { value: 1, code: 'mg', system: 'http://unitsofmeasure.org' } })).toEqual([]);
    expect(invariantErrors({ ...obs, effectivePeriod: { start: '2024-02-01', end: '2024-01-01' } })).toEqual(['per-1 @ Observation.effectivePeriod']);
    expect(invariantErrors({ ...obs, component: [{ code: { text: 'c' }, valuePeriod: { start: '2024-02-01', end: '2024-01-01' } }] })).toEqual(['per-1 @ Observation.component[0].valuePeriod']);
  });

  it('element invariants of backbone elements: obs-3 (referenceRange needs low, high or text)', () => {
    expect(invariantErrors({ ...obs, referenceRange: [{ type: { text: 'normal' } }] })).toEqual(['obs-3 @ Observation.referenceRange[0]']);
  });

  it('contained resources: dom-3 (must be referenced), dom-2 (no nesting), ref-1 against the container', () => {
    const med = { resourceType: 'Medication', id: 'm1', code: { text: 'aspirin' } };
    const request = { resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: 'Patient/1' } };
    expect(invariantErrors({ ...request, contained: [med], medicationReference: { reference: '#m1' } })).toEqual([]);
    expect(invariantErrors({ ...request, contained: [med], medicationCodeableConcept: { text: 'x' } })).toEqual(['dom-3 @ MedicationRequest']);
    expect(invariantErrors({ ...request, contained: [{ ...med, contained: [{ resourceType: 'Substance', id: 's', code: { text: 's' } }] }], medicationReference: { reference: '#m1' } })).toContain('dom-2 @ MedicationRequest');
    expect(invariantErrors({ ...request, medicationReference: { reference: '#nowhere' } })).toEqual(['ref-1 @ MedicationRequest.medicationReference']);
  });

  it('Bundle: bdl-7 (repeated fullUrl), bdl-9 / bdl-10 / bdl-11 (documents)', () => {
    const p = { resourceType: 'Patient' };
    expect(invariantErrors({ resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: 'urn:uuid:1', resource: p }, { fullUrl: 'urn:uuid:1', resource: p }] })).toEqual(['bdl-7 @ Bundle']);
    expect(invariantErrors({ resourceType: 'Bundle', type: 'history', entry: [{ fullUrl: 'urn:uuid:1', resource: p, request: { method: 'PUT', url: 'Patient/1' }, response: { status: '200' } }, { fullUrl: 'urn:uuid:1', resource: p, request: { method: 'PUT', url: 'Patient/1' }, response: { status: '200' } }] })).toEqual([]);
    const errors = invariantErrors({ resourceType: 'Bundle', type: 'document', entry: [{ fullUrl: 'urn:uuid:1', resource: p }] });
    expect(errors).toEqual(expect.arrayContaining(['bdl-9 @ Bundle', 'bdl-10 @ Bundle', 'bdl-11 @ Bundle']));
  });

  it('bdl-3 / bdl-4: entries carry a request in batches and transactions, a response in their responses, and not elsewhere', () => {
    const p = { resourceType: 'Patient' };
    expect(invariantErrors({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: p, request: { method: 'POST', url: 'Patient' } }] })).toEqual([]);
    expect(invariantErrors({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: p, request: { method: 'POST', url: 'Patient' } }, { resource: p }] })).toEqual(['bdl-3 @ Bundle']);
    expect(invariantErrors({ resourceType: 'Bundle', type: 'collection', entry: [{ resource: p, request: { method: 'POST', url: 'Patient' } }] })).toEqual(['bdl-3 @ Bundle']);
    expect(invariantErrors({ resourceType: 'Bundle', type: 'batch-response', entry: [{ response: { status: '200' } }, { resource: p }] })).toEqual(['bdl-4 @ Bundle']);
  });

  it('que-7 reads answerBoolean as a Boolean (the rewrite for the fhirpath package)', () => {
    const q = (enableWhen: object) => ({ resourceType: 'Questionnaire', status: 'active', item: [{ linkId: 'a', type: 'boolean' }, { linkId: 'b', type: 'string', enableWhen: [enableWhen] }] });
    expect(invariantErrors(q({ question: 'a', operator: 'exists', answerBoolean: true }))).toEqual([]);
    expect(invariantErrors(q({ question: 'a', operator: 'exists', answerString: 'yes' }))).toEqual(['que-7 @ Questionnaire.item[1].enableWhen[0]']);
  });

  it('invariants of severity warning only when asked for ($validate): dom-6 (no narrative)', () => {
    expect(validator.validate(obs).some((i) => i.diagnostics?.startsWith('dom-6'))).toBe(false);
    const warned = validator.validate(obs, { warnings: true }).filter((i) => i.diagnostics?.startsWith('dom-6'));
    expect(warned).toEqual([expect.objectContaining({ severity: 'warning', code: 'invariant', expression: ['Observation'] })]);
  });
});

describe('evaluation shortcuts', () => {
  it('splits at top-level or / implies only (not inside parentheses, strings or functions; not beside xor)', () => {
    expect(topLevelSplit("reference.startsWith('#').not() or (reference.substring(1) in %rootResource.contained.id)", 'or')).toEqual([
      "reference.startsWith('#').not()",
      '(reference.substring(1) in %rootResource.contained.id)',
    ]);
    expect(topLevelSplit("a.where(b or c).exists() or 'x or y' = d", 'or')).toEqual(['a.where(b or c).exists()', "'x or y' = d"]);
    expect(topLevelSplit('a or b xor c', 'or')).toEqual(['a or b xor c']);
    expect(topLevelSplit('duration.exists() implies duration >= 0', 'implies')).toEqual(['duration.exists()', 'duration >= 0']);
    expect(topLevelSplit('orange.exists() and important.empty()', 'or')).toEqual(['orange.exists() and important.empty()']);
  });

  it('names the elements an expression reads the context by, or none when it may read it otherwise', () => {
    expect(navigatedNames('contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()')).toEqual(['contained']);
    expect(navigatedNames('start.hasValue().not() or end.hasValue().not() or (start <= end)')).toEqual(['start', 'end']);
    expect(navigatedNames('text.`div`.exists()')).toEqual(['text']);
    expect(navigatedNames('value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()')).toBeUndefined();
    expect(navigatedNames('hasValue() or (children().count() > id.count())')).toBeUndefined();
    expect(navigatedNames("$this.code = 'x'")).toBeUndefined();
  });

  it('an invariant skipped as vacuous still fails when its element is there: obs-7 style and dom-4', () => {
    const med = { resourceType: 'Medication', id: 'm1', meta: { versionId: '2' }, code: { text: 'a' } };
    expect(invariantErrors({ resourceType: 'MedicationRequest', status: 'active', intent: 'order', subject: { reference: 'Patient/1' }, contained: [med], medicationReference: { reference: '#m1' } })).toEqual(['dom-4 @ MedicationRequest']);
  });
});
