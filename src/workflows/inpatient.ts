import type { Composition, Encounter, EncounterLocation, Location } from 'fhir/r4.js';
import { lockFreeBed, referencing } from '../storage/front-desk-store.js';
import type { BeforeWriteHook, StoreTransaction } from '../storage/resource-store.js';
import type { ResourceChange } from '../storage/types.js';
import { businessRule, referenceTo, replacedVersion } from './scheduling-rules.js';

/**
 * Bed management (seed 004 FR-IP-001..003, issue 12 §4), run before commit on every write
 * path. Wards and beds are Locations (physicalType `wa` / `bd`, a bed's `partOf` its ward);
 * a bed's state is its `operationalStatus` (HL7 v2 table 0116: U unoccupied, O occupied,
 * K contaminated, C closed, H housekeeping, I isolated).
 *
 * - Admission: an Encounter that is not finished and names a bed as its current location
 *   (location.status active or planned, or no status and no period end) takes the bed: the
 *   bed's row is locked (SELECT … FOR UPDATE), it must be active and unoccupied (409
 *   otherwise), and it becomes O in the same transaction. Of concurrent admissions to one bed
 *   exactly one wins.
 * - Admission to a ward (a current location of physicalType `wa`) without a bed: the server
 *   picks a free bed of the ward (lowest name; SKIP LOCKED, so concurrent admissions take
 *   different beds) and adds it to `Encounter.location`; 409 when the ward's beds are all taken.
 * - Transfer: naming another bed frees the old one; the old bed stays in `Encounter.location`
 *   as history (status completed, period end now), filled in by the server when the client
 *   just replaced it.
 * - Discharge: status finished with a bed held needs a discharge summary (a Composition of
 *   type LOINC 18842-5 whose encounter is this one; 422 otherwise) and frees the bed.
 *   Cancelling, entered-in-error and delete free it too.
 *
 * - An occupied bed cannot be marked free (or deleted) while its encounter is in it (409).
 *
 * Locations that are not beds (Synthea's hospitals, HL7 v2 point-of-care displays) are left
 * alone, and finished encounters (history) hold nothing, so external data keeps loading.
 */

export const BED_STATUS_SYSTEM = 'http://terminology.hl7.org/CodeSystem/v2-0116';
export const PHYSICAL_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/location-physical-type';
export const DISCHARGE_SUMMARY = { system: 'http://loinc.org', code: '18842-5' };

const BED_STATUS_TEXT: Record<string, string> = {
  O: 'is occupied',
  K: 'is contaminated',
  C: 'is closed',
  H: 'is being cleaned (housekeeping)',
  I: 'is isolated',
};
const BED_STATUS_DISPLAY: Record<string, string> = { O: 'Occupied', U: 'Unoccupied' };

/** What the bed rules saw an Encounter write do, for the stay rules registered after them (inpatient-discharge.ts). */
export const bedTransitions = new WeakMap<ResourceChange, 'admission' | 'discharge'>();

/** Encounter statuses in which the patient no longer holds a bed. */
const ENDED = new Set(['finished', 'cancelled', 'entered-in-error']);

export function physicalType(location: Location): string | undefined {
  return location.physicalType?.coding?.find((c) => c.system === PHYSICAL_TYPE_SYSTEM || c.system === undefined)?.code;
}

export function bedStatus(location: Location): string | undefined {
  return location.operationalStatus?.system === BED_STATUS_SYSTEM || location.operationalStatus?.system === undefined ? location.operationalStatus?.code : undefined;
}

function isCurrent(entry: EncounterLocation): boolean {
  if (entry.status === 'active' || entry.status === 'planned') return true;
  return entry.status === undefined && entry.period?.end === undefined;
}

/** Ids of the Locations an encounter currently occupies (beds among them; others are ignored later). */
function currentLocations(encounter: Encounter | undefined): string[] {
  if (!encounter || ENDED.has(encounter.status)) return [];
  const ids = (encounter.location ?? []).filter(isCurrent).map((l) => referenceTo('Location', l.location.reference));
  return [...new Set(ids.filter((id): id is string => id !== undefined))].sort();
}

