import type { Appointment, Bundle, ClaimResponse, CodeableConcept, DiagnosticReport, HumanName, Invoice, Medication, MedicationDispense, Observation, Patient, Practitioner, PractitionerRole, Reference, Resource, ServiceRequest, Task } from 'fhir/r4.js';
import type { SearchInput } from '../../search/search-service.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import { expiringLots, isCritical, stockLevel } from './events.js';
import type { Audience, NotificationEvent, NotificationRules } from './rules.js';

/** Who gets one event, and the values its templates may use. */
export interface EventAudience {
  recipients: Array<{ reference: string; audience: Audience }>;
  /** the patient the event is about (Communication.subject) */
  patient?: string;
  values: Record<string, string>;
}

export interface RecipientDeps {
  store: Pick<ResourceStore, 'read' | 'readMany'>;
  search: { search(input: SearchInput): Promise<Bundle> };
  fhirBase: string;
  rules: NotificationRules;
  timeZone: string;
}

const LOCAL = /^(Patient|Practitioner|PractitionerRole|RelatedPerson|ServiceRequest)\/([A-Za-z0-9\-.]{1,64})$/;

function local(reference: string | undefined, fhirBase: string): { type: string; id: string } | undefined {
  if (!reference) return undefined;
  const relative = reference.startsWith(`${fhirBase}/`) ? reference.slice(fhirBase.length + 1) : reference;
  const m = LOCAL.exec(relative.split('/_history/')[0]!);
  return m ? { type: m[1]!, id: m[2]! } : undefined;
}

export async function readResource<T extends Resource>(store: Pick<ResourceStore, 'read'>, type: string, id: string): Promise<T | undefined> {
  const found = await store.read(type, id);
  return found?.json && !found.deleted ? (JSON.parse(found.json) as T) : undefined;
}

export function nameOf(resource: { name?: HumanName[] | HumanName } | undefined): string {
  const names = resource?.name === undefined ? [] : Array.isArray(resource.name) ? resource.name : [resource.name];
  const n = names.find((x) => x.use === 'official') ?? names[0];
  if (!n) return '';
  return n.text ?? [...(n.prefix ?? []), ...(n.given ?? []), n.family].filter(Boolean).join(' ');
}

export function conceptText(c: CodeableConcept | undefined): string {
  return c?.text ?? c?.coding?.find((x) => x.display)?.display ?? c?.coding?.find((x) => x.code)?.code ?? '';
}

