import type { AllergyIntolerance, Bundle, Condition, Encounter, MedicationRequest, Observation, Patient } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import { useState } from 'preact/hooks';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { ageOf, codeOf, day, nameOf, patientNumber, text } from '../format.js';
import { Panel, TrendChart, useLoad, type Series } from '../ui.js';
import { ResultTable } from './results.js';

/** Vital signs worth a trend, by LOINC code; blood pressure is drawn from its two components. */
const VITALS: Array<{ code: string; label: string; components?: string[] }> = [
  { code: '85354-9', label: 'Blood pressure (mmHg)', components: ['8480-6', '8462-4'] },
  { code: '8867-4', label: 'Heart rate (/min)' },
  { code: '29463-7', label: 'Body weight (kg)' },
  { code: '8310-5', label: 'Body temperature (°C)' },
  { code: '9279-1', label: 'Respiratory rate (/min)' },
  { code: '59408-5', label: 'Oxygen saturation (%)' },
  { code: '39156-5', label: 'BMI (kg/m²)' },
];

export function vitalTrends(observations: Observation[]): Array<{ label: string; x: number[]; series: Series[] }> {
  const out: Array<{ label: string; x: number[]; series: Series[] }> = [];
  for (const vital of VITALS) {
    const points = observations
      .filter((o) => o.code.coding?.some((c) => c.code === vital.code) && (o.effectiveDateTime ?? o.issued))
      .map((o) => ({ t: Math.floor(new Date(o.effectiveDateTime ?? o.issued ?? '').getTime() / 1000), o }))
      .sort((a, b) => a.t - b.t);
    if (points.length === 0) continue;
    const series: Series[] = vital.components
      ? vital.components.map((code) => ({ label: code === '8480-6' ? 'systolic' : 'diastolic', values: points.map((p) => p.o.component?.find((c) => codeOf(c.code) === code)?.valueQuantity?.value ?? null) }))
      : [{ label: vital.label, values: points.map((p) => p.o.valueQuantity?.value ?? null) }];
    out.push({ label: vital.label, x: points.map((p) => p.t), series });
  }
  return out;
}

interface ChartData {
  patient: Patient;
  allergies: AllergyIntolerance[];
  problems: Condition[];
  medications: Array<{ request: MedicationRequest; name: string }>;
  vitals: Observation[];
  labs: Observation[];
  encounters: Encounter[];
  documents: Array<{ id: string; title: string; date?: string; status?: string }>;
}

/** The chart in a fixed number of parallel requests, whatever the size of the record. */
export async function loadChart(ctx: ViewContext, id: string): Promise<ChartData> {
  const f = ctx.fhir;
  const optional = (p: Promise<Bundle>) => p.catch(() => undefined);
  const [patient, allergies, problems, meds, vitals, labs, encounters, compositions, references] = await Promise.all([
    f.get<Patient>(`Patient/${id}`),
    optional(f.search(`AllergyIntolerance?patient=${id}&_count=100`)),
    optional(f.search(`Condition?patient=${id}&_count=200`)),
    optional(f.search(`MedicationRequest?patient=${id}&_include=MedicationRequest:medication&_sort=-authoredon&_count=50`)),
    optional(f.search(`Observation?patient=${id}&category=vital-signs&_sort=-date&_count=400&_elements=code,valueQuantity,component,effectiveDateTime,issued`)),
    optional(f.search(`Observation?patient=${id}&category=laboratory&_sort=-date&_count=50`)),
    optional(f.search(`Encounter?patient=${id}&_sort=-date&_count=30`)),
    optional(f.search(`Composition?subject=Patient/${id}&_sort=-date&_count=20&_elements=title,date,status`)),
    optional(f.search(`DocumentReference?patient=${id}&_sort=-date&_count=20&_elements=description,date,status,type`)),
  ]);
  const included = byReference(meds);
  const conditionActive = (c: Condition) => (codeOf(c.clinicalStatus) === 'active' ? 0 : 1);
  return {
    patient,
    allergies: resourcesOf(allergies, 'AllergyIntolerance'),
    problems: resourcesOf(problems, 'Condition').sort((a, b) => conditionActive(a) - conditionActive(b) || (b.onsetDateTime ?? '').localeCompare(a.onsetDateTime ?? '')),
    medications: resourcesOf(meds, 'MedicationRequest').map((request) => {
      const med = included.get(refKey(request.medicationReference?.reference) ?? '');
      return { request, name: request.medicationCodeableConcept ? text(request.medicationCodeableConcept) : med?.resourceType === 'Medication' ? text(med.code) : (request.medicationReference?.display ?? 'Medication') };
    }),
    vitals: resourcesOf(vitals, 'Observation'),
    labs: resourcesOf(labs, 'Observation'),
    encounters: resourcesOf(encounters, 'Encounter'),
    documents: [
      ...resourcesOf(compositions, 'Composition').map((c) => ({ id: `Composition/${c.id}`, title: c.title, date: c.date, status: c.status })),
      ...resourcesOf(references, 'DocumentReference').map((d) => ({ id: `DocumentReference/${d.id}`, title: d.description ?? text(d.type), date: d.date, status: d.status })),
    ],
  };
}

