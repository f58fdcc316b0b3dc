import type { Encounter, Location, Parameters, ParametersParameter } from 'fhir/r4.js';
import { errors } from '../fhir/errors.js';
import type { Db } from '../storage/db.js';
import { referencing } from '../storage/front-desk-store.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { bedStatus, physicalType } from './inpatient.js';
import { referenceTo } from './scheduling-rules.js';

/**
 * `GET /fhir/Location/[ward]/$occupancy` (seed 004 FR-IP-001 "track bed status in real time,
 * calculate occupancy rates"): the beds of a ward (Locations of physicalType `bd` whose
 * `partOf` is the ward, or a room of it) as they are now, read from the database at request
 * time — the bed statuses the admission / transfer / discharge rules keep (inpatient.ts) and
 * the encounter in each occupied bed.
 *
 * Parameters: ward (Reference), total, occupied, free, unavailable (integers), occupancyRate
 * (decimal, occupied / total, 0 for a ward without beds) and one `bed` per bed with parts
 * location, status (v2-0116 code: U free, O occupied, K/C/H/I unavailable) and encounter.
 */

const MAX_DEPTH = 3;
const ENDED = new Set(['finished', 'cancelled', 'entered-in-error']);

async function bedsUnder(db: Db, parentId: string, depth: number): Promise<Array<{ id: string; location: Location }>> {
  const beds: Array<{ id: string; location: Location }> = [];
  for (const child of await referencing(db, 'Location', 'partof', 'Location', parentId)) {
    const location = JSON.parse(child.json) as Location;
    if (physicalType(location) === 'bd') beds.push({ id: child.id, location });
    else if (depth < MAX_DEPTH) beds.push(...(await bedsUnder(db, child.id, depth + 1)));
  }
  return beds;
}

async function occupantOf(db: Db, bedId: string): Promise<string | undefined> {
  for (const row of await referencing(db, 'Encounter', 'location', 'Location', bedId)) {
    const encounter = JSON.parse(row.json) as Encounter;
    if (ENDED.has(encounter.status)) continue;
    const here = (encounter.location ?? []).some(
      (l) => referenceTo('Location', l.location.reference) === bedId && (l.status === 'active' || l.status === 'planned' || (l.status === undefined && !l.period?.end)),
    );
    if (here) return `Encounter/${row.id}`;
  }
  return undefined;
}

export async function wardOccupancy(store: ResourceStore, wardId: string): Promise<Parameters> {
  const found = await store.read('Location', wardId);
  if (!found?.json || found.deleted) throw errors.notFound(`Location/${wardId} is not known`);
  const ward = JSON.parse(found.json) as Location;
  if (physicalType(ward) !== 'wa') throw errors.incorrect(`Location/${wardId} is not a ward (physicalType wa)`);
  const beds = await bedsUnder(store.db, wardId, 1);
  let occupied = 0;
  let free = 0;
  const bedParams: ParametersParameter[] = [];
  for (const { id, location } of beds) {
    const status = location.status && location.status !== 'active' ? 'C' : (bedStatus(location) ?? 'U');
    if (status === 'O') occupied++;
    else if (status === 'U') free++;
    const part: ParametersParameter[] = [
      { name: 'location', valueReference: { reference: `Location/${id}`, ...(location.name ? { display: location.name } : {}) } },
      { name: 'status', valueCode: status },
    ];
    const encounter = status === 'O' ? await occupantOf(store.db, id) : undefined;
    if (encounter) part.push({ name: 'encounter', valueReference: { reference: encounter } });
    bedParams.push({ name: 'bed', part });
  }
  const total = beds.length;
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'ward', valueReference: { reference: `Location/${wardId}`, ...(ward.name ? { display: ward.name } : {}) } },
      { name: 'total', valueInteger: total },
      { name: 'occupied', valueInteger: occupied },
      { name: 'free', valueInteger: free },
      { name: 'unavailable', valueInteger: total - occupied - free },
      { name: 'occupancyRate', valueDecimal: total === 0 ? 0 : Math.round((occupied / total) * 10000) / 10000 },
      ...bedParams,
    ],
  };
}