export function formatTime(iso: string | undefined, timeZone: string): string {
  if (!iso) return '';
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  // "2026-12-25 10:00 UTC": unambiguous in every language of the templates.
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(at).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} ${timeZone}`;
}

/** A Practitioner reference for a Practitioner or PractitionerRole reference. */
async function practitionerOf(ref: Reference | undefined, deps: RecipientDeps): Promise<string | undefined> {
  const target = local(ref?.reference, deps.fhirBase);
  if (target?.type === 'Practitioner') return `Practitioner/${target.id}`;
  if (target?.type !== 'PractitionerRole') return undefined;
  const role = await readResource<PractitionerRole>(deps.store, 'PractitionerRole', target.id);
  const p = local(role?.practitioner?.reference, deps.fhirBase);
  return p?.type === 'Practitioner' ? `Practitioner/${p.id}` : undefined;
}

function patientRef(ref: Reference | undefined, deps: RecipientDeps): string | undefined {
  const target = local(ref?.reference, deps.fhirBase);
  return target?.type === 'Patient' ? `Patient/${target.id}` : undefined;
}

/** The ordering clinicians: requesters of the ServiceRequests a result is based on. */
async function orderers(basedOn: Reference[] | undefined, deps: RecipientDeps): Promise<string[]> {
  const out: string[] = [];
  for (const ref of basedOn ?? []) {
    const target = local(ref.reference, deps.fhirBase);
    if (target?.type !== 'ServiceRequest') continue;
    const order = await readResource<ServiceRequest>(deps.store, 'ServiceRequest', target.id);
    const who = await practitionerOf(order?.requester, deps);
    if (who) out.push(who);
  }
  return out;
}

async function patientName(ref: string | undefined, deps: RecipientDeps): Promise<string> {
  if (!ref) return '';
  return nameOf(await readResource<Patient>(deps.store, 'Patient', ref.split('/')[1]!));
}

/** Results looked at for a critical one (a panel rarely has more). */
const MAX_RESULTS_CHECKED = 100;

async function hasCriticalResult(report: DiagnosticReport, deps: RecipientDeps): Promise<boolean> {
  const ids: string[] = [];
  for (const ref of (report.result ?? []).slice(0, MAX_RESULTS_CHECKED)) {
    const m = /^Observation\/([A-Za-z0-9\-.]{1,64})$/.exec(ref.reference ?? '');
    if (m) ids.push(m[1]!);
  }
  // One statement for the whole panel (read one by one, a 20-result report cost 20 round trips).
  for (const found of await deps.store.readMany('Observation', ids)) {
    if (found.json && !found.deleted && isCritical(JSON.parse(found.json) as Observation, deps.rules)) return true;
  }
  return false;
}

function unique(list: Array<{ reference: string; audience: Audience }>): EventAudience['recipients'] {
  const seen = new Set<string>();
  return list.filter((r) => (seen.has(r.reference) ? false : (seen.add(r.reference), true)));
}

function money(m: { value?: number; currency?: string } | undefined): string {
  return m?.value === undefined ? '' : `${m.value}${m.currency ? ` ${m.currency}` : ''}`;
}

/** Recipients and template values of `event` raised by `focus` (the version that raised it). */
export async function audienceOf(event: NotificationEvent, focus: Resource, deps: RecipientDeps): Promise<EventAudience> {
  switch (focus.resourceType) {
    case 'Task': {
      // APPOINTMENT_RESCHEDULE_NEEDED: told about the Appointment the Task is for.
      const id = /(?:^|\/)Appointment\/([A-Za-z0-9\-.]{1,64})$/.exec((focus as Task).focus?.reference ?? '')?.[1];
      const appt = id ? await readResource<Appointment>(deps.store, 'Appointment', id) : undefined;
      return appt ? audienceOf(event, appt, deps) : { recipients: [], values: {} };
    }
    case 'Appointment': {
      const appt = focus as Appointment;
      const people: EventAudience['recipients'] = [];
      for (const p of appt.participant ?? []) {
        if (p.status === 'declined') continue;
        const patient = patientRef(p.actor, deps);
        if (patient) people.push({ reference: patient, audience: 'patient' });
        const practitioner = patient ? undefined : await practitionerOf(p.actor, deps);
        if (practitioner) people.push({ reference: practitioner, audience: 'practitioner' });
      }
      const patient = people.find((p) => p.audience === 'patient')?.reference;
      const doctor = people.find((p) => p.audience === 'practitioner')?.reference;
      return {
        recipients: unique(people),
        ...(patient ? { patient } : {}),
        values: {
          patient_name: await patientName(patient, deps),
          practitioner_name: doctor ? nameOf(await readResource<Practitioner>(deps.store, 'Practitioner', doctor.split('/')[1]!)) : '',
          appointment_time: formatTime(appt.start, deps.timeZone),
        },
      };
    }
    case 'DiagnosticReport': {
      const report = focus as DiagnosticReport;
      const doctors = await orderers(report.basedOn, deps);
      // Seed 004 §9.2: the patient is told of results only when none is critical (the doctor
      // gets the critical result at once and talks to the patient).
      const patient = (await hasCriticalResult(report, deps)) ? undefined : patientRef(report.subject, deps);
      return {
        recipients: unique([...(patient ? [{ reference: patient, audience: 'patient' as const }] : []), ...doctors.map((d) => ({ reference: d, audience: 'practitioner' as const }))]),
        ...(patient ? { patient } : {}),
        values: { report_name: conceptText(report.code), patient_name: await patientName(patient, deps) },
      };
    }
    case 'Observation': {
      const obs = focus as Observation;
      const patient = patientRef(obs.subject, deps);
      let doctors = await orderers(obs.basedOn, deps);
      if (doctors.length === 0 && patient) {
        // No order to follow: the patient's general practitioner(s) get the critical result.
        const record = await readResource<{ resourceType: 'Patient'; generalPractitioner?: Reference[] }>(deps.store, 'Patient', patient.split('/')[1]!);
        for (const gp of record?.generalPractitioner ?? []) {
          const who = await practitionerOf(gp, deps);
          if (who) doctors.push(who);
        }
      }
      doctors = [...new Set(doctors)];
      const q = obs.valueQuantity;
      const value = q ? `${q.value ?? ''} ${q.unit ?? q.code ?? ''}`.trim() : (obs.valueString ?? conceptText(obs.valueCodeableConcept));
      return {
        recipients: doctors.map((d) => ({ reference: d, audience: 'practitioner' as const })),
        ...(patient ? { patient } : {}),
        values: {
          patient_name: await patientName(patient, deps),
          test_name: conceptText(obs.code),
          result_value: value,
          // A value past a critical limit may carry no interpretation (HL7 v2 limits catalog).
          interpretation: (obs.interpretation ?? []).map(conceptText).filter(Boolean).join(', ') || 'critical',
          result_reference: `Observation/${obs.id ?? ''}`,
        },
      };
    }
    case 'MedicationDispense': {
      const d = focus as MedicationDispense;
      const patient = patientRef(d.subject, deps);
      return {
        recipients: patient ? [{ reference: patient, audience: 'patient' }] : [],
        ...(patient ? { patient } : {}),
        values: { medication_name: d.medicationCodeableConcept ? conceptText(d.medicationCodeableConcept) : (d.medicationReference?.display ?? '') },
      };
    }
    case 'Invoice': {
      const inv = focus as Invoice;
      const patient = patientRef(inv.recipient, deps) ?? patientRef(inv.subject, deps);
      return {
        recipients: patient ? [{ reference: patient, audience: 'patient' }] : [],
        ...(patient ? { patient } : {}),
        values: { invoice_number: inv.identifier?.[0]?.value ?? inv.id ?? '', amount: money(inv.totalGross ?? inv.totalNet), due_date: inv.paymentTerms ?? '' },
      };
    }
    case 'ClaimResponse': {
      const cr = focus as ClaimResponse;
      const patient = patientRef(cr.patient, deps);
      return {
        recipients: patient ? [{ reference: patient, audience: 'patient' }] : [],
        ...(patient ? { patient } : {}),
        values: { claim_outcome: cr.outcome, claim_disposition: cr.disposition ?? '' },
      };
    }
    case 'Medication': {
      const m = focus as Medication;
      const level = stockLevel(m, deps.rules);
      const role = deps.rules.stock.recipientRole;
      const bundle = await deps.search.search({ resourceType: 'PractitionerRole', params: [['role', `${role.system}|${role.code}`], ['active', 'true'], ['_count', '100']], baseUrl: deps.fhirBase });
      const pharmacists: string[] = [];
      for (const e of bundle.entry ?? []) {
        const who = local((e.resource as PractitionerRole | undefined)?.practitioner?.reference, deps.fhirBase);
        if (who?.type === 'Practitioner') pharmacists.push(`Practitioner/${who.id}`);
      }
      return {
        recipients: [...new Set(pharmacists)].map((p) => ({ reference: p, audience: 'practitioner' as const })),
        values: {
          medication_name: conceptText(m.code),
          // PHARMACY_BATCH_EXPIRING: the batches within 90 days of expiry, each with its date.
          lot_number: event === 'PHARMACY_BATCH_EXPIRING' ? expiringLots(m, deps.rules).join(', ') : (m.batch?.lotNumber ?? ''),
          quantity: String(level?.quantity ?? ''),
          reorder_level: String(level?.reorderLevel ?? ''),
        },
      };
    }
    default:
      return { recipients: [], values: {} };
  }
}
