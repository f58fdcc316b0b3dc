import type { Appointment, Patient, Schedule, Slot } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import { useState } from 'preact/hooks';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { dateTime, nameOf, patientNumber, todayRange } from '../format.js';
import { ActionButton, Panel, useLoad } from '../ui.js';
import { AppointmentTable, appointmentsWithPatients, type AppointmentRow } from './appointments.js';

/** Books a free Slot: the server marks it busy in the same transaction (409 if someone was faster). */
export function bookSlot(ctx: ViewContext, slot: Slot, practitioner: string, patientId: string): Promise<Appointment> {
  return ctx.fhir.post<Appointment>('Appointment', {
    resourceType: 'Appointment',
    status: 'booked',
    start: slot.start,
    end: slot.end,
    slot: [{ reference: `Slot/${slot.id}` }],
    participant: [
      { actor: { reference: `Patient/${patientId}` }, status: 'accepted' },
      { actor: { reference: practitioner }, status: 'accepted' },
    ],
  });
}

function Booking({ ctx, booked }: { ctx: ViewContext; booked: () => void }): VNode {
  const schedules = useLoad(async () => {
    const bundle = await ctx.fhir.search('Schedule?active=true&_include=Schedule:actor&_count=200');
    const included = byReference(bundle);
    return resourcesOf(bundle, 'Schedule').flatMap((s: Schedule) => {
      const actor = s.actor.map((a) => refKey(a.reference)).find((r) => r?.startsWith('Practitioner/'));
      const who = actor ? included.get(actor) : undefined;
      return actor ? [{ schedule: s, actor, label: who?.resourceType === 'Practitioner' ? nameOf(who.name) : actor }] : [];
    });
  });
  const [scheduleId, setScheduleId] = useState('');
  const [slotId, setSlotId] = useState('');
  const [name, setName] = useState('');
  const [patientQuery, setPatientQuery] = useState<string | undefined>();
  const [patientId, setPatientId] = useState('');
  const [message, setMessage] = useState<string | undefined>();
  const slots = useLoad(async () => (scheduleId ? resourcesOf(await ctx.fhir.search(`Slot?schedule=Schedule/${scheduleId}&status=free&start=ge${new Date().toISOString()}&_sort=start&_count=40`), 'Slot') : []), [scheduleId]);
  const patients = useLoad(async () => (patientQuery ? resourcesOf(await ctx.fhir.search(`Patient?name=${encodeURIComponent(patientQuery)}&_count=10&_elements=name,birthDate,identifier`), 'Patient') : []), [patientQuery]);
  const chosen = schedules.data?.find((s) => s.schedule.id === scheduleId);
  const slot = slots.data?.find((s) => s.id === slotId);
  return html`<${Panel} title="Book an appointment" state=${schedules} id="booking">
    ${(list: Array<{ schedule: Schedule; actor: string; label: string }>) => html`<form class="stack" onSubmit=${(e: Event) => e.preventDefault()}>
      <label for="book-doctor">Doctor</label>
      <select id="book-doctor" value=${scheduleId} onChange=${(e: Event) => (setScheduleId((e.target as HTMLSelectElement).value), setSlotId(''))}>
        <option value="">Choose a doctor</option>
        ${list.map((s) => html`<option value=${s.schedule.id}>${s.label}</option>`)}
      </select>
      <label for="book-slot">Free slot</label>
      <select id="book-slot" value=${slotId} disabled=${!scheduleId} onChange=${(e: Event) => setSlotId((e.target as HTMLSelectElement).value)}>
        <option value="">${slots.loading && scheduleId ? 'Loading…' : (slots.data ?? []).length ? 'Choose a time' : 'No free slot'}</option>
        ${(slots.data ?? []).map((s: Slot) => html`<option value=${s.id}>${dateTime(s.start)}</option>`)}
      </select>
      <label for="book-patient-name">Patient name</label>
      <span class="inline">
        <input id="book-patient-name" type="search" autocomplete="off" value=${name} onInput=${(e: Event) => setName((e.target as HTMLInputElement).value)} onKeyDown=${(e: KeyboardEvent) => e.key === 'Enter' && setPatientQuery(name.trim())} />
        <button type="button" onClick=${() => setPatientQuery(name.trim())}>Find</button>
      </span>
      <fieldset>
        <legend>Patient</legend>
        ${(patients.data ?? []).length === 0 ? html`<p class="muted">Search by name.</p>` : null}
        ${(patients.data ?? []).map((p: Patient) => html`<label class="choice"><input type="radio" name="book-patient" value=${p.id} checked=${patientId === p.id} onChange=${() => setPatientId(p.id ?? '')} /> ${nameOf(p.name)} <span class="muted">${patientNumber(p) ?? ''} ${p.birthDate ?? ''}</span></label>`)}
      </fieldset>
      ${slot && chosen && patientId
        ? html`<${ActionButton} label="Book" kind="primary" name="Book the appointment" run=${async () => {
            await bookSlot(ctx, slot, chosen.actor, patientId);
            setMessage(`Booked ${dateTime(slot.start)} with ${chosen.label}.`);
            setSlotId('');
            slots.reload();
          }} done=${booked} />`
        : html`<button type="button" class="primary" disabled>Book</button>`}
      ${message ? html`<p class="ok" role="status">${message}</p>` : null}
    </form>`}
  <//>`;
}

/** Front desk: today's appointments (check in, cancel) and booking of free slots. */
export function FrontDesk({ ctx }: { ctx: ViewContext }): VNode {
  const [start, end] = todayRange();
  const today = useLoad(() => appointmentsWithPatients(ctx, `Appointment?date=ge${start}&date=lt${end}&_include=Appointment:patient&_include=Appointment:practitioner&_sort=date&_count=500`));
  return html`<div class="grid">
    <${Booking} ctx=${ctx} booked=${today.reload} />
    <${Panel} title="Today's appointments" state=${today} wide id="frontdesk-today">
      ${(rows: AppointmentRow[]) => html`<${AppointmentTable} ctx=${ctx} rows=${rows} reload=${today.reload} canCheckIn canCancel showPractitioner caption="Today's appointments at the front desk" />`}
    <//>
  </div>`;
}
