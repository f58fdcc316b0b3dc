import { createHash } from 'node:crypto';
import type { Encounter, Observation, Patient, Practitioner, Resource } from 'fhir/r4.js';

/**
 * Deterministic synthetic clinical data for the search benchmark, shaped like what a hospital
 * holds (and like Synthea output): Patients with accented names, MRN + SSN identifiers, birth
 * dates, addresses; Practitioners; Encounters; LOINC-coded vital signs and labs with UCUM
 * valueQuantity, blood pressure as components, smoking status as a CodeableConcept, spread over
 * ten years, each referring to its Patient and (mostly) its Encounter.
 *
 * Generation is by patient index so a data set can grow: patients [0, n) and then [n, m) give
 * the same resources as [0, m) at once. Observations per patient average ten.
 */

export const MRN_SYSTEM = 'http://hospital.example.org/fhir/sid/mrn';
export const SSN_SYSTEM = 'http://hl7.org/fhir/sid/us-ssn';
export const LOINC = 'http://loinc.org';
export const UCUM = 'http://unitsofmeasure.org';
const CATEGORY_SYSTEM = 'http://terminology.hl7.org/CodeSystem/observation-category';

/** Small fast PRNG (mulberry32), seeded per patient so growth is reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zipf-like pick: earlier entries are more frequent (weight 1/(i+2)). */
function weightedPicker<T>(items: readonly T[]): (r: number) => T {
  const w = items.map((_, i) => 1 / (i + 2));
  const total = w.reduce((a, b) => a + b, 0);
  const cum: number[] = [];
  let acc = 0;
  for (const x of w) cum.push((acc += x / total));
  return (r) => {
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid]! < r) lo = mid + 1;
      else hi = mid;
    }
    return items[lo]!;
  };
}

export const FAMILIES = [
  'García', 'Müller', 'Hernández', 'Nguyễn', 'Smith', 'Jiménez', 'Dubois', 'Søren­sen', 'Kowalski', 'Lefèvre',
  'Núñez', 'Johnson', 'Öztürk', 'Martínez', 'Brown', 'Schröder', 'Rodríguez', 'Łukaszewicz', 'Williams', 'Gómez',
  'Đorđević', 'Papadopoulos', 'Jones', 'Fernández', 'Björk', 'Çelik', 'Miller', 'López', 'Davis', 'Pérez',
  'Wilson', 'Sánchez', 'Moore', 'Ramírez', 'Taylor', 'Torres', 'Anderson', 'Flores', 'Thomas', 'Rivera',
  'Jackson', 'Gonçalves', 'White', 'Dvořák', 'Harris', 'Novák', 'Martin', 'Ferrari', 'Thompson', 'Rossi',
  "O'Brien", 'Kovačević', 'Clark', 'Andersson', 'Lewis', 'Nieminen', 'Robinson', 'Janssen', 'Walker', 'De Vries',
  'Young', 'Bianchi', 'Allen', 'Moreau', 'King', 'Laurent', 'Wright', 'Fischer', 'Scott', 'Weiß',
  'Green', 'Wagner', 'Baker', 'Becker', 'Adams', 'Hoffmann', 'Nelson', 'Schäfer', 'Hill', 'Koch',
].map((s) => s.replace(/\u00ad/g, ''));

export const GIVEN = [
  'María', 'José', 'Zoë', 'Chloé', 'Renée', 'François', 'Jürgen', 'Åsa', 'Siobhán', 'André',
  'James', 'Mary', 'John', 'Patricia', 'Robert', 'Jennifer', 'Michael', 'Linda', 'David', 'Élodie',
  'William', 'Elizabeth', 'Søren', 'Barbara', 'Joaquín', 'Susan', 'Thomas', 'Jessica', 'Ramón', 'Sarah',
  'Charles', 'Karen', 'Björn', 'Lisa', 'Matthew', 'Nancy', 'Anthony', 'Inês', 'Mark', 'Sandra',
  'Zoltán', 'Ashley', 'Paul', 'Kimberly', 'Łucja', 'Emily', 'Dmitrij', 'Donna', 'Kenji', 'Michelle',
  'Aarav', 'Ngọc', 'Fatma', 'Ayşe', 'Mehmet', 'Noémie', 'Håkon', 'Ólafur', 'Saoirse', 'Mateo',
];

