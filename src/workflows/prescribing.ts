import type { AllergyIntolerance, CodeableConcept, DetectedIssue, Extension, Medication, MedicationRequest, Observation, OperationOutcomeIssue, Patient, Resource } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import { prescribingContext, resourcesById, type PrescribingRow } from '../storage/prescribing-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import type { ResourceChange } from '../storage/types.js';
import { currentWriter, byApiCaller } from '../subscriptions/write-context.js';
import { checkPrescription, FINDING_CODES, severityWord, type Finding, type OtherPrescription } from './prescribing-checks.js';
import type { PrescribingKnowledge, ResolvedMedication } from './prescribing-knowledge.js';
import { businessRule, referenceTo, replacedVersion } from './scheduling-rules.js';

/**
 * Prescribing safety (seed 004 FR-EMR-003, FR-PH-003; issue 13 §3), before commit on every
 * write path: a MedicationRequest that is an order (intent order, original-order, reflex-order,
 * filler-order, instance-order) in status active, draft or on-hold is checked against the
 * patient's allergies, other active prescriptions (interactions, duplicates) and the dose range
 * for the patient's age and weight. Each finding is written as a DetectedIssue (status final,
 * v3-ActCode ALGY / DRG / DUPTHPY / DOSEH / DOSEL, severity high | moderate | low, implicated =
 * this MedicationRequest and the allergy or other prescription) in the same transaction, and the
 * MedicationRequest's `detectedIssue` lists them.
 *
 * Critical = severity high. A critical finding refuses the write (409 business-rule listing the
 * findings) unless the request carries the override extension (OVERRIDE_EXTENSION, valueString =
 * the reason) and the writer is a signed-in practitioner: the DetectedIssue then gets a
 * `mitigation` (action v3-ActCode 1 "Therapy Appropriate" with the reason as action.text, date,
 * author = the token's fhirUser, never the body). The extension is an instruction, not data: it
 * is not stored. Other findings are written and returned as warnings (OperationOutcome issues).
 *
 * Writes with no API caller (bulk import, MLLP feed, server-side) bring another system's or past
 * records, checked by the system that wrote them: they are stored as sent, without findings.
 *
 * Updates are re-checked only when the medication, dosage, status, intent or subject changed; a
 * finding already recorded on the previous version (same code, same other resource, same
 * severity) keeps its DetectedIssue, and with it an earlier override; the previous version's
 * DetectedIssues that no longer arise are set to status mitigated (mitigation: "the prescription
 * was changed").
 */

export const OVERRIDE_EXTENSION = 'https://fhir.hospital.example.org/StructureDefinition/prescribing-override';
export const ACT_CODE = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';

const CHECKED_STATUSES = new Set(['active', 'draft', 'on-hold']);
const ORDER_INTENTS = new Set(['order', 'original-order', 'reflex-order', 'filler-order', 'instance-order']);
/** Statuses of the patient's other prescriptions that interact and duplicate. */
const CURRENT_STATUSES = ['active', 'on-hold'];

function overrideReason(request: MedicationRequest): string | undefined {
  const ext = request.extension?.find((e) => e.url === OVERRIDE_EXTENSION);
  if (!ext) return undefined;
  return (ext.valueString ?? '').trim();
}

function withoutOverride(request: MedicationRequest): MedicationRequest {
  const rest: Extension[] = (request.extension ?? []).filter((e) => e.url !== OVERRIDE_EXTENSION);
  const out: MedicationRequest = { ...request };
  if (rest.length > 0) out.extension = rest;
  else delete out.extension;
  return out;
}

/** The fields whose change makes the findings stale. */
function checkedFields(r: MedicationRequest): string {
  return JSON.stringify([r.medicationCodeableConcept, r.medicationReference, r.dosageInstruction, r.status, r.intent, r.subject]);
}

function parse<T extends Resource>(row: PrescribingRow): T {
  return JSON.parse(row.json) as T;
}

/** The Medication ids a request names (contained ones are read from the request itself). */
function medicationId(request: MedicationRequest): string | undefined {
  return referenceTo('Medication', request.medicationReference?.reference);
}

function concepts(request: MedicationRequest, medications: ReadonlyMap<string, Medication>): Array<CodeableConcept | undefined> {
  let medication: Medication | undefined;
  const ref = request.medicationReference?.reference;
  if (ref?.startsWith('#')) medication = request.contained?.find((c): c is Medication => c.resourceType === 'Medication' && c.id === ref.slice(1));
  else {
    const id = medicationId(request);
    medication = id ? medications.get(id) : undefined;
  }
  return [request.medicationCodeableConcept, medication?.code, ...(medication?.ingredient ?? []).map((i) => i.itemCodeableConcept)];
}

const keyOf = (code: string, other: string | undefined, severity: string) => `${code}|${other ?? ''}|${severity}`;

function findingKey(f: Finding): string {
  return keyOf(f.code, f.other, f.severity);
}

