import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { Bundle, Resource } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHARED_DATA, startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/**
 * Issue 17 §4: property-based fuzzing of what reaches the server from outside — patches, HL7 v2
 * frames, resources of every type a hospital rule looks at, and searches under a patient's
 * token. The property is always the same: never a 500, never a crash, a failed write changes
 * nothing, and nothing leaves the patient's compartment. (Searches, creates, history and
 * Bundles are fuzzed in hostile-input.test.ts and bundle-hostile.test.ts.)
 */
let t: TestApp;
let patientId: string;
let otherPatientId: string;

beforeAll(async () => {
  t = await startTestApp();
  const make = async (family: string) => {
    const res = await t.request({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family, given: ['Fuzz'] }], birthDate: '1980-02-03', telecom: [{ system: 'phone', value: '+84 90 000 0000' }] } });
    expect(res.statusCode, res.body).toBe(201);
    return (res.json() as { id: string }).id;
  };
  patientId = await make('Fuzzer');
  otherPatientId = await make('Bystander');
  for (const [subject, code] of [[patientId, '8867-4'], [otherPatientId, '8867-4'], [otherPatientId, '2339-0']] as const) {
    const res = await t.request({
      method: 'POST',
      url: '/fhir/Observation',
      payload: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code }] }, subject: { reference: `Patient/${subject}` }, effectiveDateTime: '2024-05-01T10:00:00Z', valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } },
    });
    expect(res.statusCode, res.body).toBe(201);
  }
});
afterAll(async () => t?.close());

const junk = fc.oneof(fc.constant(null), fc.integer(), fc.double(), fc.boolean(), fc.string({ maxLength: 12 }), fc.constant([]), fc.constant({}), fc.jsonValue({ maxDepth: 2 }));
const pointer = fc.oneof(
  fc.constantFrom('/active', '/name/0/family', '/name/-', '/name/0/given/0', '/birthDate', '/telecom/0/value', '/id', '/meta/versionId', '/resourceType', '/gender', '/extension', '/', '', '/name/99', '/~1', '/name/0/~0x'),
  fc.array(fc.string({ maxLength: 6 }), { maxLength: 4 }).map((parts) => '/' + parts.join('/')),
);

