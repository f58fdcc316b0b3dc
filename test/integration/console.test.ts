import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Appointment, Bundle, DiagnosticReport, Patient } from 'fhir/r4.js';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConsole } from '../../scripts/build-console.js';
import { buildDemoHospital, type DemoHospital } from '../../scripts/demo-hospital.js';
import { freePort } from '../support/ports.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { createUser, PASSWORD } from './smart-helpers.js';

/**
 * Issue 16: the hospital web console, built and served by the server at /console, signing in
 * through the server's own SMART authorization (public client `console`, PKCE) in Debian's
 * headless Chromium, on a small demo hospital written by scripts/demo-hospital.ts over HTTP.
 * Each view is checked against what the API returns for the same role; screenshots go to
 * test-artifacts/console/.
 */

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'console');
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`console browser tests skipped: ${CHROMIUM} is missing (apt-get install chromium)`);

let t: TestApp;
let origin: string;
let demo: DemoHospital;
let browser: Browser | undefined;
const doctor = { username: 'console.doctor', fhirUser: '' };
const patient = { username: 'console.patient', id: '' };

async function api<T>(path: string, token = t.token): Promise<T> {
  const res = await fetch(`${origin}/fhir/${path}`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
  return (await res.json()) as T;
}

function todayRange(): [string, string] {
  const now = new Date();
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  return [start.toISOString(), new Date(start.getTime() + 24 * 3600_000).toISOString()];
}

beforeAll(async () => {
  const started = Date.now();
  await buildConsole();
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  t = await startTestApp({ PORT: String(port), BASE_URL: origin });
  await t.server.http.listen({ port, host: '127.0.0.1' });
  const serverReady = Date.now() - started;
  demo = await buildDemoHospital({ baseUrl: origin, token: t.token, syntheaPatients: 0, historyDays: 2, slotMinutes: 60, users: false, log: () => undefined });
  console.log(`console test set-up: server in ${serverReady} ms, demo hospital written in ${Date.now() - started - serverReady} ms`);
  doctor.fhirUser = demo.doctors[0];
  patient.id = demo.patients[0];
  await createUser(t, { username: 'console.admin', role: 'ADMIN' });
  await createUser(t, { username: doctor.username, role: 'DOCTOR', fhirUser: doctor.fhirUser });
  await createUser(t, { username: patient.username, role: 'PATIENT', fhirUser: `Patient/${patient.id}` });
  await createUser(t, { username: 'console.lab', role: 'LAB_TECHNICIAN', fhirUser: 'Practitioner/console-lab' });
  await createUser(t, { username: 'console.accountant', role: 'ACCOUNTANT' });
  if (hasChromium) {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // playwright gives every launch a fresh temporary profile (user-data dir) of its own.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await t?.close();
});

/** Standalone launch from the console: sign-in page, consent, back with the code; the first view filled. */
async function signIn(username: string, kind: 'staff' | 'patient', viewport = { width: 1280, height: 900 }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser!.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(`${origin}/console`);
  await page.click(kind === 'staff' ? '#signin-staff' : '#signin-patient');
  await page.waitForURL('**/auth/authorize?**');
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await page.click('#signin');
  await page.click('#approve');
  await page.waitForURL(`${origin}/console/**`);
  await filled(page);
  // No code, state or anything else left in the address bar.
  expect(new URL(page.url()).search).toBe('');
  return { context, page };
}

/** Every panel of the view has its answer (data or "not available"). */
async function filled(page: Page): Promise<void> {
  await page.waitForSelector('main[data-view]');
  await page.waitForFunction(() => document.querySelectorAll('main [aria-busy="true"]').length === 0 && document.querySelectorAll('main .panel').length > 0);
}

async function view(page: Page, name: string): Promise<number> {
  const before = await page.evaluate(() => (window as unknown as { __consoleRequests?: number }).__consoleRequests ?? 0);
  await page.click(`nav a[href="#/${name}"]`);
  await page.waitForSelector(`main[data-view="${name}"]`);
  await filled(page);
  return (await page.evaluate(() => (window as unknown as { __consoleRequests?: number }).__consoleRequests ?? 0)) - before;
}

const panel = (page: Page, id: string) => page.locator(`[data-panel="${id}"]`);

describe('the console as served (issue 16 §1)', () => {
  it('is served at /console with a CSP without inline code, no framing, and hashed assets cached for ever', async () => {
    const redirect = await fetch(`${origin}/console`, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    const page = await fetch(`${origin}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    const script = /src="\.\/(app-[A-Z0-9]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const asset = await fetch(`${origin}/console/${script}`);
    expect(asset.headers.get('content-type')).toContain('text/javascript');
    expect(asset.headers.get('cache-control')).toContain('immutable');
    // Nothing from elsewhere: no absolute URL in the page.
    expect(html).not.toMatch(/(src|href)="https?:/);
    expect((await fetch(`${origin}/console/nope.js`)).status).toBe(404);
    const config = (await (await fetch(`${origin}/console/config.json`)).json()) as Record<string, string>;
    expect(config).toMatchObject({ clientId: 'console', fhirBase: `${origin}/fhir`, consoleUrl: `${origin}/console/` });
  });

  it('is registered at start-up as a public SMART client with its redirect and PKCE only', async () => {
    const authorize = await fetch(`${origin}/auth/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'console', redirect_uri: `${origin}/console/`, scope: 'openid fhirUser user/*.rs', state: 's', aud: `${origin}/fhir` })}`, { redirect: 'manual' });
    // No code_challenge: refused back to the console's own redirect (PKCE is required).
    expect(authorize.status).toBe(302);
    expect(authorize.headers.get('location')).toContain(`${origin}/console/?error=invalid_request`);
    const elsewhere = await fetch(`${origin}/auth/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'console', redirect_uri: 'https://evil.example/console/', scope: 'openid', aud: `${origin}/fhir` })}`, { redirect: 'manual' });
    expect(elsewhere.status).toBe(400);
  });
});

describe.skipIf(!hasChromium)('the console in headless Chromium (issue 16 §2, §4)', () => {
  it('ADMIN: the summary shows what the API holds; booking a free slot at the front desk books it through the API', async () => {
    const { context, page } = await signIn('console.admin', 'staff');
    try {
      expect(await page.textContent('#user-role')).toBe('ADMIN');
      const patients = await api<Bundle>('Patient?_summary=count');
      await expect.poll(() => panel(page, 'patients').locator('.stat-value').first().textContent()).toBe(String(patients.total));
      const [start, end] = todayRange();
      const today = await api<Bundle>(`Appointment?date=ge${start}&date=lt${end}&_count=1000&_elements=status`);
      expect(await panel(page, 'today').locator('.stat-value').first().textContent()).toBe(String(today.entry?.length ?? 0));
      // Bed occupancy per ward, as the server's own $occupancy counts it.
      for (const ward of demo.wards) {
        const occupancy = await api<{ parameter: Array<{ name: string; valueInteger?: number; valueReference?: { display?: string } }> }>(`Location/${ward}/$occupancy`);
        const occupied = occupancy.parameter.find((p) => p.name === 'occupied')?.valueInteger;
        const name = (await api<{ name: string }>(`Location/${ward}`)).name;
        await expect.poll(() => panel(page, 'occupancy').locator('tr', { hasText: name }).locator('td').first().textContent()).toBe(String(occupied));
      }
      // Outstanding invoices: the issued ones.
      const issued = await api<Bundle>('Invoice?status=issued&_summary=count');
      expect(await panel(page, 'invoices').locator('.stat-value').first().textContent()).toBe(String(issued.total));
      // A hospital report the server lacks would read "Not available", never break the page.
      for (const id of ['revenue', 'turnaround']) expect(await panel(page, id).locator('h2').count()).toBe(1);
      expect(await panel(page, 'noshow').locator('.chart canvas, .chart .u-over').count()).toBeGreaterThan(0);
      await page.screenshot({ path: join(ARTIFACTS, 'admin-summary.png'), fullPage: true });

      // Front desk: doctor → free slot → patient → Book.
      const requests = await view(page, 'frontdesk');
      expect(requests).toBeLessThanOrEqual(4);
      const schedule = (await api<Bundle>(`Schedule?actor=${demo.doctors[1]}`)).entry?.[0]?.resource?.id ?? '';
      await page.selectOption('#book-doctor', schedule);
      await page.waitForFunction(() => (document.querySelector('#book-slot') as HTMLSelectElement | null)?.options.length! > 1);
      const slotId = await page.locator('#book-slot option').nth(1).getAttribute('value');
      await page.selectOption('#book-slot', slotId!);
      const someone = await api<Patient>(`Patient/${demo.patients[2]}`);
      await page.fill('#book-patient-name', someone.name?.[0]?.family ?? '');
      await page.click('button:has-text("Find")');
      await page.check(`input[name="book-patient"][value="${someone.id}"]`);
      await page.click('button[aria-label="Book the appointment"]');
      await expect.poll(() => page.locator('p.ok[role="status"]').count()).toBe(1);
      const booked = await api<Bundle>(`Appointment?slot=Slot/${slotId}`);
      expect(booked.entry).toHaveLength(1);
      const appointment = booked.entry![0].resource as Appointment;
      expect(appointment.status).toBe('booked');
      expect(appointment.participant.map((p) => p.actor?.reference)).toContain(`Patient/${someone.id}`);
      expect((await api<{ status: string }>(`Slot/${slotId}`)).status).toBe('busy');
      await page.screenshot({ path: join(ARTIFACTS, 'admin-frontdesk.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }, 40_000);

  it('DOCTOR: own appointments of today, results critical first, unsigned notes; check-in changes the Appointment; the chart', async () => {
    const { context, page } = await signIn(doctor.username, 'staff');
    try {
      expect(await page.getAttribute('main', 'data-view')).toBe('worklist');
      expect(await page.locator('nav a').allTextContents()).not.toContain('Summary');
      const [start, end] = todayRange();
      const mine = await api<Bundle>(`Appointment?actor=${doctor.fhirUser}&date=ge${start}&date=lt${end}&_count=200`);
      const rows = panel(page, 'appointments').locator('tbody tr');
      expect(await rows.count()).toBe(mine.entry?.length ?? 0);
      // Only this doctor's: every row is one of the API's appointments for them.
      const ids = new Set((mine.entry ?? []).map((e) => e.resource?.id));
      for (const id of await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-appointment')))) expect(ids.has(id ?? '')).toBe(true);
      // Critical first.
      expect(await panel(page, 'results').locator('li.report').first().getAttribute('class')).toContain('sev-critical');
      expect(await panel(page, 'notes').locator('li').count()).toBeGreaterThan(0);
      await page.screenshot({ path: join(ARTIFACTS, 'doctor-worklist.png'), fullPage: true });

      const waiting = panel(page, 'appointments').locator('tr', { has: page.locator('button:has-text("Check in")') }).first();
      const id = (await waiting.getAttribute('data-appointment'))!;
      await waiting.locator('button:has-text("Check in")').click();
      await expect.poll(async () => (await api<Appointment>(`Appointment/${id}`)).status).toBe('checked-in');
      await expect.poll(() => panel(page, 'appointments').locator(`tr[data-appointment="${id}"] .status`).textContent()).toBe('checked-in');

      // The chart of the first appointment's patient, from the work list.
      await panel(page, 'appointments').locator('tbody tr button.link').first().click();
      await page.waitForSelector('main[data-view="chart"]');
      await filled(page);
      const shown = await page.textContent('[data-field="pt-number"]');
      const first = (mine.entry ?? []).map((e) => e.resource as Appointment).sort((a, b) => (a.start ?? '').localeCompare(b.start ?? ''))[0];
      const chartPatient = await api<Patient>(first.participant.find((p) => p.actor?.reference?.startsWith('Patient/'))!.actor!.reference!);
      expect(shown).toBe(chartPatient.identifier?.find((i) => i.system?.endsWith('/patient-number'))?.value ?? '—');
      await page.screenshot({ path: join(ARTIFACTS, 'doctor-chart.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }, 40_000);

  it('PATIENT (phone width): the portal shows the own record and nothing of other patients', async () => {
    const { context, page } = await signIn(patient.username, 'patient', { width: 390, height: 844 });
    try {
      expect(await page.getAttribute('main', 'data-view')).toBe('portal');
      expect(await page.locator('nav a').allTextContents()).toEqual(['My health']);
      const me = await api<Patient>(`Patient/${patient.id}`);
      expect(await page.textContent('.banner-name')).toContain(me.name?.[0]?.family);
      const mine = await api<Bundle>(`Appointment?patient=${patient.id}&_count=100`);
      expect(await panel(page, 'my-appointments').locator('li').count()).toBe(mine.entry?.length ?? 0);
      const invoices = await api<Bundle>(`Invoice?subject=Patient/${patient.id}&_count=100`);
      expect(await panel(page, 'my-invoices').locator('li').count()).toBe(invoices.entry?.length ?? 0);
      const text = (await page.textContent('main')) ?? '';
      for (const other of demo.patients.slice(1, 6)) {
        const family = (await api<Patient>(`Patient/${other}`)).name?.[0]?.family?.replace(/\d+/g, '');
        if (family) expect(text).not.toContain(family);
      }
      // Nothing lays out wider than the phone.
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      // The token is the patient's: the server refuses another patient's record.
      const token = await page.evaluate(() => (JSON.parse(sessionStorage.getItem('console.session') ?? '{}') as { accessToken?: string }).accessToken ?? '');
      expect((await fetch(`${origin}/fhir/Patient/${demo.patients[1]}`, { headers: { authorization: `Bearer ${token}` } })).status).toBeGreaterThanOrEqual(403);
      await page.screenshot({ path: join(ARTIFACTS, 'patient-portal-phone.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }, 30_000);

  it('ACCOUNTANT: panels the role may not read say "Not available"; the others still show their data', async () => {
    const { context, page } = await signIn('console.accountant', 'staff');
    try {
      expect(await page.getAttribute('main', 'data-view')).toBe('summary');
      // Locations and Appointments are outside the accountant's scopes: refused by the server, shown as such.
      expect(await panel(page, 'occupancy').locator('.unavailable').textContent()).toContain('Not available');
      expect(await panel(page, 'today').locator('.unavailable').count()).toBe(1);
      const issued = await api<Bundle>('Invoice?status=issued&_summary=count');
      expect(await panel(page, 'invoices').locator('.stat-value').first().textContent()).toBe(String(issued.total));
      await page.screenshot({ path: join(ARTIFACTS, 'accountant-summary.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }, 30_000);

  it('LAB_TECHNICIAN: the work list STAT first; Verify records the technician verification through $verify', async () => {
    const { context, page } = await signIn('console.lab', 'staff');
    try {
      expect(await page.getAttribute('main', 'data-view')).toBe('lab');
      const priorities = await panel(page, 'worklist').locator('tbody tr .priority').allTextContents();
      expect(priorities.length).toBeGreaterThan(0);
      const rank = (p: string) => ['STAT', 'ASAP', 'URGENT', 'ROUTINE'].indexOf(p);
      expect(priorities.map(rank)).toEqual([...priorities.map(rank)].sort((a, b) => a - b));
      const report = panel(page, 'verify').locator('li.report').first();
      const id = (await report.getAttribute('data-report'))!;
      // By keyboard: the action is a real button with a name (focus, Enter).
      const verify = report.locator('button:has-text("Verify")');
      expect(await verify.getAttribute('aria-label')).toMatch(/^Verify /);
      await verify.focus();
      await page.keyboard.press('Enter');
      await expect
        .poll(async () => ((await api<DiagnosticReport>(`DiagnosticReport/${id}`)).extension ?? []).some((e) => e.url.endsWith('/lab-verification')))
        .toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'lab-worklist.png'), fullPage: true });
    } finally {
      await context.close();
    }
  }, 30_000);
});
