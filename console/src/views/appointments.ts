import type { Appointment, Patient } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { nameOf, patientNumber, time } from '../format.js';
import { ActionButton } from '../ui.js';

export interface AppointmentRow {
  appointment: Appointment;
  patient?: Patient;
  /** The practitioner's name when the search included them (`_include=Appointment:practitioner`). */
  practitioner?: string;
}

/** Appointments of a search with `_include=Appointment:patient`: each with its patient, no request per row. */
export async function appointmentsWithPatients(ctx: ViewContext, query: string): Promise<AppointmentRow[]> {
  const bundle = await ctx.fhir.search(query);
  const included = byReference(bundle);
  return resourcesOf(bundle, 'Appointment').map((appointment) => {
    const ref = appointment.participant.map((p) => refKey(p.actor?.reference)).find((r) => r?.startsWith('Patient/'));
    const patient = ref ? included.get(ref) : undefined;
    const who = included.get(appointment.participant.map((p) => refKey(p.actor?.reference)).find((r) => r?.startsWith('Practitioner/')) ?? '');
    return { appointment, patient: patient?.resourceType === 'Patient' ? patient : undefined, practitioner: who?.resourceType === 'Practitioner' ? nameOf(who.name) : undefined };
  });
}

/** A status change through the API (the server's booking rules decide; a refusal is shown). */
export function setStatus(ctx: ViewContext, appointment: Appointment, status: Appointment['status']): Promise<Appointment> {
  return ctx.fhir.put<Appointment>({ ...appointment, status });
}

export function AppointmentTable(props: { ctx: ViewContext; rows: AppointmentRow[]; reload: () => void; canCheckIn: boolean; canCancel: boolean; caption: string; showPractitioner?: boolean }): VNode {
  const { ctx, rows } = props;
  if (rows.length === 0) return html`<p class="muted">No appointments.</p>`;
  return html`<table>
    <caption class="sr-only">${props.caption}</caption>
    <thead><tr><th scope="col">Time</th><th scope="col">Patient</th>${props.showPractitioner ? html`<th scope="col">Doctor</th>` : null}<th scope="col">Status</th><th scope="col">Actions</th></tr></thead>
    <tbody>
      ${rows.map(({ appointment: a, patient, practitioner }) => {
        const who = patient ? nameOf(patient.name) : 'Unknown patient';
        return html`<tr data-appointment=${a.id}>
          <td>${time(a.start)}</td>
          <td>${patient ? html`<button type="button" class="link" onClick=${() => ctx.openChart(patient.id ?? '')}>${who}</button> <span class="muted">${patientNumber(patient) ?? ''}</span>` : who}</td>
          ${props.showPractitioner ? html`<td>${practitioner ?? '—'}</td>` : null}
          <td><span class=${`status status-${a.status}`}>${a.status}</span></td>
          <td>
            ${props.canCheckIn && a.status === 'booked' ? html`<${ActionButton} label="Check in" name=${`Check in ${who}`} run=${() => setStatus(ctx, a, 'checked-in')} done=${props.reload} />` : null}
            ${props.canCancel && (a.status === 'booked' || a.status === 'proposed' || a.status === 'pending') ? html`<${ActionButton} label="Cancel" name=${`Cancel appointment of ${who}`} run=${() => setStatus(ctx, a, 'cancelled')} done=${props.reload} />` : null}
          </td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}
