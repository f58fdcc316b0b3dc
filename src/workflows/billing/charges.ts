import { createHash } from 'node:crypto';
import type { ChargeItem, Encounter, Location, MedicationDispense, Reference, Resource, ServiceRequest } from 'fhir/r4.js';
import { byApiCaller, isSystemWrite } from '../../subscriptions/write-context.js';
import type { BeforeWriteHook, StoreTransaction } from '../../storage/resource-store.js';
import { physicalType } from '../inpatient.js';
import { referenceTo, replacedVersion } from '../scheduling-rules.js';
import { applyRate, money, parseDecimal } from './money.js';
import { CHARGE_CODE_SYSTEM, type PriceList, type PricedDefinition } from './price-list.js';

/**
 * Charges the server creates itself (seed 004 FR-BL-001 "auto-generate invoices from
 * encounters", FR-IP-002 "trigger automatic billing"), as before-commit derived writes: the
 * ChargeItem is stored in the transaction of the write that earned it, so there is never a
 * finished encounter without its charge nor a charge without its cause.
 *
 * | source write | charge (code of CodeSystem charge-code) |
 * |---|---|
 * | Encounter, not inpatient, into `finished` | consultation: CONS-FU / CONS-SPEC when Encounter.type says so, else CONS-GP |
 * | Encounter class IMP / ACUTE / NONAC into `finished` (discharge) | BED-DAY × days of Encounter.period (started 24 h count, at least 1), each day priced by the ward the patient spent most of it in (location entries with periods; a transfer gives one charge per ward), else by the ward of the last bed |
 * | MedicationDispense into `completed` | MED-DISP × MedicationDispense.quantity (per unit) |
 * | ServiceRequest with a lab-test code into `active` (ordered) or `completed` | LAB-ORDER priced per test (+ LAB-STAT when priority stat); `revoked` / `entered-in-error` aborts them while not invoiced |
 *
 * Idempotent: a charge's id is derived from its source and code (identifier
 * `charge-source` = `Encounter/123#CONS-GP`), so a source finished twice (or two racing writes)
 * is charged once. Only transitions charge: a resource created already finished / completed is
 * history (Synthea), except a MedicationDispense created completed (a one-step dispense) and a
 * lab order created active (ordered). Only
 * API requests and server jobs charge; bulk loads ($import, npm run import, MLLP) do not.
 */
export const CHARGE_SOURCE_SYSTEM = 'https://fhir.hospital.example.org/sid/charge-source';
export const LAB_TEST_SYSTEM = 'https://fhir.hospital.example.org/CodeSystem/lab-test';
const INPATIENT_CLASSES = new Set(['IMP', 'ACUTE', 'NONAC']);
const DAY_MS = 24 * 60 * 60 * 1000;

export function chargeId(source: string, code: string): string {
  return `chg-${createHash('sha256').update(`${source}#${code}`).digest('hex').slice(0, 40)}`;
}

interface ChargeRequest {
  source: string;
  definition: PricedDefinition;
  context: Resource | undefined;
  quantity: number;
  subject: Reference;
  encounter?: string;
  occurrence: string;
  service?: Reference;
  /** Tells apart several charges of one code from one source (bed days per ward); none for the first. */
  part?: string;
}

export function chargeHook(prices: PriceList): BeforeWriteHook {
  return async (tx, change) => {
    const type = change.resourceType;
    if (type !== 'Encounter' && type !== 'MedicationDispense' && type !== 'ServiceRequest') return;
    const after = change.resource;
    if (!after) return;
    const status = (after as { status?: string }).status ?? '';
    const done = DONE[type]!;
    const cancelled = type === 'ServiceRequest' && CANCELLED_ORDER.has(status);
    if (!done.includes(status) && !cancelled) return;
    // Bulk loads ($import, npm run import, MLLP feeds) bring history: charged are the writes of
    // API requests and of the server's own jobs. Also spares bulk puts a locked read each.
    const live = byApiCaller() || isSystemWrite();
    if (!live) return;
    const source = `${type}/${change.id}`;
    if (cancelled) return abortCharges(tx, prices, source);
    const before = await replacedVersion<Resource>(tx, change);
    if (done.includes((before as { status?: string } | undefined)?.status ?? '')) return;
    if (!before && type === 'Encounter') return;
    const requests =
      type === 'Encounter'
        ? await encounterCharges(tx, prices, after as Encounter, source, change.lastUpdated)
        : type === 'MedicationDispense'
          ? dispenseCharges(prices, after as MedicationDispense, source, change.lastUpdated)
          : labCharges(prices, after as ServiceRequest, source, change.lastUpdated);
    for (const request of requests) await createCharge(tx, prices, request);
  };
}

