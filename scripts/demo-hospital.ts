import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gunzipSync } from 'node:zlib';
import type { Appointment, Bundle, FhirResource, Location, Medication, Observation, Patient, Resource, Schedule, ServiceRequest, Slot } from 'fhir/r4.js';

/**
 * `npm run demo`: a small living hospital on a running server, written through the FHIR API
 * (and /auth/users for the accounts) with a system client's token, so every hospital rule
 * applies (slots booked by Appointments, beds taken by Encounters, patient numbers assigned).
 *
 *   BASE_URL=http://localhost:8080 FHIR_BOOTSTRAP_CLIENT_ID=… FHIR_BOOTSTRAP_CLIENT_SECRET=… npm run demo
 *   npm run demo -- --patients=all      # every Synthea patient (default 10), --patients=0 for none
 *
 * Re-running it adds today's appointments again but no second copy of wards, staff, stock or
 * Synthea patients (conditional creates on demo identifiers). Prints one account per role.
 */

export const DEMO_SYSTEM = 'https://fhir.hospital.example.org/sid/demo';
const PATIENT_NUMBER = 'https://fhir.hospital.example.org/sid/patient-number';
const PHYSICAL = 'http://terminology.hl7.org/CodeSystem/location-physical-type';
const BED_STATUS = 'http://terminology.hl7.org/CodeSystem/v2-0116';
const INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
const LOINC = 'http://loinc.org';
/** The laboratory catalogue (terminology/CodeSystem-lab-test.json): orders and results are coded with it. */
const LAB_TEST = 'https://fhir.hospital.example.org/CodeSystem/lab-test';
const STOCK = 'https://fhir.hospital.example.org/StructureDefinition/medication-stock-quantity';
const REORDER = 'https://fhir.hospital.example.org/StructureDefinition/medication-reorder-level';
const SYNTHEA_ID = 'https://github.com/synthetichealth/synthea';
const DAY = 24 * 3600_000;

export interface DemoOptions {
  baseUrl: string;
  /** A system token (client_credentials, system/*.*). */
  token: string;
  /** Synthea patients to load from `syntheaDir` (the two batch Bundles first); 'all' for every one. */
  syntheaPatients?: number | 'all';
  syntheaDir?: string;
  /** Days of past appointments (the no-show trend). */
  historyDays?: number;
  /** Length of today's slots in minutes (30; tests use 60 for fewer writes). */
  slotMinutes?: number;
  /** Create one user account per role (passwords returned and printed). */
  users?: boolean;
  log?: (line: string) => void;
}

export interface DemoAccount {
  role: string;
  username: string;
  password: string;
  fhirUser?: string;
}

export interface DemoHospital {
  wards: string[];
  doctors: string[];
  patients: string[];
  accounts: DemoAccount[];
  /** Writes the server refused (other rules), with its message: the demo goes on without them. */
  refused: string[];
}

class Api {
  requests = 0;
  constructor(
    private readonly fhirBase: string,
    private readonly token: string,
  ) {}

