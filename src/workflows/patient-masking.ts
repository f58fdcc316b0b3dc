import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Address, Coding, ContactPoint, Extension, Identifier, Patient } from 'fhir/r4.js';
import type { BeforeWriteHook } from '../storage/resource-store.js';
import { loadRegistrationSystems } from './patient-registration.js';
import { businessRule } from './scheduling-rules.js';

/**
 * Role-based masking of Patient data in responses (seed 004 FR-PM-002 "field-level access
 * control (role-based data masking)", issue 12 §1). Which role sees what is data: the `mask`
 * list of a role in conformance/smart-roles.json, with these fields:
 *
 * - `national-id`: Patient.identifier whose system is the national id (terminology/
 *   NamingSystem-national-id.json) or whose type is v2-0203 NI / NN / SS;
 * - `phone`: Patient.telecom and Patient.contact.telecom of system phone, sms or fax;
 * - `address`: Patient.address and Patient.contact.address.
 *
 * A masked element stays in place with its value withheld: the value is replaced by the
 * standard data-absent-reason extension `masked` (on the primitive `_value` of an identifier or
 * contact point; on the Address, which keeps `use` and `type` only), and the Patient carries the
 * security label v3-ObservationValue `MASKED`. A FHIR client thus sees that the patient has a
 * phone or a national id the reader may not see (a form can show "hidden") instead of
 * concluding there is none, and every FHIR parser reads the resource (it stays valid R4).
 *
 * Applied on every response path that carries Patients (read, vread, search with _include /
 * _revinclude, history, Bundle responses, $everything, $match, $fuzzy-search, $register-csv) at
 * the one place bodies are rendered: src/http/respond.ts `sendResult`.
 */

export type MaskField = 'national-id' | 'phone' | 'address';
const FIELDS: readonly MaskField[] = ['national-id', 'phone', 'address'];

export const DATA_ABSENT_REASON = 'http://hl7.org/fhir/StructureDefinition/data-absent-reason';
export const MASKED_LABEL: Coding = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'MASKED', display: 'masked' };
const MASKED_EXTENSION: Extension = { url: DATA_ABSENT_REASON, valueCode: 'masked' };
const NATIONAL_ID_TYPES = new Set(['NI', 'NN', 'SS']);
const PHONE_SYSTEMS = new Set(['phone', 'sms', 'fax']);

const ROOT = resolve(import.meta.dirname, import.meta.dirname.includes(join('dist', 'src')) ? '../../..' : '../..');

interface MaskTable {
  byRole: Map<string, ReadonlySet<MaskField>>;
  nationalIdSystem: string;
}

let table: MaskTable | undefined;

/** Immutable definition data (conformance/smart-roles.json, the national id NamingSystem), read once per process. */
function maskTable(): MaskTable {
  if (table) return table;
  const path = join(ROOT, 'conformance', 'smart-roles.json');
  const data = JSON.parse(readFileSync(path, 'utf8')) as { roles: Record<string, { mask?: unknown }> };
  const byRole = new Map<string, ReadonlySet<MaskField>>();
  for (const [role, definition] of Object.entries(data.roles)) {
    const list = definition.mask ?? [];
    if (!Array.isArray(list)) throw new Error(`${path}: roles.${role}.mask must be a list`);
    for (const f of list) if (!FIELDS.includes(f as MaskField)) throw new Error(`${path}: roles.${role}.mask: unknown field ${String(f)} (known: ${FIELDS.join(', ')})`);
    if (list.length > 0) byRole.set(role, new Set(list as MaskField[]));
  }
  const nationalIdSystem = loadRegistrationSystems(join(ROOT, 'terminology')).unique[0]!;
  table = { byRole, nationalIdSystem };
  return table;
}

/** The fields masked for a caller: none for system clients, patients and roles without a `mask`. */
export function maskedFields(auth: { role?: string; kind?: string } | undefined): ReadonlySet<MaskField> | undefined {
  if (!auth?.role || auth.kind === 'client') return undefined;
  return maskTable().byRole.get(auth.role);
}

function isNationalId(identifier: Identifier, system: string): boolean {
  if (identifier.system === system) return true;
  return (identifier.type?.coding ?? []).some((c) => c.system === 'http://terminology.hl7.org/CodeSystem/v2-0203' && NATIONAL_ID_TYPES.has(c.code ?? ''));
}

