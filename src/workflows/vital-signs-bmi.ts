import { createHash } from 'node:crypto';
import type { Observation, Quantity } from 'fhir/r4.js';
import { bodyMeasuresOfEncounter } from '../storage/clinical-records-store.js';
import type { StoreTransaction } from '../storage/resource-store.js';
import type { ResourceChange } from '../storage/types.js';
import { bySignedInUser } from '../subscriptions/write-context.js';
import { referenceTo } from './scheduling-rules.js';
import { LOINC, UCUM } from './vital-signs-ranges.js';

/**
 * The derived BMI (seed 004 FR-EMR-004 "auto-calculate BMI", issue 13 §2). When a signed-in user
 * (not a backend client, feed or import: those bring their own BMI, as Synthea does) writes a
 * body weight (29463-7) or body height (8302-2) vital sign of an encounter and the encounter has
 * the other one too, the server writes, in the same transaction, one BMI Observation (39156-5,
 * kg/m2, one decimal) per encounter: id `bmi-<hash of the encounter id>`, `derivedFrom` the
 * weight and the height used (the latest of each), effective the later of their times. A new
 * or changed weight or height updates it (a new version); an unchanged result writes nothing.
 * Deleting a weight or height leaves the BMI as it was (its derivedFrom still names the source).
 */
const WEIGHT = '29463-7';
const HEIGHT = '8302-2';
const BMI_CODING = { system: LOINC, code: '39156-5', display: 'Body mass index (BMI) [Ratio]' };
const UNUSABLE = new Set(['entered-in-error', 'cancelled']);

export function bmiObservationId(encounterId: string): string {
  return `bmi-${createHash('sha256').update(encounterId).digest('hex').slice(0, 40)}`;
}

function kilograms(q: Quantity | undefined): number | undefined {
  if (q?.value === undefined || q.system !== UCUM) return undefined;
  return q.code === 'kg' ? q.value : q.code === 'g' ? q.value / 1000 : q.code === '[lb_av]' ? q.value * 0.45359237 : undefined;
}

function metres(q: Quantity | undefined): number | undefined {
  if (q?.value === undefined || q.system !== UCUM) return undefined;
  return q.code === 'cm' ? q.value / 100 : q.code === '[in_i]' ? q.value * 0.0254 : q.code === 'm' ? q.value : undefined;
}

function codeOf(o: Observation): string | undefined {
  return o.code.coding?.find((c) => c.system === LOINC && (c.code === WEIGHT || c.code === HEIGHT))?.code;
}

function effective(o: Observation): string | undefined {
  return o.effectiveDateTime ?? o.effectivePeriod?.end ?? o.effectivePeriod?.start ?? o.issued;
}

/** Writes or updates the encounter's BMI after `written` (a weight or height); the vital-signs hook flags it. */
export async function deriveBmi(tx: StoreTransaction, change: ResourceChange, written: Observation): Promise<void> {
  // Backend clients, feeds and imports bring their own BMI (Synthea does): derived for signed-in users' writes.
  if (!bySignedInUser()) return;
  const code = codeOf(written);
  const encounterId = referenceTo('Encounter', written.encounter?.reference);
  if (!code || !encounterId || UNUSABLE.has(written.status)) return;
  const others = await bodyMeasuresOfEncounter(await tx.executor(), encounterId);
  const otherCode = code === WEIGHT ? HEIGHT : WEIGHT;
  const otherRow = others.find((r) => r.code === otherCode && r.id !== change.id && !UNUSABLE.has((JSON.parse(r.json) as Observation).status));
  if (!otherRow) return;
  const other = JSON.parse(otherRow.json) as Observation;
  const [weight, height] = code === WEIGHT ? [{ o: written, id: change.id }, { o: other, id: otherRow.id }] : [{ o: other, id: otherRow.id }, { o: written, id: change.id }];
  const kg = kilograms(weight.o.valueQuantity);
  const m = metres(height.o.valueQuantity);
  if (kg === undefined || m === undefined || m <= 0) return;
  const value = Math.round((kg / (m * m)) * 10) / 10;
  const when = [effective(weight.o), effective(height.o)].filter((t): t is string => t !== undefined).sort((a, b) => Date.parse(b) - Date.parse(a))[0];
  const derivedFrom = [{ reference: `Observation/${weight.id}` }, { reference: `Observation/${height.id}` }];

  const id = bmiObservationId(encounterId);
  const current = await tx.readForUpdate('Observation', id);
  if (current?.json && !current.deleted) {
    const old = JSON.parse(current.json) as Observation;
    if (old.valueQuantity?.value === value && JSON.stringify(old.derivedFrom) === JSON.stringify(derivedFrom) && effective(old) === when) return;
  }
  const bmi: Observation = {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs', display: 'Vital Signs' }] }],
    code: { coding: [BMI_CODING], text: 'BMI' },
    ...(written.subject ? { subject: written.subject } : {}),
    encounter: { reference: `Encounter/${encounterId}` },
    ...(when ? { effectiveDateTime: when } : {}),
    valueQuantity: { value, unit: 'kg/m2', system: UCUM, code: 'kg/m2' },
    derivedFrom,
    note: [{ text: 'Derived by the server from the weight and height of this encounter.' }],
  };
  if (current?.json && !current.deleted) await tx.update(bmi, current);
  else await tx.create(bmi, 'PUT', id, current);
}
