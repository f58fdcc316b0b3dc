import type { Bundle, DiagnosticReport, Observation, Patient } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import type { ViewContext } from '../context.js';
import { byReference, refKey, resourcesOf } from '../fhir.js';
import { dateTime, flagLabel, nameOf, observationValue, rangeText, SEVERITY_RANK, severityOf, text, type Severity } from '../format.js';
import { ActionButton } from '../ui.js';

export interface ReportRow {
  report: DiagnosticReport;
  patient?: Patient;
  results: Observation[];
  severity: Severity;
}

/**
 * Reports of a search with `_include=DiagnosticReport:result` and `:subject`, worst first
 * (critical, abnormal, normal), then newest.
 */
export function reportRows(bundle: Bundle): ReportRow[] {
  const included = byReference(bundle);
  const rows = resourcesOf(bundle, 'DiagnosticReport').map((report) => {
    const results = (report.result ?? []).flatMap((r) => {
      const o = included.get(refKey(r.reference) ?? '');
      return o?.resourceType === 'Observation' ? [o] : [];
    });
    const patient = included.get(refKey(report.subject?.reference) ?? '');
    const severity = results.reduce<Severity>((worst, o) => (SEVERITY_RANK[severityOf(o)] < SEVERITY_RANK[worst] ? severityOf(o) : worst), 'normal');
    return { report, results, severity, patient: patient?.resourceType === 'Patient' ? patient : undefined };
  });
  return rows.sort((a, b) => SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] || (b.report.effectiveDateTime ?? b.report.issued ?? '').localeCompare(a.report.effectiveDateTime ?? a.report.issued ?? ''));
}

export function ResultTable({ results, caption }: { results: Observation[]; caption: string }): VNode {
  return html`<table class="compact">
    <caption class="sr-only">${caption}</caption>
    <thead><tr><th scope="col">Test</th><th scope="col">Value</th><th scope="col">Flag</th><th scope="col">Reference range</th><th scope="col">When</th></tr></thead>
    <tbody>
      ${results.map((o) => {
        const severity = severityOf(o);
        return html`<tr class=${`sev-${severity}`}>
          <th scope="row">${text(o.code)}</th>
          <td>${observationValue(o)}</td>
          <td>${severity === 'normal' ? html`<span class="muted">normal</span>` : html`<span class=${`flag flag-${severity}`}>${flagLabel(o)} ${severity}</span>`}</td>
          <td>${rangeText(o.referenceRange?.[0])}</td>
          <td>${dateTime(o.effectiveDateTime ?? o.issued)}</td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

const VERIFICATION = 'https://fhir.hospital.example.org/StructureDefinition/lab-verification';

/** The verification steps done (the lab workflow's `lab-verification` extensions: technician, pathologist). */
export function verificationsOf(report: DiagnosticReport): string[] {
  return (report.extension ?? []).filter((e) => e.url === VERIFICATION).map((e) => e.extension?.find((x) => x.url === 'step')?.valueCode ?? e.extension?.find((x) => x.url === 'step')?.valueString ?? 'step');
}

/** `POST DiagnosticReport/[id]/$verify` (the lab workflow's operation; where it is missing the server's answer is shown). */
export function verifyReport(ctx: ViewContext, report: DiagnosticReport): Promise<unknown> {
  return ctx.fhir.post(`DiagnosticReport/${report.id}/$verify`, { resourceType: 'Parameters' });
}

export function ReportList(props: { ctx: ViewContext; rows: ReportRow[]; reload: () => void; canVerify: boolean; showPatient?: boolean; empty?: string }): VNode {
  const { ctx, rows } = props;
  if (rows.length === 0) return html`<p class="muted">${props.empty ?? 'Nothing waiting.'}</p>`;
  return html`<ul class="reports">
    ${rows.map(
      (r) => html`<li class=${`report sev-${r.severity}`} data-report=${r.report.id}>
        <div class="report-head">
          <span class=${`flag flag-${r.severity}`}>${r.severity}</span>
          <strong>${text(r.report.code)}</strong>
          ${props.showPatient !== false && r.patient ? html`<button type="button" class="link" onClick=${() => ctx.openChart(r.patient?.id ?? '')}>${nameOf(r.patient.name)}</button>` : null}
          <span class="muted">${r.report.status} · ${dateTime(r.report.effectiveDateTime ?? r.report.issued)}${verificationsOf(r.report).map((step) => ` · ${step} verified`).join('')}</span>
          ${props.canVerify && (r.report.status === 'preliminary' || r.report.status === 'partial') ? html`<${ActionButton} label="Verify" name=${`Verify ${text(r.report.code)}`} kind="primary" run=${() => verifyReport(ctx, r.report)} done=${props.reload} />` : null}
        </div>
        ${r.results.length ? html`<${ResultTable} results=${r.results} caption=${`Results of ${text(r.report.code)}`} />` : null}
      </li>`,
    )}
  </ul>`;
}
