import type { Composition } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { dateTime, nameOf, todayRange } from '../format.js';
import { Panel, useLoad } from '../ui.js';
import { AppointmentTable, appointmentsWithPatients, type AppointmentRow } from './appointments.js';
import { ReportList, reportRows, type ReportRow } from './results.js';

const WEEK = 7 * 24 * 3600_000;

/** A doctor's day: own appointments, results waiting (critical and abnormal first), unsigned notes. */
export function DoctorWorklist({ ctx }: { ctx: ViewContext }): VNode {
  const me = ctx.session.fhirUser;
  const [start, end] = todayRange();
  const mine = me ? `&actor=${encodeURIComponent(me)}` : '';
  const appointments = useLoad(() => appointmentsWithPatients(ctx, `Appointment?date=ge${start}&date=lt${end}${mine}&_include=Appointment:patient&_sort=date&_count=200`));
  // Reports of the last week (by their clinical date), unverified ones included; critical and abnormal first.
  const results = useLoad(async () => reportRows(await ctx.fhir.search(`DiagnosticReport?status=preliminary,partial,final,amended,corrected&date=ge${new Date(Date.now() - WEEK).toISOString()}&_include=DiagnosticReport:result&_include=DiagnosticReport:subject&_sort=-date&_count=100`)));
  const notes = useLoad(async () => {
    const bundle = await ctx.fhir.search(`Composition?status=preliminary${me ? `&author=${encodeURIComponent(me)}` : ''}&_include=Composition:subject&_count=100`);
    const included = byReference(bundle);
    return resourcesOf(bundle, 'Composition').map((c) => ({ note: c, patient: included.get(refKey(c.subject?.reference) ?? '') }));
  });
  return html`<div class="grid">
    <${Panel} title="Today's appointments" state=${appointments} wide id="appointments">
      ${(rows: AppointmentRow[]) => html`<${AppointmentTable} ctx=${ctx} rows=${rows} reload=${appointments.reload} canCheckIn canCancel=${false} caption="Today's appointments" />`}
    <//>
    <${Panel} title="Results waiting for review" state=${results} wide id="results">
      ${(rows: ReportRow[]) => html`<${ReportList} ctx=${ctx} rows=${rows} reload=${results.reload} canVerify />`}
    <//>
    <${Panel} title="Unsigned notes" state=${notes} id="notes">
      ${(rows: Array<{ note: Composition; patient?: { resourceType: string; id?: string } }>) =>
        rows.length === 0
          ? html`<p class="muted">No unsigned notes.</p>`
          : html`<ul class="plain">${rows.map(
              ({ note, patient }) => html`<li data-note=${note.id}><strong>${note.title}</strong> <span class="muted">${dateTime(note.date)}</span>
                ${patient?.resourceType === 'Patient' ? html` · <button type="button" class="link" onClick=${() => ctx.openChart(patient.id ?? '')}>${nameOf((patient as { name?: [] }).name)}</button>` : null}</li>`,
            )}</ul>`}
    <//>
  </div>`;
}