/** Statuses that earn the charge (the first one reached does; later ones find it made). */
const DONE: Record<string, string[]> = { Encounter: ['finished'], MedicationDispense: ['completed'], ServiceRequest: ['active', 'completed'] };
const CANCELLED_ORDER = new Set(['revoked', 'entered-in-error']);

/** A lab order withdrawn: its charges not yet invoiced are aborted (invoiced ones are refunded by the accountant). */
async function abortCharges(tx: StoreTransaction, prices: PriceList, source: string): Promise<void> {
  for (const code of ['LAB-ORDER', 'LAB-STAT']) {
    if (!prices.definitionOf(code)) continue;
    const current = await tx.readForUpdate('ChargeItem', chargeId(source, code));
    if (!current?.json || current.deleted) continue;
    const charge = JSON.parse(current.json) as ChargeItem;
    if (charge.status !== 'billable') continue;
    const aborted: ChargeItem = { ...charge, status: 'aborted' };
    await tx.update(aborted, current, 'PUT');
  }
}

async function createCharge(tx: StoreTransaction, prices: PriceList, r: ChargeRequest): Promise<void> {
  const key = r.part ? `${r.definition.code}@${r.part}` : r.definition.code;
  const id = chargeId(r.source, key);
  const existing = await tx.read('ChargeItem', id);
  if (existing) return;
  const unit = r.definition.unitPrice(r.context) ?? 0n;
  const total = applyRate(unit, parseDecimal(r.quantity) ?? { units: 1n, scale: 0 });
  const charge: ChargeItem = {
    resourceType: 'ChargeItem',
    identifier: [{ system: CHARGE_SOURCE_SYSTEM, value: `${r.source}#${key}` }],
    definitionCanonical: [r.definition.url],
    status: 'billable',
    code: { coding: [{ system: CHARGE_CODE_SYSTEM, code: r.definition.code, display: prices.display(r.definition.code) }] },
    subject: r.subject,
    ...(r.encounter ? { context: { reference: r.encounter } } : {}),
    occurrenceDateTime: r.occurrence,
    quantity: { value: r.quantity },
    // The total of this charge at today's price list (quantity × unit price), kept so a later price change does not re-price it.
    priceOverride: money(total, prices.currency),
    enteredDate: new Date().toISOString(),
    ...(r.service ? { service: [r.service] } : {}),
    supportingInformation: [{ reference: r.source }],
  };
  await tx.create(charge, 'POST', id);
}

function patientOf(reference: Reference | undefined): Reference | undefined {
  const id = referenceTo('Patient', reference?.reference);
  return id ? { reference: `Patient/${id}` } : undefined;
}

async function encounterCharges(tx: StoreTransaction, prices: PriceList, encounter: Encounter, source: string, now: string): Promise<ChargeRequest[]> {
  const subject = patientOf(encounter.subject);
  if (!subject) return [];
  const occurrence = encounter.period?.end ?? now;
  if (!INPATIENT_CLASSES.has(encounter.class?.code ?? '')) {
    const definition = prices.definitionFor('CONSULTATION', encounter);
    return definition ? [{ source, definition, context: encounter, quantity: 1, subject, encounter: source, occurrence }] : [];
  }
  const definition = prices.definitionOf('BED-DAY');
  if (!definition) return [];
  const start = encounter.period?.start ?? encounter.location?.find((l) => l.period?.start)?.period?.start;
  const end = encounter.period?.end ?? now;
  const days = start ? Math.max(1, Math.ceil((Date.parse(end) - Date.parse(start)) / DAY_MS)) : 1;
  const quantity = Number.isFinite(days) ? days : 1;
  const common = { source, definition, subject, encounter: source, occurrence: end };
  const perWard = start && Number.isFinite(days) ? await bedDaysByWard(tx, encounter, Date.parse(start), days, Date.parse(end)) : [];
  if (perWard.length === 0) return [{ ...common, context: await lastWard(tx, encounter), quantity }];
  // The ward of the first day keeps the charge id of a single-ward stay; the others are parts.
  return perWard.map((w, i) => ({ ...common, context: w.ward, quantity: w.days, ...(i > 0 ? { part: `Location/${w.ward.id}` } : {}) }));
}