function issueKey(issue: DetectedIssue, self: string): string {
  const code = issue.code?.coding?.find((c) => c.system === ACT_CODE)?.code ?? '';
  const other = issue.implicated?.map((i) => i.reference).find((r) => r !== undefined && r !== self);
  return keyOf(code, other, issue.severity ?? '');
}

function refused(critical: readonly Finding[]): FhirError {
  const issues: OperationOutcomeIssue[] = critical.map((f) => ({
    severity: 'error',
    code: 'business-rule',
    details: { coding: [{ system: ACT_CODE, code: f.code, display: FINDING_CODES[f.code] }], text: severityWord(f.severity) },
    diagnostics: `${severityWord(f.severity)} ${FINDING_CODES[f.code].toLowerCase()}: ${f.detail}`,
    expression: ['MedicationRequest'],
  }));
  issues.push({
    severity: 'information',
    code: 'business-rule',
    diagnostics: `To prescribe anyway, a signed-in practitioner resends the MedicationRequest with the extension {"url": "${OVERRIDE_EXTENSION}", "valueString": "<reason>"}; the override is recorded on each DetectedIssue with the reason and who.`,
  });
  return new FhirError('conflict', issues);
}

export function prescribingHook(knowledge: PrescribingKnowledge): BeforeWriteHook {
  return async (tx, change) => {
    if (change.resourceType !== 'MedicationRequest' || !change.resource) return;
    const request = change.resource as MedicationRequest;
    const reason = overrideReason(request);
    const patientId = referenceTo('Patient', request.subject?.reference);
    // Writes with no API caller (bulk import, HL7 v2 feed, server-side) bring another system's or
    // past orders, checked where they were written: stored as sent.
    if (!CHECKED_STATUSES.has(request.status) || !ORDER_INTENTS.has(request.intent) || !patientId || !byApiCaller()) {
      if (reason !== undefined) change.resource = withoutOverride(request);
      return;
    }
    const before = change.method === 'POST' ? undefined : await replacedVersion<MedicationRequest>(tx, change);
    if (before && checkedFields(before) === checkedFields(request)) {
      if (reason !== undefined) change.resource = withoutOverride(request);
      return;
    }
    await checkAndRecord(tx, change, knowledge, request, patientId, before, reason);
  };
}

