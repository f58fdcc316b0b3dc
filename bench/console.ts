import { existsSync } from 'node:fs';
import { chromium, type Page } from 'playwright-core';
import type { DemoAccount } from '../scripts/demo-hospital.js';

/**
 * The hospital web console (issue 16) in Debian's headless Chromium on the demo hospital: for
 * each role's views, the time from choosing the view to every panel filled (aim ≤ 1 s) and the
 * number of API requests it made (a fixed handful per view, never one per row). Baseline in the
 * same run: the same API requests replayed from Node in parallel with the same token (the API's
 * own share of the view's time).
 */

const CHROMIUM = '/usr/bin/chromium';

export interface ConsoleViewFigure {
  role: string;
  view: string;
  /** Median ms from the click to a filled view. */
  ms: number;
  requests: number;
  /** Median ms of the same requests sent from Node in parallel. */
  apiMs: number;
  ratio: number;
}

export interface ConsoleBenchReport {
  skipped?: string;
  views: ConsoleViewFigure[];
  aim: string;
  met: boolean;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function filled(page: Page, view: string): Promise<void> {
  await page.waitForSelector(`main[data-view="${view}"]`);
  await page.waitForFunction(() => document.querySelectorAll('main [aria-busy="true"]').length === 0 && document.querySelectorAll('main .panel').length > 0);
}

export async function benchConsole(o: { baseUrl: string; accounts: DemoAccount[]; rounds: number }): Promise<ConsoleBenchReport> {
  const aim = 'each view filled ≤ 1000 ms';
  if (!existsSync(CHROMIUM)) return { skipped: `${CHROMIUM} is missing`, views: [], aim, met: false };
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const views: ConsoleViewFigure[] = [];
  try {
    for (const role of ['ADMIN', 'DOCTOR', 'LAB_TECHNICIAN', 'PHARMACIST', 'PATIENT']) {
      const account = o.accounts.find((a) => a.role === role);
      if (!account) continue;
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      await page.goto(`${o.baseUrl}/console/`);
      await page.click(role === 'PATIENT' ? '#signin-patient' : '#signin-staff');
      await page.waitForURL('**/auth/authorize?**');
      await page.fill('#username', account.username);
      await page.fill('#password', account.password);
      await page.click('#signin');
      await page.click('#approve');
      await page.waitForSelector('main[data-view]');
      const token = await page.evaluate(() => (JSON.parse(sessionStorage.getItem('console.session') ?? '{}') as { accessToken?: string }).accessToken ?? '');
      const names = (await page.locator('nav a').evaluateAll((as) => as.map((a) => (a.getAttribute('href') ?? '').replace('#/', '')))).filter((v) => v !== 'chart');
      for (const view of names) {
        const times: number[] = [];
        let urls: string[] = [];
        for (let round = 0; round < o.rounds; round++) {
          // From another view, filled first, so each round loads the view afresh and counts its own requests.
          const other = names.find((n) => n !== view) ?? 'none';
          await page.evaluate((h) => (location.hash = `#/${h}`), other);
          // Preact renders on its next tick: let the remount start before waiting for it to settle.
          await page.waitForTimeout(100);
          await filled(page, other === 'none' ? view : other);
          const seen: string[] = [];
          const onRequest = (r: { url(): string }) => r.url().includes('/fhir/') && seen.push(r.url());
          page.on('request', onRequest);
          const started = Date.now();
          await page.click(`nav a[href="#/${view}"]`);
          await filled(page, view);
          times.push(Date.now() - started);
          page.off('request', onRequest);
          urls = seen;
        }
        const apiTimes: number[] = [];
        for (let round = 0; round < o.rounds; round++) {
          const started = Date.now();
          await Promise.all(urls.filter((u) => !u.includes('$verify')).map((u) => fetch(u, { headers: { authorization: `Bearer ${token}`, accept: 'application/fhir+json' } }).then((r) => r.arrayBuffer())));
          apiTimes.push(Date.now() - started);
        }
        const ms = median(times);
        const apiMs = Math.max(1, median(apiTimes));
        views.push({ role, view, ms, requests: urls.length, apiMs, ratio: ms / apiMs });
      }
      await context.close();
    }
  } finally {
    await browser.close();
  }
  return { views, aim, met: views.length > 0 && views.every((v) => v.ms <= 1000) };
}