export const inpatientHook: BeforeWriteHook = async (tx, change) => {
  if (change.resourceType === 'Location') return guardOccupiedBed(tx, change);
  if (change.resourceType !== 'Encounter') return;
  const after = change.resource as Encounter | undefined;
  // Fast path for history and outpatient data: nothing held before (a new finished or
  // bed-less encounter needs no read at all).
  if (change.method === 'POST' && currentLocations(after).length === 0) return;
  const before = await replacedVersion<Encounter>(tx, change);
  const held = currentLocations(before);
  const wanted = currentLocations(after);
  const release = held.filter((id) => !wanted.includes(id));
  const take = wanted.filter((id) => !held.includes(id));
  if (release.length === 0 && take.length === 0) return;
  await tx.prefetchForUpdate([...release, ...take].map((id) => ({ resourceType: 'Location', id })));
  const beds = new Map<string, Location>();
  const wards = new Map<string, Location>();
  for (const id of [...release, ...take]) {
    const current = await tx.readForUpdate('Location', id);
    if (!current?.json || current.deleted) continue;
    const location = JSON.parse(current.json) as Location;
    if (physicalType(location) === 'bd') beds.set(id, location);
    else if (physicalType(location) === 'wa') wards.set(id, location);
  }
  const releasedBeds = release.filter((id) => beds.has(id));
  const takenBeds = take.filter((id) => beds.has(id));
  let admitted = after;
  const ward = take.find((id) => wards.has(id));
  if (admitted && ward && takenBeds.length === 0 && !(await holdsBed(tx, wanted.filter((id) => held.includes(id))))) {
    // Admission to a ward without naming a bed: the server allocates a free one.
    const bedId = await allocateBed(tx, ward, wards.get(ward)!);
    if (bedId) {
      const current = await tx.readForUpdate('Location', bedId);
      const location = JSON.parse(current!.json!) as Location;
      beds.set(bedId, location);
      takenBeds.push(bedId);
      admitted = { ...admitted, location: [...(admitted.location ?? []), { location: { reference: `Location/${bedId}`, ...(location.name ? { display: location.name } : {}) }, status: 'active' }] };
    }
  }
  if (releasedBeds.length === 0 && takenBeds.length === 0) return;
  if (after?.status === 'finished' && releasedBeds.length > 0) await requireDischargeSummary(tx, change.id);
  // The stay rules that follow (inpatient-discharge.ts: episode of care, medication list, follow-up).
  if (after?.status === 'finished' && releasedBeds.length > 0) bedTransitions.set(change, 'discharge');
  else if (takenBeds.length > 0) bedTransitions.set(change, 'admission');
  const now = new Date().toISOString();
  for (const id of takenBeds) {
    const location = beds.get(id)!;
    const label = location.name ? `Bed ${location.name}` : `Bed Location/${id}`;
    if (location.status && location.status !== 'active') throw businessRule('conflict', `${label} is ${location.status} and cannot take a patient.`, ['Encounter.location']);
    const status = bedStatus(location) ?? 'U';
    if (status !== 'U') throw businessRule('conflict', `${label} ${BED_STATUS_TEXT[status] ?? `is not free (status ${status})`}. Please choose another bed.`, ['Encounter.location']);
    await setBedStatus(tx, id, location, 'O');
  }
  for (const id of releasedBeds) {
    const location = beds.get(id)!;
    if (bedStatus(location) === 'O') await setBedStatus(tx, id, location, 'U');
  }
  if (admitted) change.resource = withBedHistory(admitted, before, releasedBeds, takenBeds, now);
};

/** Whether one of these Locations (already held by the encounter) is a bed. */
async function holdsBed(tx: StoreTransaction, ids: readonly string[]): Promise<boolean> {
  for (const id of ids) {
    const current = await tx.read('Location', id);
    if (current?.json && !current.deleted && physicalType(JSON.parse(current.json) as Location) === 'bd') return true;
  }
  return false;
}

/**
 * A free bed of the ward, locked (FR-IP-002 "allocate bed atomically"); undefined for a ward
 * that has no beds at all (not bed-managed: external data). A ward whose beds are all taken
 * refuses the admission.
 */
