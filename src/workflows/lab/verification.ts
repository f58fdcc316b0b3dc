import { AsyncLocalStorage } from 'node:async_hooks';
import type { DiagnosticReport, Extension, Observation, PractitionerRole, Reference } from 'fhir/r4.js';
import type { AuthContext } from '../../auth/token-service.js';
import { scopesAllow } from '../../auth/scopes.js';
import { errors } from '../../fhir/errors.js';
import { referencing } from '../../storage/referencing.js';
import type { BeforeWriteHook, ResourceStore, StoreTransaction } from '../../storage/resource-store.js';
import { currentWriter } from '../../subscriptions/write-context.js';
import { businessRule, replacedVersion } from '../scheduling-rules.js';
import { LAB_TEST_SYSTEM, catalogCode } from './catalog.js';

/**
 * Dual verification and immutability of laboratory results (seed 004 FR-LAB-002, issue 14 §2).
 *
 * A result of the catalogue (Observation or DiagnosticReport coded with the lab-test CodeSystem)
 * becomes `final` only through `POST [type]/[id]/$verify`: first the technical verification by a
 * LAB_TECHNICIAN (or a DOCTOR), then the medical one by a pathologist — a DOCTOR whose fhirUser
 * Practitioner has an active PractitionerRole coded PATHOLOGIST_ROLE — who must be another user
 * (another login and another fhirUser). Each verification is recorded on the resource
 * as a `lab-verification` extension (step, verifier, user, time); the pathologist also becomes the
 * report's `resultsInterpreter`. Verifying a report verifies its results in the same transaction.
 *
 * Before commit, on every write path:
 * - the verification extensions change only inside `$verify` (409);
 * - a signed-in user cannot write an unverified result as final / amended / corrected (409: use
 *   $verify); an analyzer or other system writer (HL7 v2 ORU, client credentials, import) that
 *   sends one has it stored as `preliminary`: it still needs the two human verifications;
 * - a verified result is immutable: the only new versions are `corrected` / `amended` /
 *   `entered-in-error` ones by a signed-in user, with a new `lab-correction-reason`; deleting it
 *   is refused (409).
 */

export const VERIFICATION_URL = 'https://fhir.hospital.example.org/StructureDefinition/lab-verification';
export const CORRECTION_REASON_URL = 'https://fhir.hospital.example.org/StructureDefinition/lab-correction-reason';
/** PractitionerRole.code of the practitioners who may make the second verification (terminology/CodeSystem-lab-role.json). */
export const PATHOLOGIST_ROLE = { system: 'https://fhir.hospital.example.org/CodeSystem/lab-role', code: 'pathologist' } as const;
const RELEASED = ['final', 'amended', 'corrected', 'appended'];
const CORRECTIONS = ['corrected', 'amended', 'entered-in-error'];

type LabResult = Observation | DiagnosticReport;
export type VerificationStep = 'technician' | 'pathologist';

export interface Verification {
  step: VerificationStep;
  verifier?: string;
  user: string;
  time: string;
}

const verifying = new AsyncLocalStorage<true>();

function isLabResult(r: unknown): r is LabResult {
  const resource = r as LabResult | undefined;
  return (resource?.resourceType === 'Observation' || resource?.resourceType === 'DiagnosticReport') && catalogCode(resource.code, LAB_TEST_SYSTEM) !== undefined;
}

function verificationExtensions(r: LabResult | undefined): Extension[] {
  return (r?.extension ?? []).filter((e) => e.url === VERIFICATION_URL);
}

export function verificationsOf(r: LabResult | undefined): Verification[] {
  return verificationExtensions(r).map((e) => {
    const part = (url: string) => e.extension?.find((x) => x.url === url);
    return {
      step: part('step')?.valueCode as VerificationStep,
      verifier: part('verifier')?.valueReference?.reference,
      user: part('user')?.valueString ?? '',
      time: part('time')?.valueDateTime ?? '',
    };
  });
}

function verificationExtension(v: Verification): Extension {
  return {
    url: VERIFICATION_URL,
    extension: [
      { url: 'step', valueCode: v.step },
      ...(v.verifier ? [{ url: 'verifier', valueReference: { reference: v.verifier } }] : []),
      { url: 'user', valueString: v.user },
      { url: 'time', valueDateTime: v.time },
    ],
  };
}

function correctionReason(r: LabResult | undefined): string | undefined {
  return r?.extension?.find((e) => e.url === CORRECTION_REASON_URL)?.valueString?.trim() || undefined;
}

