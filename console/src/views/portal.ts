import type { AllergyIntolerance, Appointment, Communication, Invoice, Patient } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { dateTime, day, money, text } from '../format.js';
import { ActionButton, Panel, useLoad } from '../ui.js';
import { setStatus } from './appointments.js';
import { PatientBanner } from './chart.js';
import { ReportList, reportRows, type ReportRow } from './results.js';

/** The PATIENT role's own record: the token confines every search to their compartment. */
export function PatientPortal({ ctx }: { ctx: ViewContext }): VNode {
  const me = ctx.session.patient ?? ctx.session.fhirUser?.split('/')[1] ?? '';
  const f = ctx.fhir;
  const banner = useLoad(async () => {
    const [patient, allergies] = await Promise.all([f.get<Patient>(`Patient/${me}`), f.search(`AllergyIntolerance?patient=${me}&_count=50`).catch(() => undefined)]);
    return { patient, allergies: resourcesOf(allergies, 'AllergyIntolerance') as AllergyIntolerance[] };
  });
  const appointments = useLoad(async () => resourcesOf(await f.search(`Appointment?patient=${me}&_sort=-date&_count=50`), 'Appointment'));
  const results = useLoad(async () => reportRows(await f.search(`DiagnosticReport?patient=${me}&status=final,amended,corrected&_include=DiagnosticReport:result&_sort=-date&_count=20`)));
  const prescriptions = useLoad(async () => {
    const bundle = await f.search(`MedicationRequest?patient=${me}&_include=MedicationRequest:medication&_sort=-authoredon&_count=50`);
    const included = byReference(bundle);
    return resourcesOf(bundle, 'MedicationRequest').map((r) => {
      const med = included.get(refKey(r.medicationReference?.reference) ?? '');
      return { request: r, name: r.medicationCodeableConcept ? text(r.medicationCodeableConcept) : med?.resourceType === 'Medication' ? text(med.code) : (r.medicationReference?.display ?? 'Medication') };
    });
  });
  const invoices = useLoad(async () => resourcesOf(await f.search(`Invoice?subject=Patient/${me}&_sort=-date&_count=50`), 'Invoice') as Invoice[]);
  const messages = useLoad(async () => resourcesOf(await f.search(`Communication?recipient=Patient/${me}&_sort=-sent&_count=30`), 'Communication') as Communication[]);
  return html`<div class="grid">
    <${Panel} title="My record" state=${banner} wide id="me">${(b: { patient: Patient; allergies: AllergyIntolerance[] }) => html`<${PatientBanner} patient=${b.patient} allergies=${b.allergies} />`}<//>
    <${Panel} title="My appointments" state=${appointments} id="my-appointments">
      ${(list: Appointment[]) =>
        list.length === 0
          ? html`<p class="muted">No appointments.</p>`
          : html`<ul class="plain">${list.map(
              (a) => html`<li data-appointment=${a.id}><strong>${dateTime(a.start)}</strong> <span class=${`status status-${a.status}`}>${a.status}</span>
                ${a.status === 'booked' && a.start && new Date(a.start).getTime() > Date.now() ? html`<${ActionButton} label="Cancel" name=${`Cancel appointment of ${dateTime(a.start)}`} run=${() => setStatus(ctx, a, 'cancelled')} done=${appointments.reload} />` : null}</li>`,
            )}</ul>`}
    <//>
    <${Panel} title="My results" state=${results} wide id="my-results">${(rows: ReportRow[]) => html`<${ReportList} ctx=${ctx} rows=${rows} reload=${results.reload} canVerify=${false} showPatient=${false} empty="No results yet." />`}<//>
    <${Panel} title="My prescriptions" state=${prescriptions} id="my-prescriptions">
      ${(list: Array<{ request: { id?: string; status: string; authoredOn?: string; dosageInstruction?: Array<{ text?: string }> }; name: string }>) =>
        list.length === 0 ? html`<p class="muted">No prescriptions.</p>` : html`<ul class="plain">${list.map((m) => html`<li><strong>${m.name}</strong> <span class="muted">${m.request.status} · ${day(m.request.authoredOn)}</span> ${m.request.dosageInstruction?.[0]?.text ?? ''}</li>`)}</ul>`}
    <//>
    <${Panel} title="My invoices" state=${invoices} id="my-invoices">
      ${(list: Invoice[]) => (list.length === 0 ? html`<p class="muted">No invoices.</p>` : html`<ul class="plain">${list.map((i) => html`<li data-invoice=${i.id}><strong>${money(i.totalGross?.value ?? i.totalNet?.value, i.totalGross?.currency ?? i.totalNet?.currency)}</strong> <span class="muted">${i.status} · ${day(i.date)}</span></li>`)}</ul>`)}
    <//>
    <${Panel} title="My messages" state=${messages} id="my-messages">
      ${(list: Communication[]) => (list.length === 0 ? html`<p class="muted">No messages.</p>` : html`<ul class="plain">${list.map((c) => html`<li><span class="muted">${dateTime(c.sent)}</span> ${c.payload?.[0]?.contentString ?? text(c.topic)}</li>`)}</ul>`)}
    <//>
  </div>`;
}
