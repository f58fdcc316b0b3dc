import type { CodeableConcept, DiagnosticReport, Observation, ObservationReferenceRange, Patient, Practitioner } from 'fhir/r4.js';
import type { Db } from '../../storage/db.js';
import { previousResults } from '../../storage/lab-store.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import { referenceTo } from '../scheduling-rules.js';
import { INTERPRETATION_SYSTEM, LAB_TEST_SYSTEM, catalogCode } from './catalog.js';
import type { LabReportContent, ReportRow } from './report-pdf.js';
import { verificationsOf } from './verification.js';

/** How many earlier results of each test the report shows beside the current one. */
const PREVIOUS = 3;

function text(c: CodeableConcept | undefined): string {
  return c?.text ?? c?.coding?.find((k) => k.display)?.display ?? c?.coding?.[0]?.code ?? '';
}

function valueOf(o: Observation): string {
  if (o.valueQuantity) return `${o.valueQuantity.comparator ?? ''}${o.valueQuantity.value ?? ''} ${o.valueQuantity.unit ?? o.valueQuantity.code ?? ''}`.trim();
  if (o.valueCodeableConcept) return text(o.valueCodeableConcept);
  if (o.valueString !== undefined) return o.valueString;
  if (o.valueInteger !== undefined) return String(o.valueInteger);
  if (o.valueBoolean !== undefined) return o.valueBoolean ? 'yes' : 'no';
  return o.dataAbsentReason ? `(${text(o.dataAbsentReason)})` : '';
}

function flagOf(o: Observation): string {
  return (o.interpretation ?? [])
    .map((c) => c.coding?.find((k) => k.system === INTERPRETATION_SYSTEM)?.code ?? text(c))
    .filter(Boolean)
    .join(' ');
}

function rangeOf(o: Observation): string {
  const r: ObservationReferenceRange | undefined = o.referenceRange?.[0];
  if (!r) return '';
  const unit = r.low?.unit ?? r.high?.unit ?? '';
  const low = r.low?.value;
  const high = r.high?.value;
  const span = low !== undefined && high !== undefined ? `${low} - ${high}` : low !== undefined ? `>= ${low}` : high !== undefined ? `<= ${high}` : '';
  return [span, span ? unit : '', r.text && !span ? r.text : ''].filter(Boolean).join(' ');
}

function dateOf(o: Observation): string {
  return (o.effectiveDateTime ?? o.issued ?? o.meta?.lastUpdated ?? '').slice(0, 10);
}

async function readJson<T>(store: ResourceStore, type: string, id: string | undefined): Promise<T | undefined> {
  if (!id) return undefined;
  const v = await store.read(type, id);
  return v?.json && !v.deleted ? (JSON.parse(v.json) as T) : undefined;
}

/** The printed name of the verifier's Practitioner record, if there is one. */
async function practitionerName(store: ResourceStore, reference: string | undefined): Promise<string | undefined> {
  const p = await readJson<Practitioner>(store, 'Practitioner', referenceTo('Practitioner', reference));
  const n = p?.name?.[0];
  return n ? (n.text ?? [...(n.prefix ?? []), ...(n.given ?? []), n.family ?? ''].join(' ').trim()) || undefined : undefined;
}

/** Everything the PDF of one DiagnosticReport shows, read from the store. */
export async function labReportContent(deps: { store: ResourceStore; db: Db; hospitalName: string }, report: DiagnosticReport): Promise<LabReportContent> {
  const patientId = referenceTo('Patient', report.subject?.reference);
  const patient = await readJson<Patient>(deps.store, 'Patient', patientId);
  const results: Observation[] = [];
  for (const ref of report.result ?? []) {
    const o = await readJson<Observation>(deps.store, 'Observation', referenceTo('Observation', ref.reference));
    if (o) results.push(o);
  }
  const currentIds = results.flatMap((o) => (o.id ? [o.id] : []));
  const rows: ReportRow[] = [];
  for (const o of results) {
    const code = catalogCode(o.code, LAB_TEST_SYSTEM);
    const earlier = patientId && code ? await previousResults(deps.db, patientId, LAB_TEST_SYSTEM, code, currentIds, PREVIOUS + 1) : [];
    const previous = earlier
      .map((e) => JSON.parse(e.json) as Observation)
      .filter((p) => !dateOf(o) || !dateOf(p) || dateOf(p) <= dateOf(o))
      .slice(0, PREVIOUS)
      .map((p) => ({ date: dateOf(p), value: valueOf(p), flag: flagOf(p) }));
    rows.push({ test: text(o.code), value: valueOf(o), flag: flagOf(o), range: rangeOf(o), previous });
  }
  const name = patient?.name?.[0];
  const patientName = name ? (name.text ?? [...(name.given ?? []), name.family ?? ''].join(' ').trim()) : (report.subject?.display ?? report.subject?.reference ?? '');
  const number = patient?.identifier?.find((i) => i.system?.endsWith('/sid/patient-number'))?.value;
  const patientDetails = [number ? `No. ${number}` : '', patient?.gender ?? '', patient?.birthDate ? `born ${patient.birthDate}` : ''].filter(Boolean).join(', ');
  const verifications: string[] = [];
  for (const v of verificationsOf(report)) {
    const who = await practitionerName(deps.store, v.verifier);
    verifications.push(`${v.step === 'technician' ? 'Technician' : 'Pathologist'}: ${who ?? v.verifier ?? v.user} at ${v.time.slice(0, 16).replace('T', ' ')} UTC`);
  }
  return {
    hospitalName: deps.hospitalName,
    title: text(report.code) || 'Laboratory report',
    report: `DiagnosticReport/${report.id ?? ''}`,
    status: report.status,
    patientName,
    patientDetails,
    collected: (report.effectiveDateTime ?? '').replace('T', ' ').slice(0, 16),
    issued: (report.issued ?? '').replace('T', ' ').slice(0, 16),
    verifications,
    rows,
    ...(report.conclusion ? { conclusion: report.conclusion } : {}),
  };
}