async function allocateBed(tx: StoreTransaction, wardId: string, ward: Location): Promise<string | undefined> {
  const db = await tx.executor();
  const free = await lockFreeBed(db, wardId);
  if (free) return free;
  const children = await referencing(db, 'Location', 'partof', 'Location', wardId);
  const rooms = children.filter((c) => physicalType(JSON.parse(c.json) as Location) !== 'bd');
  const hasBeds =
    children.length > rooms.length ||
    (await Promise.all(rooms.map((r) => referencing(db, 'Location', 'partof', 'Location', r.id)))).some((list) => list.some((c) => physicalType(JSON.parse(c.json) as Location) === 'bd'));
  if (!hasBeds) return undefined;
  throw businessRule('conflict', `There is no free bed in ${ward.name ?? `Location/${wardId}`} right now. Please choose another ward.`, ['Encounter.location']);
}

/** Beds this transaction is setting itself (admission, transfer, discharge): not guarded. */
const settingBeds = new WeakMap<StoreTransaction, Set<string>>();

async function setBedStatus(tx: StoreTransaction, id: string, location: Location, code: 'O' | 'U'): Promise<void> {
  const current = await tx.readForUpdate('Location', id);
  if (!current) return;
  const next: Location = { ...location, operationalStatus: { system: BED_STATUS_SYSTEM, code, display: BED_STATUS_DISPLAY[code] } };
  const own = settingBeds.get(tx) ?? new Set<string>();
  settingBeds.set(tx, own.add(id));
  await tx.update(next, current, 'PUT');
  own.delete(id);
}

/**
 * FR-IP-001 "prevent double-allocation": an occupied bed is not marked otherwise (or deleted)
 * while an encounter is in it — that would let a second admission in. Discharge or transfer
 * the patient instead.
 */
async function guardOccupiedBed(tx: StoreTransaction, change: ResourceChange): Promise<void> {
  if (change.method === 'POST' || settingBeds.get(tx)?.has(change.id)) return;
  const after = change.resource as Location | undefined;
  if (after && bedStatus(after) === 'O') return;
  const before = await replacedVersion<Location>(tx, change);
  if (!before || physicalType(before) !== 'bd' || bedStatus(before) !== 'O') return;
  for (const row of await referencing(await tx.executor(), 'Encounter', 'location', 'Location', change.id)) {
    if (!currentLocations(JSON.parse(row.json) as Encounter).includes(change.id)) continue;
    const label = before.name ? `Bed ${before.name}` : `Bed Location/${change.id}`;
    throw businessRule('conflict', `${label} is occupied by Encounter/${row.id}; discharge or transfer the patient to free it.`, ['Location.operationalStatus']);
  }
}

/** FR-IP-003: "System SHALL require discharge summary" before an inpatient stay is finished. */
async function requireDischargeSummary(tx: StoreTransaction, encounterId: string): Promise<void> {
  const compositions = await referencing(await tx.executor(), 'Composition', 'encounter', 'Encounter', encounterId);
  const found = compositions.some(({ json }) => {
    const c = JSON.parse(json) as Composition;
    return c.status !== 'entered-in-error' && (c.type.coding ?? []).some((t) => t.system === DISCHARGE_SUMMARY.system && t.code === DISCHARGE_SUMMARY.code);
  });
  if (!found) {
    throw businessRule(
      'invalid',
      `The patient cannot be discharged yet: write the discharge summary first (a Composition of type LOINC ${DISCHARGE_SUMMARY.code} for Encounter/${encounterId}).`,
      ['Encounter.status'],
    );
  }
}

/**
 * The encounter with its bed history kept: a bed given up stays listed as completed with its
 * period ended now (also when the client dropped it from the list), a bed taken gets its
 * period start.
 */
function withBedHistory(after: Encounter, before: Encounter | undefined, released: readonly string[], taken: readonly string[], now: string): Encounter {
  const entries = [...(after.location ?? [])];
  for (const id of released) {
    const i = entries.findIndex((l) => referenceTo('Location', l.location.reference) === id);
    if (i < 0) {
      const old = before?.location?.find((l) => referenceTo('Location', l.location.reference) === id);
      if (old) entries.unshift({ ...old, status: 'completed', period: { ...old.period, end: now } });
      continue;
    }
    const entry = entries[i]!;
    entries[i] = { ...entry, status: 'completed', period: { ...entry.period, end: entry.period?.end ?? now } };
  }
  for (const id of taken) {
    const i = entries.findIndex((l) => referenceTo('Location', l.location.reference) === id && isCurrent(l));
    const entry = entries[i];
    if (entry && entry.period?.start === undefined) entries[i] = { ...entry, status: entry.status ?? 'active', period: { ...entry.period, start: now } };
  }
  return { ...after, location: entries };
}
