import type { ChargeItem, Coverage, Encounter, FhirResource, OperationOutcome, Organization, Parameters } from 'fhir/r4.js';
import { expect } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { signInAs } from './smart-helpers.js';

/** Shared by workflows-billing*.test.ts and workflows-insurance*.test.ts. */

export interface Res {
  statusCode: number;
  body: string;
  json(): unknown;
  headers: Record<string, unknown>;
  rawPayload: Buffer;
}

export async function create<T>(t: TestApp, resource: { resourceType: string; [key: string]: unknown } | FhirResource, token?: string): Promise<T & { id: string }> {
  const res = await t.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}) });
  expect(res.statusCode, res.body).toBe(201);
  return res.json() as T & { id: string };
}

export async function read<T>(t: TestApp, type: string, id: string): Promise<T> {
  const res = await t.request({ method: 'GET', url: `/fhir/${type}/${id}` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as T;
}

export async function op(t: TestApp, method: 'GET' | 'POST', url: string, token?: string, parameters?: Parameters['parameter']): Promise<Res> {
  return t.request({
    method,
    url,
    ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}),
    ...(method === 'POST' ? { payload: { resourceType: 'Parameters', parameter: parameters ?? [] } } : {}),
  }) as Promise<Res>;
}

export function expectBusinessRule(res: { statusCode: number; body: string }, status: number, text: RegExp): void {
  expect(res.statusCode, res.body).toBe(status);
  const outcome = JSON.parse(res.body) as OperationOutcome;
  expect(outcome.issue[0]?.code).toBe('business-rule');
  expect(outcome.issue[0]?.diagnostics).toMatch(text);
}

/** A Money value of a Parameters output. */
export function moneyOf(parameters: Parameters, name: string): number | undefined {
  return parameters.parameter?.find((p) => p.name === name)?.valueMoney?.value;
}

export async function chargesOf(t: TestApp, patient: string): Promise<ChargeItem[]> {
  const res = await t.request({ method: 'GET', url: `/fhir/ChargeItem?subject=Patient/${patient}&_count=100` });
  expect(res.statusCode, res.body).toBe(200);
  return ((res.json() as { entry?: Array<{ resource: ChargeItem }> }).entry ?? []).map((e) => e.resource);
}

/** An outpatient visit taken to finished (a consultation charge). */
export async function finishedVisit(t: TestApp, patient: string, extra: Partial<Encounter> = {}): Promise<string> {
  const encounter = await create<Encounter>(t, {
    resourceType: 'Encounter',
    status: 'in-progress',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: { reference: `Patient/${patient}` },
    period: { start: new Date(Date.now() - 3_600_000).toISOString() },
    ...extra,
  });
  const res = await t.request({ method: 'PUT', url: `/fhir/Encounter/${encounter.id}`, payload: { ...encounter, status: 'finished', period: { ...encounter.period, end: new Date().toISOString() } } });
  expect(res.statusCode, res.body).toBe(200);
  return encounter.id;
}

/** The text a pdfkit PDF shows (uncompressed content streams; embedded fonts read through their ToUnicode maps). */
/** An app with an insurer Organization and the accountant's and the insurer's tokens (workflows-insurance*.test.ts). */
export async function startInsuranceApp(insurerName: string, accountantRef: string): Promise<{ t: TestApp; accountant: string; insurer: string; insurerOrg: string }> {
  const t = await startTestApp();
  const insurerOrg = (await create<Organization>(t, { resourceType: 'Organization', name: insurerName, type: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/organization-type', code: 'ins' }] }] })).id;
  const accountant = (await signInAs(t, 'ACCOUNTANT', accountantRef)).token;
  const insurer = (await signInAs(t, 'INSURANCE_PROVIDER', `Organization/${insurerOrg}`)).token;
  return { t, accountant, insurer, insurerOrg };
}

const COPAY_TYPE = 'http://terminology.hl7.org/CodeSystem/coverage-copay-type';

/** A Coverage.costToBeneficiary fixed co-payment per claim item (coverage-copay-type `copay`), in VND. */
export const copay = (vnd: number) => ({ type: { coding: [{ system: COPAY_TYPE, code: 'copay' }] }, valueMoney: { value: vnd, currency: 'VND' } });

/** A Coverage.costToBeneficiary co-insurance in percent (coverage-copay-type `copaypct`). */
export const copaypct = (percent: number) => ({ type: { coding: [{ system: COPAY_TYPE, code: 'copaypct' }] }, valueQuantity: { value: percent } });

/** An active Coverage of `patient` paid by `insurerOrg`, in force 2026–2099; `fields` add to it or replace its parts. */
export async function createCoverage(t: TestApp, insurerOrg: string, patient: string, fields: Partial<Coverage> = {}): Promise<string> {
  return (
    await create<Coverage>(t, {
      resourceType: 'Coverage',
      status: 'active',
      beneficiary: { reference: `Patient/${patient}` },
      payor: [{ reference: `Organization/${insurerOrg}` }],
      period: { start: '2026-01-01', end: '2099-12-31' },
      ...fields,
    })
  ).id;
}

export { pdfText } from '../support/pdf-text.js';
