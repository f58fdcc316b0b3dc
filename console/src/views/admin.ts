import type { Appointment, Invoice, MeasureReport, MeasureReportGroup } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import { hospitalReport, type ViewContext } from '../context.js';
import { resourcesOf } from '../fhir.js';
import { isoDay, money, percent, text, todayRange } from '../format.js';
import { Panel, Stat, TrendChart, useLoad, type Series } from '../ui.js';
import { LOCATIONS_QUERY, WardSummary, wardsOf } from './beds.js';

const DAY = 24 * 3600_000;

/** Appointments per day and the no-show rate of each day, over the last `days` days. */
export function appointmentTrend(appointments: Appointment[], days: number, now = new Date()): { x: number[]; series: Series[]; noShowRate?: number } {
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate() - days + 1);
  const x: number[] = [];
  const total: number[] = [];
  const noShow: number[] = [];
  for (let i = 0; i < days; i++) {
    x.push(Math.floor((start.getTime() + i * DAY) / 1000));
    total.push(0);
    noShow.push(0);
  }
  let decided = 0;
  let missed = 0;
  for (const a of appointments) {
    if (!a.start || a.status === 'cancelled' || a.status === 'entered-in-error') continue;
    const i = Math.floor((new Date(a.start).getTime() - start.getTime()) / DAY);
    if (i < 0 || i >= days) continue;
    total[i]++;
    if (a.status === 'noshow') noShow[i]++;
    // The rate counts visits whose outcome is known: fulfilled or no-show.
    if (a.status === 'noshow' || a.status === 'fulfilled') {
      decided++;
      if (a.status === 'noshow') missed++;
    }
  }
  const rate = total.map((t, i) => (t === 0 ? null : Math.round((noShow[i] / t) * 1000) / 10));
  return { x, series: [{ label: 'appointments', values: total }, { label: 'no-show %', values: rate }], noShowRate: decided ? missed / decided : undefined };
}

/** Day strata of a group (stratifier coded `day`) as a trend: x in seconds, one value per day. */
function dayTrend(group: MeasureReportGroup): { x: number[]; values: number[] } | undefined {
  const days = group.stratifier?.find((s) => s.code?.some((c) => text(c) === 'day' || c.coding?.some((k) => k.code === 'day')));
  const points = (days?.stratum ?? [])
    .map((st) => ({ t: Date.parse(text(st.value)), v: st.measureScore?.value ?? st.population?.[0]?.count }))
    .filter((p): p is { t: number; v: number } => !Number.isNaN(p.t) && p.v !== undefined)
    .sort((a, b) => a.t - b.t);
  return points.length ? { x: points.map((p) => p.t / 1000), values: points.map((p) => p.v) } : undefined;
}

/**
 * A hospital report (MeasureReport): each group's score (or "no data"), small strata (status,
 * priority) inline, and the first group's daily strata as a trend chart.
 */
export function MeasureReportView({ report, chartLabel }: { report: MeasureReport; chartLabel: string }): VNode {
  const groups = report.group ?? [];
  const trendGroup = groups.find((g) => dayTrend(g));
  const trend = trendGroup && dayTrend(trendGroup);
  return html`<div>
    <dl class="measures">
      ${groups.map((g, i) => {
        const score = g.measureScore?.value;
        const strata = (g.stratifier ?? [])
          .filter((s) => !s.code?.some((c) => ['day', 'month'].includes(text(c))))
          .flatMap((s) => (s.stratum ?? []).map((st) => `${text(st.value)} ${money(st.measureScore?.value ?? st.population?.[0]?.count)}`));
        return html`<div class="measure">
          <dt>${g.code ? text(g.code) : `Measure ${i + 1}`}</dt>
          <dd><strong class="measure-score">${score !== undefined ? `${money(score)}${g.measureScore?.unit ? ` ${g.measureScore.unit}` : ''}` : 'no data'}</strong>${strata.length ? html` <span class="muted">(${strata.join(' · ')})</span>` : null}</dd>
        </div>`;
      })}
    </dl>
    ${trend && trendGroup ? html`<${TrendChart} label=${`${chartLabel} per day`} x=${trend.x} series=${[{ label: text(trendGroup.code).slice(0, 40), values: trend.values }]} height=${140} />` : null}
  </div>`;
}