describe('PATCH fuzzing (JSON Patch and FHIRPath Patch)', () => {
  it('generated JSON Patch documents never give a 500, and a refused patch changes nothing', async () => {
    const operation = fc.record(
      { op: fc.oneof(fc.constantFrom('add', 'remove', 'replace', 'move', 'copy', 'test'), junk), path: fc.oneof(pointer, junk), from: pointer, value: junk },
      { requiredKeys: ['op'] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.array(operation, { maxLength: 4 }), junk), async (document) => {
        const before = await t.request({ method: 'GET', url: `/fhir/Patient/${patientId}` });
        const res = await t.request({ method: 'PATCH', url: `/fhir/Patient/${patientId}`, payload: JSON.stringify(document), headers: { 'content-type': 'application/json-patch+json' } });
        expect(res.statusCode, res.body.slice(0, 300)).toBeLessThan(500);
        if (res.statusCode >= 400) {
          expect(res.json().resourceType).toBe('OperationOutcome');
          const after = await t.request({ method: 'GET', url: `/fhir/Patient/${patientId}` });
          expect(after.json().meta.versionId).toBe(before.json().meta.versionId);
        }
      }),
      { numRuns: 150 },
    );
  }, 300_000);

  it('generated FHIRPath Patch Parameters never give a 500', async () => {
    const part = fc.record(
      {
        name: fc.constantFrom('type', 'path', 'name', 'value', 'index', 'source', 'destination', 'other'),
        valueCode: fc.constantFrom('add', 'insert', 'delete', 'replace', 'move', 'nope'),
        valueString: fc.oneof(fc.constantFrom('Patient', 'Patient.name', 'Patient.name[0].family', 'Patient.active', 'Patient.telecom.where(system=\'phone\')', 'Patient.name.given.first()', 'Patient.(', "Patient.name.where(1/0)", ''), fc.string({ maxLength: 30 })),
        valueInteger: fc.integer({ min: -3, max: 5 }),
        valueBoolean: fc.boolean(),
      },
      { requiredKeys: ['name'] },
    );
    const parameters = fc.record({ resourceType: fc.constant('Parameters'), parameter: fc.array(fc.record({ name: fc.constantFrom('operation', 'op', ''), part: fc.array(part, { maxLength: 5 }) }), { maxLength: 3 }) });
    await fc.assert(
      fc.asyncProperty(parameters, async (document) => {
        const res = await t.request({ method: 'PATCH', url: `/fhir/Patient/${patientId}`, payload: JSON.stringify(document), headers: { 'content-type': 'application/fhir+json' } });
        expect(res.statusCode, res.body.slice(0, 300)).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
  }, 300_000);
});

/** Real v2 messages of many vendors, as templates for mutation. */
function realMessages(): string[] {
  const dir = join(SHARED_DATA, 'hl7v2');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.hl7'))
    .sort()
    .slice(0, 60)
    .map((f) => readFileSync(join(dir, f), 'latin1').split(/\r\n|\n|\r/).filter(Boolean).join('\r'))
    .filter((m) => m.startsWith('MSH'));
}

describe('HL7 v2 frame fuzzing', () => {
  it('mutated real messages and generated frames get an ACK (AA / AE / AR) or a 4xx, never a 500', async () => {
    const messages = realMessages();
    expect(messages.length).toBeGreaterThan(20);
    const mutation = fc.oneof(
      // Cut the message anywhere.
      fc.tuple(fc.constant('cut'), fc.nat()),
      // Replace a character with a separator or a control character.
      fc.tuple(fc.constant('poke'), fc.nat(), fc.constantFrom('|', '^', '~', '\\', '&', '\r', '\u0000', '\u000b', '\u001c', 'é', '\ud800')),
      // Duplicate a segment.
      fc.tuple(fc.constant('dup'), fc.nat()),
      // Drop a segment.
      fc.tuple(fc.constant('drop'), fc.nat()),
    );
    const frame = fc.oneof(
      { weight: 5, arbitrary: fc.tuple(fc.constantFrom(...messages), fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([m, ms]) => ms.reduce(mutate, m)) },
      { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((s) => `MSH|^~\\&|${s}`) },
      { weight: 1, arbitrary: fc.constantFrom('MSH', 'MSH|', 'MSH|^~\\&', 'MSH|^~\\&|||||||ORU^R01|1|P|2.5', 'FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|0', 'BHS|^~\\&\rMSH|^~\\&|A|B|C|D|20240101||ADT^A01|X|P|2.3\rBTS|1', '\r\r\r', 'PID|1||x') },
    );
    await fc.assert(
      fc.asyncProperty(frame, async (message) => {
        const res = await t.server.http.inject({ method: 'POST', url: '/hl7v2', payload: message, headers: { authorization: `Bearer ${t.token}`, 'content-type': 'x-application/hl7-v2+er7' } });
        expect(res.statusCode, `${JSON.stringify(message.slice(0, 120))} → ${res.body.slice(0, 300)}`).toBeLessThan(500);
        // A message gets its ACK; a batch gets a batch ACK (BTS with the count of ACKs in it).
        if (res.statusCode === 200) expect(res.body).toMatch(res.headers['x-hl7-batch-messages'] !== undefined ? /^BTS\|\d+/m : /^MSA\|(AA|AE|AR|CA|CE|CR)(\||$)/m);
      }),
      { numRuns: 200 },
    );
  }, 300_000);
});

function mutate(message: string, m: [string, number, string?] | [string, number]): string {
  const segments = message.split('\r');
  switch (m[0]) {
    case 'cut':
      return message.slice(0, 3 + (m[1] % Math.max(1, message.length - 3)));
    case 'poke': {
      const at = 3 + (m[1] % Math.max(1, message.length - 3));
      return message.slice(0, at) + (m[2] ?? '|') + message.slice(at + 1);
    }
    case 'dup': {
      const k = m[1] % segments.length;
      return [...segments.slice(0, k + 1), segments[k], ...segments.slice(k + 1)].join('\r');
    }
    default: {
      const k = 1 + (m[1] % Math.max(1, segments.length - 1));
      return segments.filter((_, i) => i !== k).join('\r');
    }
  }
}

/**
 * Types that hospital rules inspect before commit (front desk, clinical, prescribing, pharmacy,
 * lab, billing, terminology, subscriptions): generated near-valid resources must be refused
 * with a 4xx or stored — a rule must never throw on a shape it did not expect.
 */
const RULE_TYPES: Record<string, Record<string, unknown>> = {
  Patient: { name: [{ family: 'X' }] },
  Appointment: { status: 'booked', participant: [{ actor: { reference: 'Patient/PID' }, status: 'accepted' }], start: '2030-01-01T10:00:00Z', end: '2030-01-01T10:30:00Z' },
  Slot: { status: 'free', schedule: { reference: 'Schedule/none' }, start: '2030-01-01T10:00:00Z', end: '2030-01-01T10:30:00Z' },
  Schedule: { actor: [{ reference: 'Practitioner/none' }] },
  PractitionerRole: { availableTime: [{ daysOfWeek: ['mon'], availableStartTime: '09:00:00', availableEndTime: '12:00:00' }] },
  Encounter: { status: 'in-progress', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP' }, subject: { reference: 'Patient/PID' } },
  EpisodeOfCare: { status: 'active', patient: { reference: 'Patient/PID' } },
  Location: { physicalType: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/location-physical-type', code: 'bd' }] }, partOf: { reference: 'Location/none' } },
  Composition: { status: 'preliminary', type: { coding: [{ system: 'http://loinc.org', code: '11506-3' }] }, subject: { reference: 'Patient/PID' }, date: '2024-01-01', author: [{ reference: 'Practitioner/none' }], title: 'Note' },
  Observation: { status: 'final', category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }], code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: 'Patient/PID' }, valueQuantity: { value: 80, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } },
  AllergyIntolerance: { patient: { reference: 'Patient/PID' }, code: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '7980' }] } },
  MedicationRequest: { status: 'active', intent: 'order', subject: { reference: 'Patient/PID' }, medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '313782' }] }, dosageInstruction: [{ doseAndRate: [{ doseQuantity: { value: 500, unit: 'mg' } }], timing: { repeat: { frequency: 3, period: 1, periodUnit: 'd' } } }] },
  MedicationDispense: { status: 'completed', subject: { reference: 'Patient/PID' }, medicationReference: { reference: 'Medication/none' }, quantity: { value: 2 }, authorizingPrescription: [{ reference: 'MedicationRequest/none' }] },
  Medication: { code: { text: 'x' }, batch: { lotNumber: 'L1', expirationDate: '2030-01-01' } },
  SupplyDelivery: { status: 'completed', suppliedItem: { quantity: { value: 10 }, itemReference: { reference: 'Medication/none' } } },
  Task: { status: 'requested', intent: 'order', focus: { reference: 'MedicationRequest/none' } },
  ServiceRequest: { status: 'active', intent: 'order', priority: 'stat', subject: { reference: 'Patient/PID' }, code: { coding: [{ system: 'http://loinc.org', code: '2339-0' }] } },
  Specimen: { subject: { reference: 'Patient/PID' }, request: [{ reference: 'ServiceRequest/none' }] },
  DiagnosticReport: { status: 'final', code: { text: 'panel' }, subject: { reference: 'Patient/PID' }, result: [{ reference: 'Observation/none' }] },
  ChargeItem: { status: 'billable', code: { text: 'x' }, subject: { reference: 'Patient/PID' } },
  Invoice: { status: 'issued', subject: { reference: 'Patient/PID' }, totalGross: { value: 10, currency: 'VND' } },
  PaymentReconciliation: { status: 'active', created: '2024-01-01', paymentDate: '2024-01-01', paymentAmount: { value: 5, currency: 'VND' } },
  Coverage: { status: 'active', beneficiary: { reference: 'Patient/PID' }, payor: [{ reference: 'Organization/none' }] },
  Claim: { status: 'active', type: { text: 'x' }, use: 'claim', patient: { reference: 'Patient/PID' }, created: '2024-01-01', provider: { reference: 'Organization/none' }, priority: { text: 'normal' }, insurance: [], total: { value: 1, currency: 'VND' } },
  ClaimResponse: { status: 'active', type: { text: 'x' }, use: 'claim', patient: { reference: 'Patient/PID' }, created: '2024-01-01', insurer: { reference: 'Organization/none' }, outcome: 'partial' },
  Provenance: { target: [{ reference: 'Encounter/none' }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { reference: 'Practitioner/none' } }] },
  CodeSystem: { url: 'http://example.org/fuzz', status: 'active', content: 'complete', concept: [{ code: 'a' }] },
  ValueSet: { url: 'http://example.org/fuzz-vs', status: 'active', compose: { include: [{ system: 'http://example.org/fuzz' }] } },
  Subscription: { status: 'requested', reason: 'x', criteria: 'Observation?code=1', channel: { type: 'rest-hook', endpoint: 'https://example.org/hook' } },
  Communication: { status: 'completed', subject: { reference: 'Patient/PID' }, payload: [{ contentString: 'hello' }] },
  Flag: { status: 'active', code: { text: 'x' }, subject: { reference: 'Patient/PID' } },
};