function maskedValue<T extends { value?: string; _value?: unknown }>(element: T): T {
  const { value: _drop, ...rest } = element;
  return { ...rest, _value: { extension: [MASKED_EXTENSION] } } as T;
}

function maskTelecom(list: ContactPoint[] | undefined, touched: { any: boolean }): ContactPoint[] | undefined {
  if (!list) return list;
  return list.map((c) => {
    if (!PHONE_SYSTEMS.has(c.system ?? '') || c.value === undefined) return c;
    touched.any = true;
    return maskedValue(c);
  });
}

function maskAddresses(list: Address[] | undefined, touched: { any: boolean }): Address[] | undefined {
  if (!list) return list;
  return list.map((a) => {
    touched.any = true;
    return { ...(a.use ? { use: a.use } : {}), ...(a.type ? { type: a.type } : {}), extension: [MASKED_EXTENSION] };
  });
}

/** A copy of `patient` with `fields` masked (the same object when nothing was there to mask). */
export function maskPatient(patient: Patient, fields: ReadonlySet<MaskField>): Patient {
  const touched = { any: false };
  const out: Patient = { ...patient };
  if (fields.has('national-id') && patient.identifier) {
    const system = maskTable().nationalIdSystem;
    out.identifier = patient.identifier.map((i) => {
      if (!isNationalId(i, system) || i.value === undefined) return i;
      touched.any = true;
      return maskedValue(i);
    });
  }
  if (fields.has('phone')) out.telecom = maskTelecom(patient.telecom, touched);
  if (fields.has('address')) out.address = maskAddresses(patient.address, touched);
  if (patient.contact && (fields.has('phone') || fields.has('address'))) {
    out.contact = patient.contact.map((c) => ({
      ...c,
      ...(fields.has('phone') && c.telecom ? { telecom: maskTelecom(c.telecom, touched) } : {}),
      ...(fields.has('address') && c.address ? { address: maskAddresses([c.address], touched)![0] } : {}),
    }));
  }
  if (!touched.any) return patient;
  for (const key of ['identifier', 'telecom', 'address', 'contact'] as const) if (out[key] === undefined) delete out[key];
  const security = patient.meta?.security ?? [];
  const labelled = security.some((s) => s.system === MASKED_LABEL.system && s.code === MASKED_LABEL.code);
  out.meta = { ...patient.meta, security: labelled ? security : [...security, MASKED_LABEL] };
  return out;
}

/**
 * `body` with every Patient in it masked (a resource, a Bundle's entries, nested Bundles of
 * batch responses, Parameters parts, contained resources); untouched parts are shared.
 */
export function maskBody<T>(body: T, fields: ReadonlySet<MaskField>): T {
  if (Array.isArray(body)) {
    let changed = false;
    const next = body.map((item: unknown) => {
      const masked = maskBody(item, fields);
      if (masked !== item) changed = true;
      return masked;
    });
    return (changed ? next : body) as T;
  }
  if (typeof body !== 'object' || body === null) return body;
  const record = body as Record<string, unknown>;
  let out: Record<string, unknown> = record;
  for (const [key, value] of Object.entries(record)) {
    if (typeof value !== 'object' || value === null) continue;
    const masked = maskBody(value, fields);
    if (masked !== value) {
      if (out === record) out = { ...record };
      out[key] = masked;
    }
  }
  return (out.resourceType === 'Patient' ? maskPatient(out as unknown as Patient, fields) : out) as T;
}

/** The stored JSON text of a Patient, masked (the same text when nothing was masked). */
export function maskPatientJson(json: string, fields: ReadonlySet<MaskField>): string {
  const patient = JSON.parse(json) as Patient;
  const masked = maskBody(patient, fields);
  return masked === patient ? json : JSON.stringify(masked);
}

/**
 * A masked copy written back (a client that read the Patient masked and saves it) would
 * replace the real national id, phone and address by nothing: refused (422) whatever the
 * writer, so masking never destroys data.
 */
export const refuseMaskedPatientWrites: BeforeWriteHook = (_tx, change) => {
  if (change.resourceType !== 'Patient' || !change.resource) return;
  const security = change.resource.meta?.security ?? [];
  if (!security.some((s) => s.system === MASKED_LABEL.system && s.code === MASKED_LABEL.code)) return;
  throw businessRule('invalid', 'This Patient was read with masked fields (security label MASKED); it cannot be stored. Read it with a role that sees every field, then update it.', ['Patient.meta.security']);
};