  async call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    this.requests++;
    const send = () =>
      fetch(`${this.fhirBase}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, accept: 'application/fhir+json', ...(body ? { 'content-type': 'application/fhir+json' } : {}), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    let res = await send();
    // The server's per-client API limit (API_RATE_LIMIT_PER_CLIENT): wait as told, then again.
    for (let attempt = 0; res.status === 429 && attempt < 10; attempt++) {
      const seconds = Number(res.headers.get('retry-after') ?? '1');
      await new Promise((resolve) => setTimeout(resolve, Math.min(60, Number.isFinite(seconds) && seconds > 0 ? seconds : 1) * 1000));
      res = await send();
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text.slice(0, 300);
      try {
        const outcome = JSON.parse(text) as { issue?: Array<{ diagnostics?: string }> };
        message = outcome.issue?.map((i) => i.diagnostics).join('; ') || message;
      } catch {
        // not JSON: the text as is
      }
      throw new Error(`${method} ${path.split('?')[0]}: ${res.status} ${message}`);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  create<T extends Resource>(resource: T, ifNoneExist?: string): Promise<T> {
    return this.call<T>('POST', `/${resource.resourceType}`, resource, ifNoneExist ? { 'if-none-exist': ifNoneExist } : {});
  }

  update<T extends Resource>(resource: T): Promise<T> {
    return this.call<T>('PUT', `/${resource.resourceType}/${resource.id}`, resource);
  }

  search(query: string): Promise<Bundle> {
    return this.call<Bundle>('GET', `/${query}`);
  }
}

const demoId = (value: string) => [{ system: DEMO_SYSTEM, value }];
const ifDemo = (value: string) => `identifier=${encodeURIComponent(`${DEMO_SYSTEM}|${value}`)}`;

/** `count` tasks at a time (the server's booking locks and the database are the limit, not us). */
async function pool<T>(items: readonly T[], count: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(count, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i], i);
    }
  }));
}

function atLocal(dayOffset: number, hour: number, minute = 0): Date {
  const now = new Date();
  return new Date(now.getFullYear(), now.getMonth(), now.getDate() + dayOffset, hour, minute);
}

const quantity = (value: number, unit: string, code = unit) => ({ value, unit, system: 'http://unitsofmeasure.org', code });
const interpretation = (code: string, display: string) => [{ coding: [{ system: INTERPRETATION, code, display }] }];

export async function buildDemoHospital(options: DemoOptions): Promise<DemoHospital> {
  const log = options.log ?? ((line: string) => console.log(line));
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const api = new Api(`${baseUrl}/fhir`, options.token);
  const refused: string[] = [];
  /** A write another rule may refuse: noted, and the demo goes on. */
  const attempt = async <T>(what: string, write: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await write();
    } catch (e) {
      refused.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  };

  // Wards and beds (FR-IP-001).
  log('wards and beds…');
  const wardNames = ['Cardiology', 'General surgery', 'Paediatrics'];
  const wards: Location[] = [];
  const beds: Location[] = [];
  for (const [w, name] of wardNames.entries()) {
    const key = `ward-${w + 1}`;
    const ward = await api.create<Location>({ resourceType: 'Location', identifier: demoId(key), status: 'active', name, physicalType: { coding: [{ system: PHYSICAL, code: 'wa' }] } }, ifDemo(key));
    wards.push(ward);
    for (let b = 1; b <= 6; b++) {
      const bedKey = `${key}-bed-${b}`;
      beds.push(
        await api.create<Location>(
          { resourceType: 'Location', identifier: demoId(bedKey), status: 'active', name: `${name.slice(0, 3).toUpperCase()}-${String(b).padStart(2, '0')}`, physicalType: { coding: [{ system: PHYSICAL, code: 'bd' }] }, operationalStatus: { system: BED_STATUS, code: 'U', display: 'Unoccupied' }, partOf: { reference: `Location/${ward.id}` } },
          ifDemo(bedKey),
        ),
      );
    }
  }

  // Staff: doctors with schedules, and one practitioner per other staff role.
  log('practitioners, schedules and slots…');
  const staff = async (key: string, family: string, given: string) =>
    api.create<FhirResource & { id?: string }>({ resourceType: 'Practitioner', identifier: demoId(key), active: true, name: [{ family, given: [given], ...(key.startsWith('doctor') ? { prefix: ['Dr'] } : {}) }] }, ifDemo(key));
  const doctors = [await staff('doctor-1', 'Nguyen', 'Anna'), await staff('doctor-2', 'Carter', 'Ben'), await staff('doctor-3', 'Martin', 'Chloe')];
  const others: Record<string, string> = {};
  for (const [role, family, given] of [
    ['NURSE', 'Okafor', 'Grace'],
    ['PHARMACIST', 'Silva', 'Pedro'],
    ['LAB_TECHNICIAN', 'Kowalski', 'Lena'],
    ['RECEPTIONIST', 'Haddad', 'Omar'],
    ['ADMIN', 'Larsen', 'Ida'],
    ['ACCOUNTANT', 'Moreau', 'Jules'],
    ['INSURANCE_PROVIDER', 'Tanaka', 'Yui'],
  ]) {
    const p = await staff(role.toLowerCase(), family, given);
    others[role] = `Practitioner/${p.id}`;
  }
  await attempt('pharmacist role', () =>
    api.create({ resourceType: 'PractitionerRole', identifier: demoId('role-pharmacist'), active: true, practitioner: { reference: others.PHARMACIST }, code: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/user-role', code: 'PHARMACIST' }] }] }, ifDemo('role-pharmacist')),
  );
  // Dr Martin is the laboratory's pathologist: the second verification of results is hers (docs/laboratory.md).
  await attempt('pathologist role', () =>
    api.create({ resourceType: 'PractitionerRole', identifier: demoId('role-pathologist'), active: true, practitioner: { reference: `Practitioner/${doctors[2]!.id}` }, code: [{ coding: [{ system: 'https://fhir.hospital.example.org/CodeSystem/lab-role', code: 'pathologist' }] }] }, ifDemo('role-pathologist')),
  );
  const schedules: string[] = [];
  for (const [i, doctor] of doctors.entries()) {
    const schedule = await api.create<Schedule>({ resourceType: 'Schedule', identifier: demoId(`schedule-${i + 1}`), active: true, actor: [{ reference: `Practitioner/${doctor.id}` }], planningHorizon: { start: new Date().toISOString().slice(0, 10) } }, ifDemo(`schedule-${i + 1}`));
    schedules.push(schedule.id ?? '');
  }
  const slot = (schedule: string, start: Date) =>
    api.create<Slot>({ resourceType: 'Slot', schedule: { reference: `Schedule/${schedule}` }, status: 'free', start: start.toISOString(), end: new Date(start.getTime() + (options.slotMinutes ?? 30) * 60_000).toISOString() });

  // Patients: a few registered at the front desk (PT numbers), then Synthea's over HTTP.
  log('patients…');
  const registered: Patient[] = [];
  const people: Array<[string, string, 'male' | 'female', string]> = [
    ['Fernández', 'Lucía', 'female', '1975-06-15'],
    ['Okonkwo', 'Chidi', 'male', '1962-02-03'],
    ['Lindqvist', 'Maja', 'female', '1990-11-21'],
    ['Tran', 'Minh', 'male', '1948-08-09'],
    ['Rossi', 'Giulia', 'female', '2012-04-30'],
    ['Kaplan', 'David', 'male', '1983-01-17'],
  ];
  for (const [i, [family, given, gender, birthDate]] of people.entries()) {
    const key = `patient-${i + 1}`;
    const found = await api.search(`Patient?${ifDemo(key)}`);
    const existing = found.entry?.[0]?.resource as Patient | undefined;
    registered.push(
      existing ??
        (await api.create<Patient>({ resourceType: 'Patient', identifier: [{ system: PATIENT_NUMBER }, ...demoId(key)], name: [{ use: 'official', family, given: [given] }], gender, birthDate, telecom: [{ system: 'phone', value: `+1 555 010${i}` }] })),
    );
  }
  const synthea = await loadSynthea(api, options, log, refused);
  const patients = [...registered.map((p) => p.id ?? ''), ...synthea];

  // Slots and appointments: history (fulfilled / no-show), today (booked, checked in), tomorrow free.
  log('slots and appointments…');
  const history = options.historyDays ?? 30;
  const past: Array<{ schedule: string; doctor: string; start: Date; status: 'fulfilled' | 'noshow' }> = [];
  for (let d = history; d >= 1; d--) {
    for (const [i, schedule] of schedules.entries()) {
      for (const hour of [9, 11]) past.push({ schedule, doctor: `Practitioner/${doctors[i].id}`, start: atLocal(-d, hour + i), status: (d + hour + i) % 7 === 0 ? 'noshow' : 'fulfilled' });
    }
  }
  let patientTurn = 0;
  const nextPatient = () => patients[patientTurn++ % patients.length];
  const book = async (s: Slot, doctor: string, patient: string) =>
    api.create<Appointment>({
      resourceType: 'Appointment',
      status: 'booked',
      start: s.start,
      end: s.end,
      slot: [{ reference: `Slot/${s.id}` }],
      participant: [
        { actor: { reference: `Patient/${patient}` }, status: 'accepted' },
        { actor: { reference: doctor }, status: 'accepted' },
      ],
    });
  await pool(past, 4, async (p) => {
    await attempt('past appointment', async () => {
      const booked = await book(await slot(p.schedule, p.start), p.doctor, nextPatient());
      await api.update({ ...booked, status: p.status });
    });
  });
  const today: Array<{ schedule: string; doctor: string; start: Date }> = [];
  const step = (options.slotMinutes ?? 30) / 60;
  for (const [i, schedule] of schedules.entries()) for (let h = 8; h < 17; h += step) today.push({ schedule, doctor: `Practitioner/${doctors[i].id}`, start: atLocal(0, Math.floor(h), Math.round((h % 1) * 60)) });
  for (const [i, schedule] of schedules.entries()) for (let h = 8; h < 17; h += 1) today.push({ schedule, doctor: `Practitioner/${doctors[i].id}`, start: atLocal(1 + (h % 2), h) });
  await pool(today, 4, async (t, index) => {
    await attempt('slot', async () => {
      const s = await slot(t.schedule, t.start);
      // Today: every third slot booked; the first of each doctor's morning checked in.
      if (t.start.getDate() !== new Date().getDate() || index % 3 !== 0) return;
      const booked = await book(s, t.doctor, nextPatient());
      if (t.start.getHours() < 10) await api.update({ ...booked, status: 'checked-in' });
    });
  });

  // Inpatients: admitted to a ward, the server assigns the bed.
  log('admissions…');
  for (const [i, patient] of patients.slice(0, Math.min(8, patients.length)).entries()) {
    await attempt('admission', () =>
      api.create({
        resourceType: 'Encounter',
        status: 'in-progress',
        class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'IMP', display: 'inpatient encounter' },
        subject: { reference: `Patient/${patient}` },
        period: { start: new Date(Date.now() - (i + 1) * DAY).toISOString() },
        location: [{ location: { reference: `Location/${wards[i % wards.length].id}` }, status: 'active' }],
      }),
    );
  }

  // Clinical record of the registered patients: problems, allergies, vitals, notes, messages.
  log('clinical records, lab orders and results…');
  for (const [i, p] of registered.entries()) {
    const subject = { reference: `Patient/${p.id}` };
    const doctor = `Practitioner/${doctors[i % doctors.length].id}`;
    await attempt('condition', () => api.create({ resourceType: 'Condition', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] }, code: { coding: [{ system: 'http://snomed.info/sct', code: ['38341003', '44054006', '195967001'][i % 3], display: ['Hypertension', 'Type 2 diabetes mellitus', 'Asthma'][i % 3] }] }, subject, onsetDateTime: `${2015 + i}-03-01` }));
    if (i % 2 === 0) await attempt('allergy', () => api.create({ resourceType: 'AllergyIntolerance', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] }, code: { coding: [{ system: 'http://snomed.info/sct', code: '91936005', display: 'Penicillin allergy' }], text: 'Penicillin' }, patient: subject }));
    const vitals: Observation[] = [];
    for (let k = 9; k >= 0; k--) {
      const when = new Date(Date.now() - k * 14 * DAY).toISOString();
      const vitalCategory = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }];
      vitals.push({ resourceType: 'Observation', status: 'final', category: vitalCategory, code: { coding: [{ system: LOINC, code: '85354-9', display: 'Blood pressure panel' }] }, subject, effectiveDateTime: when, component: [{ code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic' }] }, valueQuantity: quantity(118 + ((k * 7 + i * 3) % 30), 'mm[Hg]') }, { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic' }] }, valueQuantity: quantity(72 + ((k * 5 + i) % 18), 'mm[Hg]') }] });
      vitals.push({ resourceType: 'Observation', status: 'final', category: vitalCategory, code: { coding: [{ system: LOINC, code: '8867-4', display: 'Heart rate' }] }, subject, effectiveDateTime: when, valueQuantity: quantity(64 + ((k * 11 + i) % 25), '/min') });
      vitals.push({ resourceType: 'Observation', status: 'final', category: vitalCategory, code: { coding: [{ system: LOINC, code: '29463-7', display: 'Body weight' }] }, subject, effectiveDateTime: when, valueQuantity: quantity(70 + i * 3 - k * 0.4, 'kg') });
    }
    await attempt('vital signs', () => api.call('POST', '', { resourceType: 'Bundle', type: 'batch', entry: vitals.map((resource) => ({ resource, request: { method: 'POST', url: 'Observation' } })) }));
    await attempt('unsigned note', () => api.create({ resourceType: 'Composition', status: 'preliminary', type: { coding: [{ system: LOINC, code: '11506-3', display: 'Progress note' }] }, subject, date: new Date().toISOString(), author: [{ reference: doctor }], title: `Progress note — ${p.name?.[0]?.given?.[0] ?? ''}`, section: [{ title: 'Assessment', text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Stable; review results tomorrow.</div>' } }] }));
    await attempt('message', () => api.create({ resourceType: 'Communication', status: 'completed', category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/communication-category', code: 'notification' }] }], subject, sender: { reference: doctor }, recipient: [subject], sent: new Date().toISOString(), payload: [{ contentString: 'Your latest results are available in the portal.' }] }));
    await labOrder(api, attempt, subject, doctor, i);
  }

  // Pharmacy: stock (two low, two expiring soon) and prescriptions.
  log('pharmacy stock and prescriptions…');
  const stock: Array<[string, string, number, number, number]> = [
    ['197361', 'Amlodipine 5 mg tablet', 420, 100, 400],
    ['860975', 'Metformin 500 mg tablet', 35, 120, 300],
    ['308182', 'Amoxicillin 500 mg capsule', 260, 80, 45],
    ['310965', 'Ibuprofen 200 mg tablet', 900, 150, 500],
    ['895994', 'Salbutamol 100 mcg inhaler', 12, 20, 200],
    ['313782', 'Paracetamol 500 mg tablet', 1500, 200, 60],
    ['314076', 'Lisinopril 10 mg tablet', 310, 90, 700],
    ['617314', 'Atorvastatin 10 mg tablet', 280, 90, 365],
  ];
  const medications: Medication[] = [];
  for (const [code, display, quantityOnHand, reorder, expiresInDays] of stock) {
    const key = `medication-${code}`;
    const m = await attempt('medication', () =>
      api.create<Medication>(
        {
          resourceType: 'Medication',
          identifier: demoId(key),
          status: 'active',
          code: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code, display }], text: display },
          extension: [{ url: STOCK, valueQuantity: { value: quantityOnHand, unit: 'unit' } }, { url: REORDER, valueQuantity: { value: reorder, unit: 'unit' } }],
          batch: { lotNumber: `LOT-${code}`, expirationDate: new Date(Date.now() + expiresInDays * DAY).toISOString().slice(0, 10) },
        },
        ifDemo(key),
      ),
    );
    if (m) medications.push(m);
  }
  for (const [i, p] of registered.entries()) {
    const med = medications[(i * 2 + 1) % Math.max(1, medications.length)];
    if (!med) break;
    await attempt('prescription', () => api.create({ resourceType: 'MedicationRequest', status: 'active', intent: 'order', medicationReference: { reference: `Medication/${med.id}`, display: med.code?.text }, subject: { reference: `Patient/${p.id}` }, requester: { reference: `Practitioner/${doctors[i % doctors.length].id}` }, authoredOn: new Date().toISOString(), dosageInstruction: [{ text: 'One tablet twice a day' }] }));
  }

  // Billing: an invoice per registered patient, the first two paid.
  log('invoices…');
  for (const [i, p] of registered.entries()) {
    await attempt('invoice', () => api.create({ resourceType: 'Invoice', status: i < 2 ? 'balanced' : 'issued', subject: { reference: `Patient/${p.id}` }, date: new Date(Date.now() - i * DAY).toISOString(), totalNet: { value: 80 + i * 35, currency: 'USD' }, totalGross: { value: 80 + i * 35, currency: 'USD' } }));
  }

  const accounts = options.users === false ? [] : await demoAccounts(baseUrl, options.token, others, `Practitioner/${doctors[0].id}`, `Patient/${registered[0].id}`);
  log(`done: ${api.requests} API requests, ${refused.length} writes refused by the server's rules`);
  return { wards: wards.map((w) => w.id ?? ''), doctors: doctors.map((d) => `Practitioner/${d.id}`), patients, accounts, refused };
}

type Attempt = <T>(what: string, write: () => Promise<T>) => Promise<T | undefined>;

/** A lab order with its report: results flagged critical / abnormal / normal, with reference ranges. */
async function labOrder(api: Api, attempt: Attempt, subject: { reference: string }, doctor: string, i: number): Promise<void> {
  const priority = (['stat', 'urgent', 'routine'] as const)[i % 3];
  const order = await attempt('lab order', () =>
    api.create<ServiceRequest>({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', priority, category: [{ coding: [{ system: 'http://snomed.info/sct', code: '108252007', display: 'Laboratory procedure' }] }], code: { coding: [{ system: LAB_TEST, code: 'ELEC', display: 'Electrolytes (Na, K, Cl)' }, { system: LOINC, code: '24326-1' }], text: 'Electrolytes' }, subject, requester: { reference: doctor }, authoredOn: new Date(Date.now() - (6 - i) * 3600_000).toISOString() }),
  );
  if (!order || i % 2 === 1) return;
  const lab = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }];
  const when = new Date(Date.now() - 3600_000).toISOString();
  const results: Observation[] = [
    { resourceType: 'Observation', status: 'preliminary', category: lab, code: { coding: [{ system: LAB_TEST, code: 'K', display: 'Potassium' }, { system: LOINC, code: '2823-3' }] }, subject, effectiveDateTime: when, valueQuantity: quantity(i === 0 ? 6.8 : 4.1, 'mmol/L'), interpretation: i === 0 ? interpretation('HH', 'Critical high') : interpretation('N', 'Normal'), referenceRange: [{ low: quantity(3.5, 'mmol/L'), high: quantity(5.1, 'mmol/L') }] },
    { resourceType: 'Observation', status: 'preliminary', category: lab, code: { coding: [{ system: LAB_TEST, code: 'NA', display: 'Sodium' }, { system: LOINC, code: '2951-2' }] }, subject, effectiveDateTime: when, valueQuantity: quantity(149, 'mmol/L'), interpretation: interpretation('H', 'High'), referenceRange: [{ low: quantity(135, 'mmol/L'), high: quantity(145, 'mmol/L') }] },
    { resourceType: 'Observation', status: 'preliminary', category: lab, code: { coding: [{ system: LAB_TEST, code: 'CL', display: 'Chloride' }, { system: LOINC, code: '2075-0' }] }, subject, effectiveDateTime: when, valueQuantity: quantity(102, 'mmol/L'), interpretation: interpretation('N', 'Normal'), referenceRange: [{ low: quantity(98, 'mmol/L'), high: quantity(107, 'mmol/L') }] },
  ];
  const stored: string[] = [];
  for (const o of results) {
    const r = await attempt('lab result', () => api.create<Observation>(o));
    if (r?.id) stored.push(`Observation/${r.id}`);
  }
  await attempt('lab report', () =>
    api.create({ resourceType: 'DiagnosticReport', status: 'preliminary', basedOn: [{ reference: `ServiceRequest/${order.id}` }], category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'LAB' }] }], code: { coding: [{ system: LAB_TEST, code: 'ELEC', display: 'Electrolytes (Na, K, Cl)' }, { system: LOINC, code: '24326-1' }], text: 'Electrolytes' }, subject, effectiveDateTime: when, issued: new Date().toISOString(), result: stored.map((reference) => ({ reference })) }),
  );
}