const CITIES: Array<[string, string, string]> = [
  ['Montréal', 'QC', 'CA'], ['São Paulo', 'SP', 'BR'], ['Zürich', 'ZH', 'CH'], ['Kraków', 'MA', 'PL'], ['Boston', 'MA', 'US'],
  ['Málaga', 'AN', 'ES'], ['Göteborg', 'O', 'SE'], ['Köln', 'NW', 'DE'], ['Chicago', 'IL', 'US'], ['Besançon', 'BFC', 'FR'],
];

interface ObsKind {
  code: string;
  display: string;
  category: 'vital-signs' | 'laboratory' | 'social-history';
  unit?: string;
  /** value = mean ± spread, rounded to `decimals` */
  mean?: number;
  spread?: number;
  decimals?: number;
}

/** Vital signs come as a panel per visit; labs as a few tests per visit. */
const VITALS: ObsKind[] = [
  { code: '8867-4', display: 'Heart rate', category: 'vital-signs', unit: '/min', mean: 75, spread: 20, decimals: 0 },
  { code: '29463-7', display: 'Body weight', category: 'vital-signs', unit: 'kg', mean: 75, spread: 25, decimals: 1 },
  { code: '8302-2', display: 'Body height', category: 'vital-signs', unit: 'cm', mean: 168, spread: 20, decimals: 1 },
  { code: '39156-5', display: 'Body mass index (BMI) [Ratio]', category: 'vital-signs', unit: 'kg/m2', mean: 26, spread: 6, decimals: 1 },
  { code: '9279-1', display: 'Respiratory rate', category: 'vital-signs', unit: '/min', mean: 15, spread: 4, decimals: 0 },
  { code: '8310-5', display: 'Body temperature', category: 'vital-signs', unit: 'Cel', mean: 36.9, spread: 0.8, decimals: 1 },
  { code: '59408-5', display: 'Oxygen saturation in Arterial blood by Pulse oximetry', category: 'vital-signs', unit: '%', mean: 96, spread: 3, decimals: 0 },
];
const BP = { code: '85354-9', display: 'Blood pressure panel with all children optional' };
const LABS: ObsKind[] = [
  { code: '2339-0', display: 'Glucose [Mass/volume] in Blood', category: 'laboratory', unit: 'mg/dL', mean: 100, spread: 40, decimals: 0 },
  { code: '718-7', display: 'Hemoglobin [Mass/volume] in Blood', category: 'laboratory', unit: 'g/dL', mean: 14, spread: 3, decimals: 1 },
  { code: '2093-3', display: 'Cholesterol [Mass/volume] in Serum or Plasma', category: 'laboratory', unit: 'mg/dL', mean: 190, spread: 50, decimals: 0 },
  { code: '4548-4', display: 'Hemoglobin A1c/Hemoglobin.total in Blood', category: 'laboratory', unit: '%', mean: 5.9, spread: 1.5, decimals: 1 },
  { code: '2160-0', display: 'Creatinine [Mass/volume] in Serum or Plasma', category: 'laboratory', unit: 'mg/dL', mean: 1, spread: 0.4, decimals: 2 },
  { code: '2951-2', display: 'Sodium [Moles/volume] in Serum or Plasma', category: 'laboratory', unit: 'mmol/L', mean: 140, spread: 4, decimals: 0 },
  { code: '2823-3', display: 'Potassium [Moles/volume] in Serum or Plasma', category: 'laboratory', unit: 'mmol/L', mean: 4.2, spread: 0.6, decimals: 1 },
  { code: '6690-2', display: 'Leukocytes [#/volume] in Blood by Automated count', category: 'laboratory', unit: '10*3/uL', mean: 7, spread: 3, decimals: 1 },
  { code: '777-3', display: 'Platelets [#/volume] in Blood by Automated count', category: 'laboratory', unit: '10*3/uL', mean: 250, spread: 80, decimals: 0 },
  { code: '1742-6', display: 'Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma', category: 'laboratory', unit: 'U/L', mean: 28, spread: 15, decimals: 0 },
];
const SMOKING = { code: '72166-2', display: 'Tobacco smoking status' };
const SMOKING_VALUES: Array<[string, string]> = [
  ['266919005', 'Never smoker'], ['8517006', 'Ex-smoker'], ['449868002', 'Smokes tobacco daily'],
];

