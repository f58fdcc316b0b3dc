import type { Medication, MedicationDispense, MedicationRequest, Parameters, ParametersParameter } from 'fhir/r4.js';
import { expect } from 'vitest';
import type { TestApp } from '../support/test-app.js';

/** Shared by the pharmacy tests (issue 13 §4, src/workflows/pharmacy/). */
export const SD = 'https://fhir.hospital.example.org/StructureDefinition';
export const BATCH = `${SD}/pharmacy-batch`;
export const OVERRIDE = `${SD}/dispense-override`;
export const STOCK = `${SD}/medication-stock-quantity`;
export const REORDER = `${SD}/medication-reorder-level`;
export const EXPIRING = `${SD}/medication-batch-expiring`;

export const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);

export async function create<T extends { id?: string }>(t: TestApp, resource: { resourceType: string; [k: string]: unknown }, token?: string): Promise<T> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T;
}

export async function read<T>(t: TestApp, type: string, id: string): Promise<T> {
  const res = await t.request({ method: 'GET', url: `/fhir/${type}/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

export async function medication(t: TestApp, name: string, reorderLevel?: number): Promise<string> {
  const m = await create<Medication>(t, {
    resourceType: 'Medication',
    status: 'active',
    code: { text: name },
    ...(reorderLevel !== undefined ? { extension: [{ url: REORDER, valueQuantity: { value: reorderLevel } }] } : {}),
  });
  return m.id!;
}

export async function receive(t: TestApp, medicationId: string, lot: string, expiry: string, quantity: number): Promise<string> {
  const d = await create<{ id?: string }>(t, {
    resourceType: 'SupplyDelivery',
    status: 'completed',
    suppliedItem: { itemReference: { reference: `Medication/${medicationId}` }, quantity: { value: quantity, unit: 'tablet' } },
    extension: [{ url: BATCH, extension: [{ url: 'lotNumber', valueString: lot }, { url: 'expirationDate', valueDate: expiry }] }],
    occurrenceDateTime: new Date().toISOString(),
  });
  return d.id!;
}

export async function patient(t: TestApp, family: string): Promise<string> {
  return (await create<{ id?: string }>(t, { resourceType: 'Patient', name: [{ family, given: ['Van'] }] })).id!;
}

export async function prescription(t: TestApp, patientId: string, medicationId: string, quantity: number | undefined, extra: Partial<MedicationRequest> = {}): Promise<string> {
  const r = await create<MedicationRequest>(t, {
    resourceType: 'MedicationRequest',
    status: 'active',
    intent: 'order',
    subject: { reference: `Patient/${patientId}` },
    medicationReference: { reference: `Medication/${medicationId}` },
    authoredOn: new Date().toISOString(),
    ...(quantity !== undefined ? { dispenseRequest: { quantity: { value: quantity, unit: 'tablet' } } } : {}),
    ...extra,
  });
  return r.id!;
}

export function dispenseBody(patientId: string, medicationId: string, requestId: string | undefined, quantity: number, extra: Partial<MedicationDispense> = {}): MedicationDispense {
  return {
    resourceType: 'MedicationDispense',
    status: 'completed',
    subject: { reference: `Patient/${patientId}` },
    medicationReference: { reference: `Medication/${medicationId}` },
    ...(requestId ? { authorizingPrescription: [{ reference: `MedicationRequest/${requestId}` }] } : {}),
    quantity: { value: quantity, unit: 'tablet' },
    whenHandedOver: new Date().toISOString(),
    ...extra,
  };
}

export function postDispense(t: TestApp, token: string, body: MedicationDispense) {
  return t.request({ method: 'POST', url: '/fhir/MedicationDispense', payload: body, headers: { authorization: `Bearer ${token}` } });
}

export function batchesTaken(d: MedicationDispense): Array<{ lot?: string; expiry?: string; quantity?: number }> {
  return (d.extension ?? [])
    .filter((e) => e.url === BATCH)
    .map((e) => ({
      lot: e.extension?.find((x) => x.url === 'lotNumber')?.valueString,
      expiry: e.extension?.find((x) => x.url === 'expirationDate')?.valueDate,
      quantity: e.extension?.find((x) => x.url === 'quantity')?.valueQuantity?.value,
    }));
}

export async function stock(t: TestApp, medicationId: string): Promise<{ total: number; batches: Array<Record<string, unknown>>; movements: Array<Record<string, unknown>> }> {
  const res = await t.request({ method: 'GET', url: `/fhir/Medication/${medicationId}/$stock` });
  expect(res.statusCode, res.body).toBe(200);
  const p = res.json() as Parameters;
  const flat = (x: ParametersParameter) => Object.fromEntries((x.part ?? []).map((part) => [part.name, part.valueString ?? part.valueDate ?? part.valueDecimal ?? part.valueBoolean ?? part.valueCode ?? part.valueReference?.reference ?? part.valueDateTime]));
  return {
    total: p.parameter!.find((x) => x.name === 'total')!.valueDecimal!,
    batches: p.parameter!.filter((x) => x.name === 'batch').map(flat),
    movements: p.parameter!.filter((x) => x.name === 'movement').map(flat),
  };
}

export function stockExtension(m: Medication): number | undefined {
  return m.extension?.find((e) => e.url === STOCK)?.valueQuantity?.value;
}

/** Text shown by an uncompressed pdfkit PDF, one line per TJ operator (test/support/pdf-text.ts). */
export { pdfText } from '../support/pdf-text.js';