/**
 * Days of a stay per ward, for transfers (FR-IP-002, issue 14 §3): day k is the k-th started
 * 24 h of the stay, charged at the ward whose bed the patient occupied longest in it (the later
 * on a tie), from the location entries with a period start (end: the entry's, else the
 * encounter's). Wards in order of their first day; empty when no entry has a period.
 */
async function bedDaysByWard(tx: StoreTransaction, encounter: Encounter, start: number, days: number, end: number): Promise<Array<{ ward: Location; days: number }>> {
  const segments: Array<{ ward: Location; from: number; to: number }> = [];
  for (const entry of encounter.location ?? []) {
    const id = referenceTo('Location', entry.location.reference);
    if (!id || !entry.period?.start || entry.status === 'planned') continue;
    const ward = await wardOf(tx, id);
    if (!ward) continue;
    segments.push({ ward, from: Date.parse(entry.period.start), to: entry.period.end ? Date.parse(entry.period.end) : end });
  }
  if (segments.length === 0) return [];
  const out = new Map<string, { ward: Location; days: number }>();
  let current = segments[0]!.ward;
  for (let k = 0; k < days; k++) {
    const from = start + k * DAY_MS;
    const to = from + DAY_MS;
    let best = 0;
    for (const s of segments) {
      const overlap = Math.min(to, s.to) - Math.max(from, s.from);
      if (overlap > 0 && overlap >= best) {
        best = overlap;
        current = s.ward;
      }
    }
    // A day no entry covers stays at the ward of the day before.
    const tally = out.get(current.id!) ?? { ward: current, days: 0 };
    tally.days++;
    out.set(current.id!, tally);
  }
  return [...out.values()];
}

/** The ward (physicalType `wa`) of a bed, climbing `partOf` through a room; the bed itself when it has none. */
async function wardOf(tx: StoreTransaction, bedId: string): Promise<Location | undefined> {
  let location = await readLocation(tx, bedId);
  if (!location || physicalType(location) !== 'bd') return undefined;
  const bed = location;
  for (let hops = 0; hops < 3 && location; hops++) {
    if (physicalType(location) === 'wa') return location;
    const parent = referenceTo('Location', location.partOf?.reference);
    location = parent ? await readLocation(tx, parent) : undefined;
  }
  return bed;
}

/** The ward of the encounter's last bed (wardOf). */
async function lastWard(tx: StoreTransaction, encounter: Encounter): Promise<Location | undefined> {
  const ids = (encounter.location ?? []).map((l) => referenceTo('Location', l.location.reference)).filter((id): id is string => id !== undefined);
  for (const id of ids.reverse()) {
    const ward = await wardOf(tx, id);
    if (ward) return ward;
  }
  return undefined;
}

async function readLocation(tx: StoreTransaction, id: string): Promise<Location | undefined> {
  const stored = await tx.read('Location', id);
  return stored?.json && !stored.deleted ? (JSON.parse(stored.json) as Location) : undefined;
}

function dispenseCharges(prices: PriceList, dispense: MedicationDispense, source: string, now: string): ChargeRequest[] {
  const subject = patientOf(dispense.subject);
  const definition = prices.definitionOf('MED-DISP');
  if (!subject || !definition) return [];
  const quantity = dispense.quantity?.value !== undefined && dispense.quantity.value > 0 ? dispense.quantity.value : 1;
  const encounter = referenceTo('Encounter', dispense.context?.reference);
  return [{ source, definition, context: dispense, quantity, subject, encounter: encounter ? `Encounter/${encounter}` : undefined, occurrence: dispense.whenHandedOver ?? now, service: { reference: source } }];
}

function labCharges(prices: PriceList, order: ServiceRequest, source: string, now: string): ChargeRequest[] {
  if (!order.code?.coding?.some((c) => c.system === LAB_TEST_SYSTEM)) return [];
  const subject = patientOf(order.subject);
  const test = prices.definitionOf('LAB-ORDER');
  if (!subject || !test) return [];
  const encounter = referenceTo('Encounter', order.encounter?.reference);
  const common = { source, context: order, quantity: 1, subject, encounter: encounter ? `Encounter/${encounter}` : undefined, occurrence: now };
  const stat = order.priority === 'stat' ? prices.definitionOf('LAB-STAT') : undefined;
  return [{ ...common, definition: test }, ...(stat ? [{ ...common, definition: stat }] : [])];
}
