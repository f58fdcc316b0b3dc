import type { Bundle, Encounter, Location, Patient } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { nameOf, percent } from '../format.js';
import { Panel, Stat, useLoad } from '../ui.js';

export interface Ward {
  ward: Location;
  beds: Array<{ bed: Location; occupied: boolean; unavailable: boolean; patient?: Patient }>;
  occupied: number;
  free: number;
  total: number;
}

const physical = (l: Location) => l.physicalType?.coding?.[0]?.code;

/**
 * Wards and their beds from one Location search (a bed's `partOf` is its ward or a room of
 * it); with `encounters`, the patient in each occupied bed.
 */
export function wardsOf(locations: Bundle, encounters?: Bundle): Ward[] {
  const all = resourcesOf(locations, 'Location');
  const byId = new Map(all.map((l) => [l.id ?? '', l]));
  const wardOf = (l: Location): Location | undefined => {
    let parent = byId.get(refKey(l.partOf?.reference)?.split('/')[1] ?? '');
    for (let depth = 0; parent && depth < 4; depth++) {
      if (physical(parent) === 'wa') return parent;
      parent = byId.get(refKey(parent.partOf?.reference)?.split('/')[1] ?? '');
    }
    return undefined;
  };
  const included = byReference(encounters);
  const patientInBed = new Map<string, Patient>();
  for (const e of resourcesOf(encounters, 'Encounter') as Encounter[]) {
    // The current locations (ward and bed alike); only beds are looked up below.
    const patient = included.get(refKey(e.subject?.reference) ?? '');
    for (const l of e.location ?? []) {
      const place = refKey(l.location.reference);
      if (place && patient?.resourceType === 'Patient' && (l.status === 'active' || l.status === undefined)) patientInBed.set(place, patient);
    }
  }
  const wards = new Map<string, Ward>();
  for (const l of all) if (physical(l) === 'wa') wards.set(l.id ?? '', { ward: l, beds: [], occupied: 0, free: 0, total: 0 });
  for (const l of all) {
    if (physical(l) !== 'bd') continue;
    const ward = wardOf(l);
    const entry = ward && wards.get(ward.id ?? '');
    if (!entry) continue;
    const status = l.operationalStatus?.code;
    const occupied = status === 'O';
    const unavailable = !!status && !['U', 'O'].includes(status);
    entry.beds.push({ bed: l, occupied, unavailable, patient: patientInBed.get(`Location/${l.id}`) });
    entry.total++;
    if (occupied) entry.occupied++;
    else if (!unavailable) entry.free++;
  }
  for (const w of wards.values()) w.beds.sort((a, b) => (a.bed.name ?? '').localeCompare(b.bed.name ?? '', undefined, { numeric: true }));
  return [...wards.values()].sort((a, b) => (a.ward.name ?? '').localeCompare(b.ward.name ?? ''));
}

export const LOCATIONS_QUERY = 'Location?_count=2000&_elements=name,physicalType,partOf,operationalStatus,status';

export function BedBoard({ ctx }: { ctx: ViewContext }): VNode {
  const state = useLoad(async () => {
    const [locations, encounters] = await Promise.all([
      ctx.fhir.search(LOCATIONS_QUERY),
      // Who is in which bed: current inpatient stays with their patients, one request.
      ctx.fhir.search('Encounter?status=in-progress&_include=Encounter:subject&_count=1000').catch(() => undefined),
    ]);
    return wardsOf(locations, encounters);
  });
  return html`<div class="grid">
    <${Panel} title="Bed board" state=${state} wide id="beds">
      ${(wards: Ward[]) =>
        wards.length === 0
          ? html`<p class="muted">No wards yet.</p>`
          : wards.map(
              (w) => html`<article class="ward" aria-label=${`Ward ${w.ward.name}`}>
                <h3>${w.ward.name} <span class="muted">${w.free} free · ${w.occupied} occupied · ${percent(w.total ? w.occupied / w.total : undefined)}</span></h3>
                <ul class="beds">
                  ${w.beds.map(
                    (b) => html`<li class=${`bed ${b.occupied ? 'occupied' : b.unavailable ? 'unavailable' : 'free'}`} data-bed=${b.bed.name}>
                      <span class="bed-name">${b.bed.name}</span>
                      <span class="bed-state">${b.occupied ? 'Occupied' : b.unavailable ? 'Unavailable' : 'Free'}</span>
                      ${b.patient ? html`<button type="button" class="link" onClick=${() => ctx.openChart(b.patient?.id ?? '')}>${nameOf(b.patient.name)}</button>` : null}
                    </li>`,
                  )}
                </ul>
              </article>`,
            )}
    <//>
  </div>`;
}

export function WardSummary({ wards }: { wards: Ward[] }): VNode {
  const total = wards.reduce((n, w) => n + w.total, 0);
  const occupied = wards.reduce((n, w) => n + w.occupied, 0);
  return html`<div>
    <div class="stats"><${Stat} label="beds occupied" value=${`${occupied} / ${total}`} note=${percent(total ? occupied / total : undefined)} /></div>
    <table>
      <caption class="sr-only">Bed occupancy per ward</caption>
      <thead><tr><th scope="col">Ward</th><th scope="col">Occupied</th><th scope="col">Free</th><th scope="col">Rate</th></tr></thead>
      <tbody>${wards.map((w) => html`<tr><th scope="row">${w.ward.name}</th><td>${w.occupied}</td><td>${w.free}</td><td><meter min="0" max="1" value=${w.total ? w.occupied / w.total : 0} aria-label=${`${w.ward.name} occupancy`}></meter> ${percent(w.total ? w.occupied / w.total : undefined)}</td></tr>`)}</tbody>
    </table>
  </div>`;
}