export function PatientBanner({ patient, allergies }: { patient: Patient; allergies: AllergyIntolerance[] }): VNode {
  const age = ageOf(patient.birthDate);
  return html`<header class="banner" aria-label="Patient">
    <h2 class="banner-name">${nameOf(patient.name)}</h2>
    <span><span class="muted">PT number</span> <strong data-field="pt-number">${patientNumber(patient) ?? '—'}</strong></span>
    <span><span class="muted">Age</span> ${age ?? '—'} <span class="muted">(${patient.birthDate ?? 'unknown'})</span></span>
    <span><span class="muted">Sex</span> ${patient.gender ?? '—'}</span>
    <span class=${allergies.length ? 'allergies has' : 'allergies'}><span class="muted">Allergies</span> ${allergies.length ? allergies.map((a) => text(a.code)).join(', ') : 'none recorded'}</span>
  </header>`;
}

function PatientPicker({ ctx, choose }: { ctx: ViewContext; choose: (id: string) => void }): VNode {
  const [name, setName] = useState('');
  const [query, setQuery] = useState<string | undefined>();
  const found = useLoad(async () => (query === undefined ? [] : resourcesOf(await ctx.fhir.search(`Patient?name=${encodeURIComponent(query)}&_count=20&_elements=name,birthDate,identifier,gender`), 'Patient')), [query]);
  return html`<section class="panel wide" aria-labelledby="find-patient">
    <h2 id="find-patient">Find a patient</h2>
    <form class="inline" onSubmit=${(e: Event) => (e.preventDefault(), setQuery(name.trim()))}>
      <label for="patient-name">Name</label>
      <input id="patient-name" type="search" autocomplete="off" value=${name} onInput=${(e: Event) => setName((e.target as HTMLInputElement).value)} />
      <button type="submit" class="primary">Search</button>
    </form>
    ${found.error ? html`<p class="unavailable">${found.error}</p>` : null}
    <ul class="plain">${(found.data ?? []).map((p) => html`<li><button type="button" class="link" onClick=${() => choose(p.id ?? '')}>${nameOf(p.name)}</button> <span class="muted">${patientNumber(p) ?? ''} ${p.birthDate ?? ''}</span></li>`)}</ul>
  </section>`;
}

export function PatientChart({ ctx, patientId, choose }: { ctx: ViewContext; patientId?: string; choose: (id: string) => void }): VNode {
  if (!patientId) return html`<div class="grid"><${PatientPicker} ctx=${ctx} choose=${choose} /></div>`;
  return html`<${ChartOf} ctx=${ctx} patientId=${patientId} key=${patientId} />`;
}

function ChartOf({ ctx, patientId }: { ctx: ViewContext; patientId: string }): VNode {
  const state = useLoad(() => loadChart(ctx, patientId), [patientId]);
  return html`<div class="grid">
    <${Panel} title="Patient" state=${state} wide id="banner">${(c: ChartData) => html`<${PatientBanner} patient=${c.patient} allergies=${c.allergies} />`}<//>
    <${Panel} title="Problems" state=${state} id="problems">
      ${(c: ChartData) => (c.problems.length ? html`<ul class="plain">${c.problems.map((p) => html`<li><strong>${text(p.code)}</strong> <span class="muted">${codeOf(p.clinicalStatus) ?? ''} · since ${day(p.onsetDateTime ?? p.recordedDate)}</span></li>`)}</ul>` : html`<p class="muted">No problems recorded.</p>`)}
    <//>
    <${Panel} title="Medications" state=${state} id="medications">
      ${(c: ChartData) => (c.medications.length ? html`<ul class="plain">${c.medications.map((m) => html`<li><strong>${m.name}</strong> <span class="muted">${m.request.status} · ${day(m.request.authoredOn)}</span>${m.request.dosageInstruction?.[0]?.text ? html`<br /><span>${m.request.dosageInstruction[0].text}</span>` : null}</li>`)}</ul>` : html`<p class="muted">No prescriptions.</p>`)}
    <//>
    <${Panel} title="Vital signs" state=${state} wide id="vitals">
      ${(c: ChartData) => {
        const trends = vitalTrends(c.vitals);
        return trends.length ? html`<div class="charts">${trends.map((t) => html`<figure><figcaption>${t.label}</figcaption><${TrendChart} label=${`${t.label} trend, ${t.x.length} measurements`} x=${t.x} series=${t.series} height=${150} /></figure>`)}</div>` : html`<p class="muted">No vital signs recorded.</p>`;
      }}
    <//>
    <${Panel} title="Lab results" state=${state} wide id="labs">
      ${(c: ChartData) => (c.labs.length ? html`<${ResultTable} results=${c.labs} caption="Latest lab results" />` : html`<p class="muted">No lab results.</p>`)}
    <//>
    <${Panel} title="Encounters" state=${state} id="encounters">
      ${(c: ChartData) => (c.encounters.length ? html`<ol class="timeline">${c.encounters.map((e) => html`<li><time>${day(e.period?.start)}</time> <strong>${text(e.type?.[0])}</strong> <span class="muted">${e.class?.code ?? ''} · ${e.status}</span></li>`)}</ol>` : html`<p class="muted">No encounters.</p>`)}
    <//>
    <${Panel} title="Documents" state=${state} id="documents">
      ${(c: ChartData) => (c.documents.length ? html`<ul class="plain">${c.documents.map((d) => html`<li><strong>${d.title}</strong> <span class="muted">${d.status ?? ''} · ${day(d.date)}</span></li>`)}</ul>` : html`<p class="muted">No documents.</p>`)}
    <//>
  </div>`;
}