describe('resources of every rule-bearing type', () => {
  it('generated near-valid resources are stored or refused with a 4xx OperationOutcome, never a 500', async () => {
    const types = Object.keys(RULE_TYPES);
    // Element names the rules read, given odd values; plus a field of the skeleton removed.
    const field = fc.constantFrom(
      'status', 'subject', 'patient', 'participant', 'start', 'end', 'slot', 'class', 'location', 'period', 'code', 'category', 'value', 'valueQuantity',
      'component', 'interpretation', 'referenceRange', 'dosageInstruction', 'dispenseRequest', 'medicationReference', 'medicationCodeableConcept', 'quantity',
      'authorizingPrescription', 'batch', 'extension', 'identifier', 'priority', 'result', 'performer', 'lineItem', 'totalGross', 'totalNet', 'detail',
      'item', 'adjudication', 'payment', 'partOf', 'physicalType', 'operationalStatus', 'availableTime', 'notAvailable', 'section', 'date', 'author',
      'focus', 'for', 'target', 'signature', 'reaction', 'criticality', 'accessionIdentifier', 'collection', 'issued', 'effectiveDateTime', 'birthDate', 'telecom', 'address',
    );
    const value = fc.oneof(junk, fc.constantFrom({ reference: 'Patient/PID' }, { reference: '' }, { reference: 'Nope/1' }, [{ reference: 'Patient/PID' }], [{}], { value: -1 }, { value: 1e308 }, '9999-99-99', '2024-02-30T25:61:00Z', [null], { coding: [{}] }));
    const generated = fc.record({
      type: fc.constantFrom(...types),
      changes: fc.array(fc.tuple(field, value), { maxLength: 4 }),
      drop: fc.option(fc.nat(), { nil: undefined }),
      method: fc.constantFrom('POST', 'PUT'),
    });
    await fc.assert(
      fc.asyncProperty(generated, async ({ type, changes, drop, method }) => {
        const skeleton = JSON.parse(JSON.stringify(RULE_TYPES[type]).replaceAll('Patient/PID', `Patient/${patientId}`)) as Record<string, unknown>;
        const keys = Object.keys(skeleton);
        if (drop !== undefined && keys.length > 0) delete skeleton[keys[drop % keys.length]];
        for (const [name, v] of changes) skeleton[name] = JSON.parse(JSON.stringify(v).replaceAll('Patient/PID', `Patient/${patientId}`));
        const id = `fz-${type.toLowerCase()}-${Math.floor(Math.random() * 1e9)}`;
        const body = { resourceType: type, ...(method === 'PUT' ? { id } : {}), ...skeleton };
        const res = await t.request({ method, url: method === 'PUT' ? `/fhir/${type}/${id}` : `/fhir/${type}`, payload: JSON.stringify(body), headers: { 'content-type': 'application/fhir+json' } });
        expect(res.statusCode, `${method} ${type} ${JSON.stringify(body).slice(0, 300)} → ${res.body.slice(0, 400)}`).toBeLessThan(500);
        if (res.statusCode >= 400) expect(res.json().resourceType).toBe('OperationOutcome');
      }),
      { numRuns: 400 },
    );
  }, 600_000);
});

