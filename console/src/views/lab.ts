import type { Bundle, ServiceRequest } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { dateTime, nameOf, text } from '../format.js';
import { Panel, useLoad } from '../ui.js';
import { ReportList, reportRows, type ReportRow } from './results.js';

const PRIORITY_RANK: Record<string, number> = { stat: 0, asap: 1, urgent: 2, routine: 3 };

/** STAT first, then urgent, then routine; oldest first within a priority. */
export function byPriority(a: ServiceRequest, b: ServiceRequest): number {
  return (PRIORITY_RANK[a.priority ?? 'routine'] ?? 3) - (PRIORITY_RANK[b.priority ?? 'routine'] ?? 3) || (a.authoredOn ?? '').localeCompare(b.authoredOn ?? '');
}

interface WorkList {
  source: string;
  rows: Array<{ order: ServiceRequest; patient?: string; patientId?: string }>;
}

/**
 * The lab's `ServiceRequest/$worklist` where the server has it; otherwise the open laboratory
 * orders by search, ordered here.
 */
async function loadWorkList(ctx: ViewContext): Promise<WorkList> {
  let bundle: Bundle;
  let source = 'ServiceRequest/$worklist';
  try {
    bundle = await ctx.fhir.search('ServiceRequest/$worklist');
  } catch {
    source = 'open laboratory orders (search)';
    bundle = await ctx.fhir.search('ServiceRequest?category=http://snomed.info/sct|108252007&status=active&_include=ServiceRequest:subject&_count=500');
  }
  const included = byReference(bundle);
  // The work list names its patients by reference only: all of them in one more search.
  const missing = [...new Set(resourcesOf(bundle, 'ServiceRequest').map((o) => refKey(o.subject.reference)).filter((r): r is string => !!r?.startsWith('Patient/') && !included.has(r)))];
  if (missing.length > 0) {
    const patients = await ctx.fhir.search(`Patient?_id=${missing.map((r) => r.slice('Patient/'.length)).join(',')}&_count=${missing.length}&_elements=name,identifier`).catch(() => undefined);
    for (const [key, value] of byReference(patients)) included.set(key, value);
  }
  const rows = resourcesOf(bundle, 'ServiceRequest')
    .sort(byPriority)
    .map((order) => {
      const p = included.get(refKey(order.subject.reference) ?? '');
      return { order, patient: p?.resourceType === 'Patient' ? nameOf(p.name) : order.subject.display, patientId: p?.id };
    });
  return { source, rows };
}

export function LabWorklist({ ctx }: { ctx: ViewContext }): VNode {
  const work = useLoad(() => loadWorkList(ctx));
  const toVerify = useLoad(async () => reportRows(await ctx.fhir.search('DiagnosticReport?status=preliminary,partial&_include=DiagnosticReport:result&_include=DiagnosticReport:subject&_count=100')));
  return html`<div class="grid">
    <${Panel} title="Lab work list" state=${work} wide id="worklist">
      ${(w: WorkList) =>
        w.rows.length === 0
          ? html`<p class="muted">No open orders.</p>`
          : html`<p class="muted">Source: ${w.source}</p><table>
              <caption class="sr-only">Open laboratory orders, STAT first</caption>
              <thead><tr><th scope="col">Priority</th><th scope="col">Test</th><th scope="col">Patient</th><th scope="col">Ordered</th><th scope="col">Status</th></tr></thead>
              <tbody>${w.rows.map(
                (r) => html`<tr data-order=${r.order.id} class=${`priority-${r.order.priority ?? 'routine'}`}>
                  <td><span class=${`priority priority-${r.order.priority ?? 'routine'}`}>${(r.order.priority ?? 'routine').toUpperCase()}</span></td>
                  <th scope="row">${text(r.order.code)}</th>
                  <td>${r.patientId ? html`<button type="button" class="link" onClick=${() => ctx.openChart(r.patientId ?? '')}>${r.patient}</button>` : (r.patient ?? '—')}</td>
                  <td>${dateTime(r.order.authoredOn)}</td>
                  <td>${r.order.status}</td>
                </tr>`,
              )}</tbody>
            </table>`}
    <//>
    <${Panel} title="Results to verify" state=${toVerify} wide id="verify">
      ${(rows: ReportRow[]) => html`<${ReportList} ctx=${ctx} rows=${rows} reload=${toVerify.reload} canVerify />`}
    <//>
  </div>`;
}