/** Whether what was verified (the value, or the report's results and conclusion) differs between two versions. */
function resultChanged(before: LabResult | undefined, current: LabResult): boolean {
  const verified = (r: LabResult | undefined): unknown => {
    if (!r) return undefined;
    if (r.resourceType === 'DiagnosticReport') return [r.result, r.conclusion, r.conclusionCode, r.presentedForm];
    return Object.entries(r).filter(([k]) => k.startsWith('value') || k === 'dataAbsentReason' || k === 'component');
  };
  return canonical(verified(before)) !== canonical(verified(current));
}

/** JSON with object keys sorted: stored versions come back from jsonb with their keys reordered. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

export const labVerificationHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType !== 'Observation' && change.resourceType !== 'DiagnosticReport') return;
  const type = change.resourceType;
  if (!change.resource) {
    const gone = change.previous?.json ? (JSON.parse(change.previous.json) as LabResult) : undefined;
    if (isLabResult(gone) && RELEASED.includes(gone.status)) {
      throw businessRule('conflict', `A verified laboratory result cannot be deleted; send a corrected version or mark it entered-in-error with a reason.`, [type]);
    }
    return;
  }
  const current = change.resource as LabResult;
  if (!isLabResult(current)) return;
  const before = await replacedVersion<LabResult>(tx, change);
  if (verifying.getStore() === true) return;
  const records = verificationExtensions(current);
  const recorded = verificationExtensions(before);
  let next: LabResult = current;
  if (records.length === 0 && recorded.length > 0) {
    // A writer need not echo the records: they are kept, unless the result itself changed before
    // the second verification, which then starts again from the technician's.
    const released = before !== undefined && RELEASED.includes(before.status);
    if (released || !resultChanged(before, current)) next = { ...current, extension: [...(current.extension ?? []), ...recorded] } as LabResult;
  } else if (canonical(records) !== canonical(recorded)) {
    throw businessRule('conflict', 'Verifications of laboratory results are recorded only by the $verify operation.', [`${type}.extension`]);
  } else if (recorded.length > 0 && !RELEASED.includes(before?.status ?? '') && resultChanged(before, current)) {
    next = { ...current, extension: (current.extension ?? []).filter((e) => e.url !== VERIFICATION_URL) } as LabResult;
  }
  change.resource = next;
  const writer = currentWriter();
  if (before && RELEASED.includes(before.status)) {
    if (!CORRECTIONS.includes(current.status)) {
      throw businessRule('conflict', `This result is verified and cannot be changed; send a new version with status corrected or amended and a correction reason.`, [`${type}.status`]);
    }
    const reason = correctionReason(current);
    if (!reason || reason === correctionReason(before)) {
      throw businessRule('invalid', `A correction of a verified result needs its reason (extension ${CORRECTION_REASON_URL}).`, [`${type}.extension`]);
    }
    if (writer?.kind !== 'user') {
      throw businessRule('conflict', 'Verified results are corrected by laboratory staff signed in, not by an analyzer or a system client.', [`${type}.status`]);
    }
    return;
  }
  if (RELEASED.includes(current.status)) {
    if (writer?.kind === 'user') {
      throw businessRule('conflict', `A laboratory result becomes ${current.status} only after two verifications ($verify): a technician, then a pathologist.`, [`${type}.status`]);
    }
    // An analyzer's "final" is the instrument's: the result waits for the two human verifications.
    change.resource = { ...next, status: 'preliminary' } as LabResult;
  }
};

/**
 * Who may verify, by login role: the technical (first) verification a signed-in LAB_TECHNICIAN
 * or DOCTOR, the medical (second) one a signed-in DOCTOR (who must also be a pathologist:
 * `checkPathologist`).
 */
function checkVerifier(auth: AuthContext, step: VerificationStep): void {
  if (auth.kind !== 'user') throw errors.forbidden('results are verified by a signed-in technician or pathologist, not by a client');
  const allowed = step === 'technician' ? ['LAB_TECHNICIAN', 'DOCTOR'] : ['DOCTOR'];
  if (!allowed.includes(auth.role ?? '')) {
    throw errors.forbidden(step === 'technician' ? 'the first (technical) verification is made by a LAB_TECHNICIAN or DOCTOR' : 'the second verification is made by a pathologist (a DOCTOR with a pathologist PractitionerRole)');
  }
}

function inPeriod(role: PractitionerRole, day: string): boolean {
  const start = role.period?.start?.slice(0, 10);
  const end = role.period?.end?.slice(0, 10);
  return (!start || start <= day) && (!end || end >= day);
}

/**
 * The second verification is the pathologist's: the user's fhirUser is a Practitioner with a
 * PractitionerRole (not `active: false`, `period` covering today) whose `code` carries
 * PATHOLOGIST_ROLE. Any DOCTOR is not enough (seed 004 FR-LAB-002 "technician + pathologist").
 */