/** The Synthea files: the two batch Bundles (organizations, practitioners) first, then `count` patients. */
async function loadSynthea(api: Api, options: DemoOptions, log: (line: string) => void, refused: string[]): Promise<string[]> {
  const count = options.syntheaPatients ?? 10;
  if (count === 0) return [];
  const dir = options.syntheaDir ?? resolve(process.cwd(), '../shared/data/synthea');
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => /\.json(\.gz)?$/.test(f)).sort();
  } catch {
    refused.push(`Synthea: no data in ${dir}`);
    return [];
  }
  const read = (f: string) => JSON.parse((f.endsWith('.gz') ? gunzipSync(readFileSync(join(dir, f))) : readFileSync(join(dir, f))).toString('utf8')) as Bundle;
  const infos = files.filter((f) => /^0-|Information/.test(f));
  // Smallest records first: a subset loads quickly and still shows every view filled.
  const people = files.filter((f) => !infos.includes(f)).map((f) => ({ f, size: readFileSync(join(dir, f)).length })).sort((a, b) => a.size - b.size).map((x) => x.f);
  const chosen = count === 'all' ? people : people.slice(0, count);
  log(`Synthea: ${infos.length} batch bundles, then ${chosen.length} of ${people.length} patients…`);
  for (const f of infos) {
    try {
      await api.call('POST', '', read(f));
    } catch (e) {
      refused.push(`Synthea ${f}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const ids: string[] = [];
  for (const f of chosen) {
    const bundle = read(f);
    const patient = bundle.entry?.find((e) => e.resource?.resourceType === 'Patient')?.resource as Patient | undefined;
    const syntheaId = patient?.identifier?.find((i) => i.system === SYNTHEA_ID)?.value;
    if (syntheaId) {
      const existing = await api.search(`Patient?identifier=${encodeURIComponent(`${SYNTHEA_ID}|${syntheaId}`)}&_elements=id`);
      const id = existing.entry?.[0]?.resource?.id;
      if (id) {
        ids.push(id);
        continue;
      }
    }
    try {
      const answer = await api.call<Bundle>('POST', '', bundle);
      const location = answer.entry?.find((e) => e.response?.location?.startsWith('Patient/'))?.response?.location;
      if (location) ids.push(location.split('/')[1]);
    } catch (e) {
      refused.push(`Synthea ${f}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return ids;
}

function strongPassword(): string {
  return `Demo-${randomBytes(6).toString('base64url')}-7a!`;
}

/** One account per role (ADMIN, DOCTOR, …, PATIENT) through /auth/users; existing ones get a new password. */
async function demoAccounts(baseUrl: string, token: string, staff: Record<string, string>, doctor: string, patient: string): Promise<DemoAccount[]> {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const existing = (await (await fetch(`${baseUrl}/auth/users`, { headers })).json()) as Array<{ id: string; username: string }>;
  const accounts: DemoAccount[] = [];
  const wanted: Array<[string, string | undefined]> = [['ADMIN', staff.ADMIN], ['DOCTOR', doctor], ['NURSE', staff.NURSE], ['PHARMACIST', staff.PHARMACIST], ['LAB_TECHNICIAN', staff.LAB_TECHNICIAN], ['RECEPTIONIST', staff.RECEPTIONIST], ['ACCOUNTANT', staff.ACCOUNTANT], ['INSURANCE_PROVIDER', staff.INSURANCE_PROVIDER], ['PATIENT', patient]];
  for (const [role, fhirUser] of wanted) {
    const username = `demo.${role.toLowerCase().replace(/_/g, '-')}`;
    const password = strongPassword();
    const found = Array.isArray(existing) ? existing.find((u) => u.username === username) : undefined;
    const res = found
      ? await fetch(`${baseUrl}/auth/users/${found.id}`, { method: 'PATCH', headers, body: JSON.stringify({ password, role, fhirUser, unlock: true }) })
      : await fetch(`${baseUrl}/auth/users`, { method: 'POST', headers, body: JSON.stringify({ username, password, role, fhirUser }) });
    if (!res.ok) throw new Error(`account ${username}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    accounts.push({ role, username, password, fhirUser });
  }
  return accounts;
}

async function systemToken(baseUrl: string, id: string, secret: string): Promise<string> {
  const res = await fetch(`${baseUrl}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}` },
    body: 'grant_type=client_credentials&scope=system/*.*',
  });
  if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { access_token: string }).access_token;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const baseUrl = (process.env.BASE_URL ?? `http://localhost:${process.env.PORT ?? '8080'}`).replace(/\/+$/, '');
  const id = process.env.FHIR_BOOTSTRAP_CLIENT_ID;
  const secret = process.env.FHIR_BOOTSTRAP_CLIENT_SECRET;
  if (!id || !secret) {
    console.error('Set FHIR_BOOTSTRAP_CLIENT_ID and FHIR_BOOTSTRAP_CLIENT_SECRET (the system client the server was started with, or the development client npm start printed).');
    process.exit(2);
  }
  const flag = process.argv.find((a) => a.startsWith('--patients='))?.split('=')[1];
  const syntheaPatients = flag === undefined ? 10 : flag === 'all' ? 'all' : Number(flag);
  if (syntheaPatients !== 'all' && !(Number.isInteger(syntheaPatients) && syntheaPatients >= 0)) {
    console.error('--patients= takes a number or all');
    process.exit(2);
  }
  const started = Date.now();
  const demo = await buildDemoHospital({ baseUrl, token: await systemToken(baseUrl, id, secret), syntheaPatients });
  for (const r of demo.refused.slice(0, 20)) console.log(`  refused: ${r.slice(0, 200)}`);
  console.log(`\nDemo hospital ready in ${Math.round((Date.now() - started) / 1000)} s: ${demo.wards.length} wards, ${demo.doctors.length} doctors, ${demo.patients.length} patients.`);
  console.log(`Open ${baseUrl}/console/ and sign in as (passwords are new on every run):`);
  for (const a of demo.accounts) console.log(`  ${a.role.padEnd(19)} ${a.username.padEnd(26)} ${a.password}${a.fhirUser ? `   (${a.fhirUser})` : ''}`);
}