async function checkAndRecord(
  tx: StoreTransaction,
  change: ResourceChange,
  knowledge: PrescribingKnowledge,
  request: MedicationRequest,
  patientId: string,
  before: MedicationRequest | undefined,
  reason: string | undefined,
): Promise<void> {
  // A lone create reads without BEGIN (it has written nothing the read must see); inside a
  // transaction Bundle the read sees the Bundle's earlier entries.
  const db = await tx.reader();
  // The weight is read only when a dose limit in mg/kg may apply (a Medication read later may
  // name any ingredient: then always).
  const byReference = medicationId(request) !== undefined;
  const doses = (request.dosageInstruction ?? []).some((d) => d.doseAndRate?.length);
  const withWeight = doses && (byReference || knowledge.weightBased(knowledge.resolve(concepts(request, new Map())).ingredients.keys()));
  const rows = await prescribingContext(db, patientId, change.id, CURRENT_STATUSES, withWeight);
  let patient: Patient | undefined;
  let weightKg: number | undefined;
  const allergies: AllergyIntolerance[] = [];
  const otherRequests: MedicationRequest[] = [];
  const replaced = new Set((request.priorPrescription?.reference ? [referenceTo('MedicationRequest', request.priorPrescription.reference)] : []).filter(Boolean));
  const seen = new Set<string>();
  for (const row of rows) {
    const key = `${row.resource_type}/${row.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (row.resource_type === 'Patient') patient = parse<Patient>(row);
    else if (row.resource_type === 'AllergyIntolerance') allergies.push(parse<AllergyIntolerance>(row));
    else if (row.resource_type === 'Observation') weightKg = kilograms(parse<Observation>(row));
    else if (row.resource_type === 'MedicationRequest' && !replaced.has(row.id)) {
      const other = parse<MedicationRequest>(row);
      if (ORDER_INTENTS.has(other.intent)) otherRequests.push(other);
    }
  }
  const medicationIds = [...new Set([request, ...otherRequests].map(medicationId).filter((id): id is string => id !== undefined))];
  const medications = new Map((await resourcesById(db, 'Medication', medicationIds)).map((r) => [r.id, parse<Medication>(r)]));
  const resolve = (r: MedicationRequest): ResolvedMedication => knowledge.resolve(concepts(r, medications));
  const others: OtherPrescription[] = otherRequests.map((r) => ({ id: r.id!, medication: resolve(r) }));
  const { findings, notes } = checkPrescription(knowledge, resolve(request), request, { patient, allergies, others, weightKg });

  // Findings already recorded on the version this replaces keep their DetectedIssue (and its override).
  const self = `MedicationRequest/${change.id}`;
  const previousIds = (before?.detectedIssue ?? []).map((d) => referenceTo('DetectedIssue', d.reference)).filter((id): id is string => id !== undefined);
  const previous = new Map((await resourcesById(db, 'DetectedIssue', previousIds)).map((r) => {
    const issue = parse<DetectedIssue>(r);
    return [issueKey(issue, self), issue] as const;
  }));
  const critical = findings.filter((f) => f.severity === 'high' && !previous.get(findingKey(f))?.mitigation?.length);
  const writer = currentWriter();
  let author: string | undefined;
  if (critical.length > 0 && writer) {
    if (reason === undefined) throw refused(critical);
    if (reason === '') throw businessRule('invalid', 'An override of a critical prescribing warning needs a reason (the extension\'s valueString).', ['MedicationRequest.extension']);
    if (writer.kind !== 'user' || !writer.fhirUser?.startsWith('Practitioner/')) {
      throw businessRule('invalid', 'Only a signed-in practitioner can override a critical prescribing warning (the access token has no Practitioner fhirUser).', ['MedicationRequest.extension']);
    }
    author = writer.fhirUser;
  }

  const now = new Date().toISOString();
  const references: Array<{ reference: string }> = [];
  const warnings: OperationOutcomeIssue[] = [];
  for (const f of findings) {
    const kept = previous.get(findingKey(f));
    const overridden = author !== undefined && critical.includes(f);
    let id = kept?.id;
    if (!id) {
      const issue: DetectedIssue = {
        resourceType: 'DetectedIssue',
        status: 'final',
        code: { coding: [{ system: ACT_CODE, code: f.code, display: FINDING_CODES[f.code] }], text: `${severityWord(f.severity)} ${FINDING_CODES[f.code].toLowerCase()}` },
        severity: f.severity,
        patient: { reference: `Patient/${patientId}` },
        identifiedDateTime: now,
        implicated: [{ reference: self }, ...(f.other ? [{ reference: f.other }] : [])],
        detail: f.detail,
        ...(overridden
          ? { mitigation: [{ action: { coding: [{ system: ACT_CODE, code: '1', display: 'Therapy Appropriate' }], text: reason }, date: now, author: { reference: author! } }] }
          : {}),
      };
      id = (await tx.create(issue)).id;
    }
    references.push({ reference: `DetectedIssue/${id}` });
    warnings.push({
      severity: 'warning',
      code: 'business-rule',
      details: { coding: [{ system: ACT_CODE, code: f.code, display: FINDING_CODES[f.code] }], text: severityWord(f.severity) },
      diagnostics: `${severityWord(f.severity)} ${FINDING_CODES[f.code].toLowerCase()} (DetectedIssue/${id}${overridden ? ', overridden' : kept?.mitigation?.length ? ', overridden earlier' : ''}): ${f.detail}`,
    });
  }
  for (const note of notes) warnings.push({ severity: 'information', code: 'informational', diagnostics: note });
  // Findings of the previous version that no longer arise (dose corrected, drug changed) are
  // resolved by the change itself: status mitigated with a mitigation saying so, so that nobody
  // downstream (dispensing) acts on them.
  const kept = new Set(references.map((r) => r.reference));
  for (const issue of previous.values()) {
    if (!issue.id || kept.has(`DetectedIssue/${issue.id}`) || (issue.status as string) === 'mitigated') continue;
    const current = await tx.readForUpdate('DetectedIssue', issue.id);
    if (!current?.json || current.deleted) continue;
    const stale = JSON.parse(current.json) as DetectedIssue;
    const by = writer?.fhirUser ? { author: { reference: writer.fhirUser } } : {};
    const resolved: DetectedIssue = {
      ...stale,
      status: 'mitigated' as DetectedIssue['status'],
      mitigation: [...(stale.mitigation ?? []), { action: { coding: [{ system: ACT_CODE, code: '8', display: 'Other Action Taken' }], text: 'The prescription was changed: this finding no longer arises.' }, date: now, ...by }],
    };
    await tx.update(resolved, current);
  }

  const stored = withoutOverride(request);
  if (references.length > 0) stored.detectedIssue = references;
  else delete stored.detectedIssue;
  change.resource = stored;
  if (warnings.length > 0) (change.issues ??= []).push(...warnings);
}

/** Body weight in kg (kg, g, [lb_av]), or undefined. */
function kilograms(observation: Observation): number | undefined {
  const q = observation.valueQuantity;
  if (typeof q?.value !== 'number' || !(q.value > 0)) return undefined;
  const unit = q.code ?? q.unit ?? 'kg';
  if (unit === 'kg') return q.value;
  if (unit === 'g') return q.value / 1000;
  if (unit === '[lb_av]' || unit === 'lb' || unit === 'lbs') return q.value * 0.45359237;
  return undefined;
}