export function AdminSummary({ ctx }: { ctx: ViewContext }): VNode {
  const { fhir } = ctx;
  const [todayStart, todayEnd] = todayRange();
  const now = new Date();
  const monthStart = isoDay(new Date(now.getFullYear(), now.getMonth(), 1));
  const today = isoDay(now);
  const patients = useLoad(() => fhir.count('Patient'));
  const todays = useLoad(async () => resourcesOf(await fhir.search(`Appointment?date=ge${todayStart}&date=lt${todayEnd}&_count=1000&_elements=status,start`), 'Appointment'));
  const wards = useLoad(async () => wardsOf(await fhir.search(LOCATIONS_QUERY)));
  const revenue = useLoad(() => hospitalReport(fhir, 'revenue', monthStart, today));
  const invoices = useLoad(async () => resourcesOf(await fhir.search('Invoice?status=issued&_count=1000&_elements=status,totalGross,totalNet'), 'Invoice') as Invoice[]);
  const turnaround = useLoad(() => hospitalReport(fhir, 'lab-turnaround', isoDay(new Date(Date.now() - 30 * DAY)), today));
  const trend = useLoad(async () => {
    const from = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 29).toISOString();
    return appointmentTrend(resourcesOf(await fhir.search(`Appointment?date=ge${from}&date=lt${todayEnd}&_count=5000&_elements=status,start`), 'Appointment'), 30);
  });
  return html`<div class="grid">
    <${Panel} title="Patients" state=${patients} id="patients">${(n: number) => html`<div class="stats"><${Stat} label="registered patients" value=${n} /></div>`}<//>
    <${Panel} title="Today's appointments" state=${todays} id="today">
      ${(list: Appointment[]) => {
        const by = (s: string) => list.filter((a) => a.status === s).length;
        return html`<div class="stats">
          <${Stat} label="today" value=${list.length} />
          <${Stat} label="checked in" value=${by('checked-in') + by('arrived')} />
          <${Stat} label="waiting (booked)" value=${by('booked')} />
          <${Stat} label="cancelled" value=${by('cancelled')} tone=${by('cancelled') ? 'warn' : undefined} />
        </div>`;
      }}
    <//>
    <${Panel} title="Bed occupancy per ward" state=${wards} id="occupancy">${(w: ReturnType<typeof wardsOf>) => html`<${WardSummary} wards=${w} />`}<//>
    <${Panel} title="Revenue this month" state=${revenue} id="revenue">${(r: MeasureReport) => html`<${MeasureReportView} report=${r} chartLabel="Revenue" />`}<//>
    <${Panel} title="Outstanding invoices" state=${invoices} id="invoices">
      ${(list: Invoice[]) => {
        const sum = list.reduce((n, i) => n + (i.totalGross?.value ?? i.totalNet?.value ?? 0), 0);
        const currency = list.find((i) => i.totalGross?.currency)?.totalGross?.currency ?? '';
        return html`<div class="stats"><${Stat} label="issued, not paid" value=${list.length} tone=${list.length ? 'warn' : 'ok'} /><${Stat} label="amount due" value=${money(sum, currency)} /></div>`;
      }}
    <//>
    <${Panel} title="Lab turnaround (30 days)" state=${turnaround} id="turnaround">${(r: MeasureReport) => html`<${MeasureReportView} report=${r} chartLabel="Lab turnaround" />`}<//>
    <${Panel} title="Appointments and no-show rate (30 days)" state=${trend} wide id="noshow">
      ${(t: ReturnType<typeof appointmentTrend>) => html`<div class="stats"><${Stat} label="no-show rate" value=${percent(t.noShowRate)} note="of visits fulfilled or missed" /></div>
        <${TrendChart} label=${`Appointments per day and no-show rate over 30 days; overall no-show rate ${percent(t.noShowRate)}`} x=${t.x} series=${t.series} />`}
    <//>
  </div>`;
}