async function checkPathologist(tx: StoreTransaction, auth: AuthContext): Promise<void> {
  const practitioner = /^Practitioner\/([A-Za-z0-9\-.]{1,64})$/.exec(auth.fhirUser ?? '')?.[1];
  const refusal = `the second verification is made by a pathologist: ${auth.fhirUser ?? 'this user'} needs an active PractitionerRole coded ${PATHOLOGIST_ROLE.system}|${PATHOLOGIST_ROLE.code}`;
  if (!practitioner) throw errors.forbidden(refusal);
  const today = new Date().toISOString().slice(0, 10);
  const roles = (await referencing(await tx.executor(), 'PractitionerRole', 'practitioner', 'Practitioner', practitioner)).map((r) => JSON.parse(r.json) as PractitionerRole);
  const privileged = roles.some(
    (role) => role.active !== false && inPeriod(role, today) && (role.code ?? []).some((c) => (c.coding ?? []).some((k) => k.system === PATHOLOGIST_ROLE.system && k.code === PATHOLOGIST_ROLE.code)),
  );
  if (!privileged) throw errors.forbidden(refusal);
}

/**
 * `$verify` of one result or report, in one transaction: the technician's verification, or the
 * pathologist's (a different user) which makes it and its results `final`. Returns the new version.
 */
export async function verifyResult(store: ResourceStore, type: 'Observation' | 'DiagnosticReport', id: string, auth: AuthContext): Promise<LabResult> {
  if (auth.kind !== 'user') throw errors.forbidden('results are verified by a signed-in technician or pathologist, not by a client');
  if (!scopesAllow(auth.scopes, type, 'u') || (type === 'DiagnosticReport' && !scopesAllow(auth.scopes, 'Observation', 'u'))) {
    throw errors.forbidden(`the access token's scopes do not allow updating ${type} and its results`);
  }
  return store.transaction((tx) =>
    verifying.run(true, async () => {
      const stored = await tx.readForUpdate(type, id);
      if (!stored?.json || stored.deleted) throw errors.notFound(`${type}/${id} is not known`);
      const result = JSON.parse(stored.json) as LabResult;
      if (!isLabResult(result)) throw businessRule('invalid', `${type}/${id} is not a result of the laboratory catalogue (no lab-test code).`, [`${type}.code`]);
      if (RELEASED.includes(result.status)) throw businessRule('conflict', `${type}/${id} is already verified (${result.status}).`, [`${type}.status`]);
      if (result.status === 'cancelled' || result.status === 'entered-in-error') throw businessRule('conflict', `${type}/${id} is ${result.status}.`, [`${type}.status`]);
      const done = verificationsOf(result);
      const technician = done.find((v) => v.step === 'technician');
      const step: VerificationStep = technician ? 'pathologist' : 'technician';
      checkVerifier(auth, step);
      if (technician) {
        if (technician.user === auth.subject || (auth.fhirUser !== undefined && technician.verifier === auth.fhirUser)) {
          throw businessRule('conflict', 'The second verification must be made by a different user than the first (dual verification).', [`${type}.extension`]);
        }
        await checkPathologist(tx, auth);
      }
      const record: Verification = { step, user: auth.subject, time: new Date().toISOString(), ...(auth.fhirUser ? { verifier: auth.fhirUser } : {}) };
      const stamp = (r: LabResult, records: Verification[]): LabResult => ({
        ...r,
        extension: [...(r.extension ?? []).filter((e) => e.url !== VERIFICATION_URL), ...records.map(verificationExtension)],
        status: step === 'pathologist' ? 'final' : r.status === 'registered' ? 'preliminary' : r.status,
      }) as LabResult;
      let next = stamp(result, [...done, record]);
      if (step === 'pathologist' && next.resourceType === 'DiagnosticReport') {
        const interpreter: Reference[] = auth.fhirUser ? [{ reference: auth.fhirUser }] : [];
        next = { ...next, issued: record.time, resultsInterpreter: [...(next.resultsInterpreter ?? []), ...interpreter] };
        for (const ref of next.result ?? []) {
          const obsId = /^Observation\/([A-Za-z0-9\-.]{1,64})$/.exec(ref.reference ?? '')?.[1];
          if (!obsId) continue;
          const member = await tx.readForUpdate('Observation', obsId);
          if (!member?.json || member.deleted) continue;
          const obs = JSON.parse(member.json) as Observation;
          if (RELEASED.includes(obs.status) || obs.status === 'cancelled' || obs.status === 'entered-in-error') continue;
          await tx.update(stamp(obs, [...verificationsOf(obs).filter((v) => v.step !== 'pathologist'), ...(verificationsOf(obs).some((v) => v.step === 'technician') ? [] : [technician!]), record]), member);
        }
      }
      const change = await tx.update(next, stored);
      return change.resource as LabResult;
    }),
  );
}