const pickFamily = weightedPicker(FAMILIES);
const pickGiven = weightedPicker(GIVEN);

/** Ten years of data: 2014-01-01 … 2023-12-31 (UTC ms). */
const START = Date.UTC(2014, 0, 1);
const SPAN = Date.UTC(2024, 0, 1) - START;

/** Ids look like the server's own (random UUIDs) but are derived from a name, so references can be built up front. */
export function uuidOf(name: string): string {
  const h = createHash('md5').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
export function patientId(i: number): string {
  return uuidOf(`patient ${i}`);
}
export function practitionerId(i: number): string {
  return uuidOf(`practitioner ${i}`);
}
export function mrn(i: number): string {
  return `MRN${String(1_000_000 + i * 7)}`;
}

function round(v: number, d: number): number {
  const f = 10 ** d;
  return Math.round(v * f) / f;
}

function isoWithOffset(ms: number, offsetMinutes: number): string {
  const local = new Date(ms + offsetMinutes * 60_000).toISOString().slice(0, 19);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const a = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

function quantity(value: number, unit: string) {
  return { value, unit, system: UCUM, code: unit };
}

function category(c: ObsKind['category']) {
  const display = c === 'vital-signs' ? 'Vital signs' : c === 'laboratory' ? 'Laboratory' : 'Social History';
  return [{ coding: [{ system: CATEGORY_SYSTEM, code: c, display }] }];
}

export interface PatientBundle {
  patient: Patient;
  encounters: Encounter[];
  observations: Observation[];
}

/** Patient i with its encounters and observations; `practitioners` = how many exist. */
export function generatePatient(i: number, practitioners: number): PatientBundle {
  const r = rng(i * 2654435761 + 17);
  const pid = patientId(i);
  const female = r() < 0.51;
  const family = pickFamily(r());
  const given = [pickGiven(r())];
  if (r() < 0.3) given.push(pickGiven(r()));
  const birth = new Date(Date.UTC(1930, 0, 1) + Math.floor(r() * 90 * 365.25) * 86_400_000).toISOString().slice(0, 10);
  const [city, state, country] = CITIES[Math.floor(r() * CITIES.length)]!;
  const gp = practitionerId(Math.floor(r() * practitioners));
  const patient: Patient = {
    resourceType: 'Patient',
    id: pid,
    identifier: [
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR', display: 'Medical Record Number' }], text: 'Medical Record Number' },
        system: MRN_SYSTEM,
        value: mrn(i),
      },
      {
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'SS', display: 'Social Security Number' }], text: 'Social Security Number' },
        system: SSN_SYSTEM,
        value: `999-${String(10 + (i % 90))}-${String(1000 + (i % 9000))}`,
      },
    ],
    active: true,
    name: [{ use: 'official', family, given, prefix: r() < 0.5 ? [female ? 'Mrs.' : 'Mr.'] : undefined }],
    telecom: [{ system: 'phone', value: `555-${String(100 + (i % 900))}-${String(1000 + ((i * 7) % 9000))}`, use: 'home' }],
    gender: female ? 'female' : 'male',
    birthDate: birth,
    address: [{ line: [`${1 + (i % 999)} ${family} Street`], city, state, postalCode: String(10000 + (i % 89999)), country }],
    generalPractitioner: [{ reference: `Practitioner/${gp}` }],
  };
  if (!patient.name![0]!.prefix) delete patient.name![0]!.prefix;

  const encounters: Encounter[] = [];
  const observations: Observation[] = [];
  // ~1.6 visits; each a vitals panel (8 obs) or a lab draw (2–6 tests, sometimes smoking
  // status) → ~10 obs per patient; a third of the visits have an Encounter resource.
  const visits = 1 + (r() < 0.6 ? 1 : 0);
  const offset = [-300, -240, 0, 60, 120][Math.floor(r() * 5)]!;
  let n = 0;
  for (let v = 0; v < visits; v++) {
    const when = START + Math.floor(r() * SPAN);
    const effective = isoWithOffset(when, offset);
    let encounterRef: string | undefined;
    if (r() < 0.33) {
      const eid = uuidOf(`encounter ${i} ${v}`);
      encounterRef = `Encounter/${eid}`;
      encounters.push({
        resourceType: 'Encounter',
        id: eid,
        status: 'finished',
        class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB', display: 'ambulatory' },
        type: [{ coding: [{ system: 'http://snomed.info/sct', code: '185349003', display: 'Encounter for check up (procedure)' }], text: 'Encounter for check up' }],
        subject: { reference: `Patient/${pid}` },
        participant: [{ individual: { reference: `Practitioner/${r() < 0.7 ? gp : practitionerId(Math.floor(r() * practitioners))}` } }],
        period: { start: effective, end: isoWithOffset(when + 30 * 60_000, offset) },
      });
    }
    const base = (kind: ObsKind | typeof BP | typeof SMOKING, cat: ObsKind['category']): Observation => {
      const o: Observation = {
        resourceType: 'Observation',
        id: uuidOf(`observation ${i} ${n++}`),
        status: 'final',
        category: category(cat),
        code: { coding: [{ system: LOINC, code: kind.code, display: kind.display }], text: kind.display },
        subject: { reference: `Patient/${pid}` },
        effectiveDateTime: effective,
        issued: new Date(when + 3_600_000).toISOString(),
      };
      if (encounterRef) o.encounter = { reference: encounterRef };
      return o;
    };
    const valued = (k: ObsKind): Observation => {
      const o = base(k, k.category);
      o.valueQuantity = quantity(round(k.mean! + (r() * 2 - 1) * k.spread!, k.decimals!), k.unit!);
      return o;
    };
    if (r() < 0.55) {
      for (const k of VITALS) observations.push(valued(k));
      const bp = base(BP, 'vital-signs');
      bp.component = [
        { code: { coding: [{ system: LOINC, code: '8480-6', display: 'Systolic blood pressure' }] }, valueQuantity: quantity(Math.round(95 + r() * 60), 'mm[Hg]') },
        { code: { coding: [{ system: LOINC, code: '8462-4', display: 'Diastolic blood pressure' }] }, valueQuantity: quantity(Math.round(60 + r() * 35), 'mm[Hg]') },
      ];
      observations.push(bp);
    } else {
      const tests = 2 + Math.floor(r() * 5);
      const start = Math.floor(r() * LABS.length);
      for (let t = 0; t < tests; t++) observations.push(valued(LABS[(start + t * 3) % LABS.length]!));
      if (r() < 0.3) {
        const sm = base(SMOKING, 'social-history');
        const [code, display] = SMOKING_VALUES[Math.floor(r() * SMOKING_VALUES.length)]!;
        sm.valueCodeableConcept = { coding: [{ system: 'http://snomed.info/sct', code, display }], text: display };
        observations.push(sm);
      }
    }
  }
  return { patient, encounters, observations };
}

export function generatePractitioner(i: number): Practitioner {
  const r = rng(i * 40503 + 99);
  return {
    resourceType: 'Practitioner',
    id: practitionerId(i),
    identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: String(1_234_500_000 + i) }],
    active: true,
    name: [{ family: pickFamily(r()), given: [pickGiven(r())], prefix: ['Dr.'] }],
    gender: r() < 0.5 ? 'female' : 'male',
  };
}

/** All resources of patients [from, to), in write order (practitioners are written first, separately). */
export function* resourcesFor(from: number, to: number, practitioners: number): Generator<Resource> {
  for (let i = from; i < to; i++) {
    const b = generatePatient(i, practitioners);
    yield b.patient;
    yield* b.encounters;
    yield* b.observations;
  }
}
