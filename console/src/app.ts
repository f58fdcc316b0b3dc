import { html } from 'htm/preact';
import type { VNode } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { ViewContext } from './context.js';
import { Fhir } from './fhir.js';
import { signOut, startSignIn, type ConsoleConfig, type Session } from './oauth.js';
import { AdminSummary } from './views/admin.js';
import { BedBoard } from './views/beds.js';
import { PatientChart } from './views/chart.js';
import { DoctorWorklist } from './views/doctor.js';
import { FrontDesk } from './views/frontdesk.js';
import { LabWorklist } from './views/lab.js';
import { PharmacyStock } from './views/pharmacy.js';
import { PatientPortal } from './views/portal.js';

type ViewName = 'summary' | 'worklist' | 'chart' | 'lab' | 'pharmacy' | 'beds' | 'frontdesk' | 'portal';

const LABELS: Record<ViewName, string> = {
  summary: 'Summary',
  worklist: 'My work list',
  chart: 'Patient chart',
  lab: 'Lab work list',
  pharmacy: 'Pharmacy stock',
  beds: 'Bed board',
  frontdesk: 'Front desk',
  portal: 'My health',
};

/** What each role sees; the server still decides what each call returns (the token's scopes). */
export const VIEWS_BY_ROLE: Record<string, ViewName[]> = {
  ADMIN: ['summary', 'frontdesk', 'beds', 'chart', 'lab', 'pharmacy'],
  DOCTOR: ['worklist', 'chart', 'beds'],
  NURSE: ['beds', 'chart'],
  LAB_TECHNICIAN: ['lab'],
  PHARMACIST: ['pharmacy'],
  RECEPTIONIST: ['frontdesk', 'beds'],
  ACCOUNTANT: ['summary'],
  INSURANCE_PROVIDER: ['summary'],
  PATIENT: ['portal'],
};

function viewFromHash(allowed: ViewName[]): ViewName {
  const name = location.hash.replace(/^#\/?/, '') as ViewName;
  return allowed.includes(name) ? name : allowed[0];
}

export function SignIn({ config, error }: { config: ConsoleConfig; error?: string }): VNode {
  const [busy, setBusy] = useState(false);
  const go = (kind: 'staff' | 'patient') => {
    setBusy(true);
    startSignIn(config, kind).catch(() => setBusy(false));
  };
  return html`<main class="signin" id="main">
    <h1>Hospital console</h1>
    ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    <p>Sign in with your hospital account. Staff see their work; patients see their own record.</p>
    <div class="signin-actions">
      <button type="button" class="primary" id="signin-staff" disabled=${busy} onClick=${() => go('staff')}>Staff sign in</button>
      <button type="button" class="secondary" id="signin-patient" disabled=${busy} onClick=${() => go('patient')}>Patient portal sign in</button>
    </div>
  </main>`;
}

export function App({ config, session, onSignedOut }: { config: ConsoleConfig; session: Session; onSignedOut: () => void }): VNode {
  const allowed = VIEWS_BY_ROLE[session.role] ?? [];
  const [view, setView] = useState<ViewName>(() => viewFromHash(allowed));
  const [chartPatient, setChartPatient] = useState<string | undefined>();
  const [visit, setVisit] = useState(0);
  useEffect(() => {
    // Each visit of a view loads it afresh (the numbers of a dashboard are those of now).
    const onHash = () => {
      setView(viewFromHash(allowed));
      setVisit((n) => n + 1);
    };
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, [session.role]);
  useEffect(() => {
    document.title = `${LABELS[view] ?? 'Console'} · Hospital console`;
    document.getElementById('main')?.focus();
  }, [view]);
  const ctx: ViewContext = useMemo(
    () => ({
      fhir: new Fhir(config.fhirBase, session.accessToken, () => void signOut(config, undefined).then(onSignedOut)),
      session,
      openChart: (id: string) => {
        if (!allowed.includes('chart')) return;
        setChartPatient(id);
        location.hash = '#/chart';
      },
    }),
    [session.accessToken],
  );
  const mismatch = session.role === 'PATIENT' ? !session.patient : !session.scope.split(' ').some((s) => s.startsWith('user/'));
  let content: VNode;
  if (allowed.length === 0) content = html`<p class="error" role="alert">The role ${session.role} has no views in this console.</p>`;
  else if (mismatch) content = html`<p class="error" role="alert">This account was signed in through the wrong door: ${session.role === 'PATIENT' ? 'use “Patient portal sign in”.' : 'use “Staff sign in”.'}</p>`;
  else if (view === 'summary') content = html`<${AdminSummary} ctx=${ctx} />`;
  else if (view === 'worklist') content = html`<${DoctorWorklist} ctx=${ctx} />`;
  else if (view === 'chart') content = html`<${PatientChart} ctx=${ctx} patientId=${chartPatient} choose=${setChartPatient} />`;
  else if (view === 'lab') content = html`<${LabWorklist} ctx=${ctx} />`;
  else if (view === 'pharmacy') content = html`<${PharmacyStock} ctx=${ctx} />`;
  else if (view === 'beds') content = html`<${BedBoard} ctx=${ctx} />`;
  else if (view === 'frontdesk') content = html`<${FrontDesk} ctx=${ctx} />`;
  else content = html`<${PatientPortal} ctx=${ctx} />`;
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${(e: Event) => (e.preventDefault(), document.getElementById('main')?.focus())}>Skip to content</a>
    <header class="top">
      <span class="brand">Hospital console</span>
      <nav aria-label="Views">
        <ul>${allowed.map((v) => html`<li><a href=${`#/${v}`} aria-current=${v === view ? 'page' : undefined} onClick=${() => v === 'chart' && view === 'chart' && setChartPatient(undefined)}>${LABELS[v]}</a></li>`)}</ul>
      </nav>
      <span class="who"><span id="user-name">${session.username ?? 'signed in'}</span> <span class="role" id="user-role">${session.role}</span>
        <button type="button" class="secondary" id="signout" onClick=${() => void signOut(config, session).then(onSignedOut)}>Sign out</button></span>
    </header>
    <main id="main" tabindex="-1" data-view=${view}>
      <h1 class="view-title">${LABELS[view]}</h1>
      <div key=${visit}>${content}</div>
    </main>
  </div>`;
}