describe("no leak out of a patient's compartment", () => {
  it("generated searches with a patient's token return only that patient's data", async () => {
    const { token } = await signInAs(t, 'PATIENT', `Patient/${patientId}`);
    const search = fc.record({
      type: fc.constantFrom('Observation', 'Patient', 'Encounter', 'Condition', 'MedicationRequest', 'Appointment', 'DiagnosticReport', 'AllergyIntolerance'),
      params: fc.array(
        fc.tuple(
          fc.constantFrom('_include', '_revinclude', '_has:Observation:subject:code', 'subject', 'patient', 'code', '_id', 'subject:Patient.name', 'patient.family', '_list', '_type', 'general-practitioner', '_filter', '_elements', '_summary'),
          fc.constantFrom('*', 'Observation:subject', 'Observation:patient', 'Patient:link', '8867-4', '2339-0', `Patient/${otherPatientId}`, otherPatientId, patientId, 'Bystander', 'Fuzzer', 'subject eq Patient/' + otherPatientId, 'count', 'true'),
        ),
        { maxLength: 3 },
      ),
    });
    await fc.assert(
      fc.asyncProperty(search, async ({ type, params }) => {
        const query = params.map(([n, v]) => `${encodeURIComponent(n)}=${encodeURIComponent(v)}`).join('&');
        const res = await t.server.http.inject({ method: 'GET', url: `/fhir/${type}?${query}`, headers: { authorization: `Bearer ${token}` } });
        expect(res.statusCode, res.body.slice(0, 300)).toBeLessThan(500);
        if (res.statusCode !== 200) return;
        const bundle = res.json() as Bundle;
        for (const entry of bundle.entry ?? []) {
          const r = entry.resource as Resource | undefined;
          if (!r || r.resourceType === 'OperationOutcome') continue;
          const text = JSON.stringify(r);
          expect(r.resourceType === 'Patient' ? r.id : patientId, `${type}?${query}`).toBe(patientId);
          expect(text.includes(`Patient/${otherPatientId}`), `${type}?${query} leaked ${r.resourceType}/${r.id}`).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  }, 300_000);
});
