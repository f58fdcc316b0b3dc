import type { Bundle } from 'fhir/r4.js';
import type { ServerApp } from '../src/app.js';
import { compare, measure, type Comparison, type Measurement } from './harness.js';

/**
 * Prescribing safety (issue 13 §3, seed 004 FR-EMR-003): MedicationRequest creates with every
 * check running — each patient has allergies, five active prescriptions and body weights
 * among other Observations; the drug–allergy, drug–drug, duplicate and dose checks run, and one
 * of the two checked prescriptions yields a moderate interaction (a DetectedIssue written in the
 * same transaction) — beside plain creates of the same MedicationRequest in status `completed`,
 * which no rule checks, all through fastify inject in the same run.
 *
 * The checked prescriptions are drafts (checked like active ones) so they do not pile up as
 * "other active prescriptions" of the next create: every create sees the same patient record.
 */
export interface PrescribingBenchReport {
  patients: number;
  creates: number;
  comparisons: Comparison[];
}

const RXNORM = 'http://www.nlm.nih.gov/research/umls/rxnorm';
const SNOMED = 'http://snomed.info/sct';
const LOINC = 'http://loinc.org';

const medication = (code: string, display: string) => ({ coding: [{ system: RXNORM, code, display }], text: display });
const dosage = (units: number, perDay: number) => [{ timing: { repeat: { frequency: perDay, period: 1, periodUnit: 'd' } }, doseAndRate: [{ doseQuantity: { value: units } }] }];

/** One patient's record as a transaction Bundle: Patient, 3 allergies, 5 active prescriptions, 3 weights and 9 other vitals. */
function patientRecord(i: number): Bundle {
  const patient = `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  const entry: NonNullable<Bundle['entry']> = [];
  const add = (resource: Record<string, unknown>, fullUrl?: string) =>
    entry.push({ ...(fullUrl ? { fullUrl } : {}), resource: resource as never, request: { method: 'POST', url: String(resource.resourceType) } });
  add({ resourceType: 'Patient', name: [{ family: `Rx${i}` }], birthDate: '1960-03-04' }, patient);
  for (const [code, display, criticality] of [
    ['91936005', 'Allergy to penicillin', 'high'],
    ['91935009', 'Allergy to peanuts', 'low'],
    ['419474003', 'Allergy to mould', 'low'],
  ]) {
    add({ resourceType: 'AllergyIntolerance', criticality, code: { coding: [{ system: SNOMED, code, display }] }, patient: { reference: patient } });
  }
  for (const [code, display] of [
    ['314076', 'lisinopril 10 MG Oral Tablet'],
    ['310798', 'Hydrochlorothiazide 25 MG Oral Tablet'],
    ['314231', 'Simvastatin 10 MG Oral Tablet'],
    ['860975', '24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet'],
    ['309362', 'Clopidogrel 75 MG Oral Tablet'],
  ]) {
    add({ resourceType: 'MedicationRequest', status: 'active', intent: 'order', medicationCodeableConcept: medication(code, display), subject: { reference: patient }, dosageInstruction: dosage(1, 1) });
  }
  for (let k = 0; k < 12; k++) {
    const weight = k % 4 === 0;
    add({
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [weight ? { system: LOINC, code: '29463-7', display: 'Body Weight' } : { system: LOINC, code: '8867-4', display: 'Heart rate' }] },
      subject: { reference: patient },
      effectiveDateTime: new Date(Date.UTC(2025, k, 1)).toISOString(),
      valueQuantity: weight ? { value: 70 + k, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' } : { value: 70, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
    });
  }
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

export async function benchPrescribing(o: { app: ServerApp; token: string; patients: number; creates: number; concurrency: number }): Promise<PrescribingBenchReport> {
  const headers = { authorization: `Bearer ${o.token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' };
  const patients: string[] = [];
  for (let i = 0; i < o.patients; i++) {
    const res = await o.app.http.inject({ method: 'POST', url: '/fhir', headers, payload: JSON.stringify(patientRecord(i)) });
    if (res.statusCode !== 200) throw new Error(`patient record not stored: ${res.statusCode} ${res.body.slice(0, 300)}`);
    patients.push((res.json() as Bundle).entry![0]!.response!.location!.split('/')[1]!);
  }
  // Amlodipine 5 mg once a day: within range, no allergy; a moderate interaction with simvastatin
  // (one DetectedIssue). Acetaminophen 325 mg three times a day: every check runs, no finding.
  const prescription = (i: number, status: string, withFinding: boolean) => ({
    resourceType: 'MedicationRequest',
    status,
    intent: 'order',
    medicationCodeableConcept: withFinding ? medication('197361', 'Amlodipine 5 MG Oral Tablet') : medication('313782', 'Acetaminophen 325 MG Oral Tablet'),
    subject: { reference: `Patient/${patients[i % patients.length]}` },
    dosageInstruction: withFinding ? dosage(1, 1) : dosage(1, 3),
  });
  const post = async (body: unknown) => {
    const res = await o.app.http.inject({ method: 'POST', url: '/fhir/MedicationRequest', headers, payload: JSON.stringify(body) });
    if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
  };
  // Warm-up: plans, caches and the knowledge tables — at the measured concurrency, so every pool
  // connection has planned the check queries (PostgreSQL plans a prepared statement's first five
  // runs per connection afresh) before either side is timed.
  await measure('warm-up', Math.max(80, o.concurrency * 12), o.concurrency, (i) => post(prescription(i, i % 3 === 0 ? 'completed' : 'draft', i % 2 === 0)));
  // The three kinds interleaved in one run (call i is kind i mod 3), so that a change of the
  // machine's load during the run (it is shared) weighs on each side alike.
  const [plain, clean, finding] = await measureInterleaved(o.creates, o.concurrency, [
    { name: 'MedicationRequest create, no rule (status completed)', run: (i) => post(prescription(i, 'completed', false)) },
    { name: 'MedicationRequest create, all checks, no finding', run: (i) => post(prescription(i, 'draft', false)) },
    { name: 'MedicationRequest create, all checks, one DetectedIssue', run: (i) => post(prescription(i, 'draft', true)) },
  ]);
  const aim = { text: 'p50 time ≤ 2 × plain create', met: (c: Comparison) => c.p50Ratio <= 2 };
  return {
    patients: o.patients,
    creates: o.creates,
    comparisons: [compare('checked create (no finding) vs plain create', clean, plain, aim), compare('checked create (one DetectedIssue) vs plain create', finding, plain, aim)],
  };
}

/**
 * `count` calls of each kind, interleaved, `concurrency` in flight. Per kind: latency percentiles,
 * and calls per second as `concurrency / mean latency` (the kinds share the wall time, so calls
 * over wall time would be the same for all).
 */
async function measureInterleaved(count: number, concurrency: number, kinds: Array<{ name: string; run: (i: number) => Promise<void> }>): Promise<Measurement[]> {
  const latencies = kinds.map(() => [] as number[]);
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= count * kinds.length) return;
      const kind = i % kinds.length;
      const t0 = performance.now();
      await kinds[kind]!.run(Math.floor(i / kinds.length));
      latencies[kind]!.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  const at = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
  return kinds.map((k, n) => {
    const sorted = latencies[n]!.sort((a, b) => a - b);
    const mean = sorted.reduce((sum, x) => sum + x, 0) / Math.max(1, sorted.length);
    return { name: k.name, operations: sorted.length, seconds, perSecond: mean > 0 ? (concurrency * 1000) / mean : 0, p50Ms: at(sorted, 50), p95Ms: at(sorted, 95), p99Ms: at(sorted, 99) };
  });
}
