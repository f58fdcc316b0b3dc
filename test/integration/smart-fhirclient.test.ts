import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import smart from 'fhirclient/lib/entry/node.js';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { createPatient, createUser, PASSWORD, registerClient } from './smart-helpers.js';
import { freePort } from '../support/ports.js';

/**
 * The real `fhirclient` library as the SMART app (its Node adapter, in a small HTTP server of
 * the test), against the server listening on a real socket; the browser part is driven by
 * plain HTTP requests and, where Debian's chromium is installed, by headless Chromium.
 */

const CHROMIUM = '/usr/bin/chromium';

let t: TestApp;
let fhirBase: string;
let appServer: Server;
let appBase: string;
let clientId: string;
let patientId: string;
let launchPatient: string;

/** The app: /launch starts authorization (EHR launch when `launch` is given), /callback finishes it and shows the patient. */
function startApp(): Promise<void> {
  const sessions = new Map<string, unknown>();
  const storage = {
    get: async (key: string) => sessions.get(key),
    set: async (key: string, value: unknown) => (sessions.set(key, value), value),
    unset: async (key: string) => sessions.delete(key),
  };
  appServer = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', appBase);
    const run = async () => {
      const api = smart(req, res, storage);
      if (url.pathname === '/launch') {
        await api.authorize({
          clientId,
          scope: url.searchParams.get('scope') ?? 'openid fhirUser launch/patient patient/*.rs offline_access',
          redirectUri: '/callback',
          iss: url.searchParams.get('iss') ?? fhirBase,
        });
        return;
      }
      if (url.pathname === '/callback') {
        const client = await api.ready();
        const patient = await client.request<{ id: string; name?: Array<{ family?: string }> }>(`Patient/${client.patient.id}`);
        const idToken = client.getIdToken();
        res.writeHead(200, { 'content-type': 'text/html' }).end(
          `<html><body><p id="result">${JSON.stringify({ patient: patient.id, family: patient.name?.[0]?.family, fhirUser: idToken?.fhirUser, refresh: Boolean(client.state.tokenResponse?.refresh_token), encounter: client.encounter.id ?? null, banner: client.state.tokenResponse?.need_patient_banner ?? null })}</p></body></html>`,
        );
        return;
      }
      res.writeHead(404).end();
    };
    run().catch((e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`app error: ${e instanceof Error ? e.message : String(e)}`));
  });
  return new Promise((resolve) => appServer.listen(0, '127.0.0.1', () => resolve()));
}

beforeAll(async () => {
  const port = await freePort();
  t = await startTestApp({ PORT: String(port), BASE_URL: `http://127.0.0.1:${port}` });
  await t.server.http.listen({ port, host: '127.0.0.1' });
  fhirBase = `http://127.0.0.1:${port}/fhir`;
  await startApp();
  appBase = `http://127.0.0.1:${(appServer.address() as { port: number }).port}`;
  patientId = await createPatient(t, 'Clientlib');
  launchPatient = await createPatient(t, 'Launched');
  clientId = (await registerClient(t, { client_name: 'fhirclient app', redirect_uris: [`${appBase}/callback`], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], scope: 'openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs' })).client_id;
  await createUser(t, { username: 'lib.patient', role: 'PATIENT', fhirUser: `Patient/${patientId}` });
  await createUser(t, { username: 'lib.doctor', role: 'DOCTOR', fhirUser: 'Practitioner/lib' });
}, 180_000);
afterAll(async () => {
  if (appServer) await new Promise((resolve) => appServer.close(resolve));
  await t?.close();
});

/** Follows the app and the authorization pages with fetch, as a browser without scripts would. */
async function browse(startUrl: string, username: string): Promise<Record<string, unknown>> {
  const toAuthorize = await fetch(startUrl, { redirect: 'manual' });
  expect(toAuthorize.status, await toAuthorize.clone().text()).toBe(302);
  const authorizeUrl = toAuthorize.headers.get('location')!;
  expect(authorizeUrl.startsWith(`${new URL(fhirBase).origin}/auth/authorize?`)).toBe(true);
  const signIn = await fetch(authorizeUrl);
  const request = /name="request" value="([^"]+)"/.exec(await signIn.text())![1];
  const origin = new URL(fhirBase).origin;
  const postForm = (path: string, fields: Record<string, string>) =>
    fetch(`${origin}${path}`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  const consent = await postForm('/auth/authorize/signin', { request, username, password: PASSWORD });
  expect(await consent.text()).toContain('Allow access?');
  const back = await postForm('/auth/authorize/consent', { request, decision: 'approve' });
  expect(back.status).toBe(302);
  const callback = back.headers.get('location')!;
  expect(callback.startsWith(`${appBase}/callback?`)).toBe(true);
  const page = await fetch(callback);
  const html = await page.text();
  expect(page.status, html).toBe(200);
  return JSON.parse(/<p id="result">(.*)<\/p>/.exec(html)![1]) as Record<string, unknown>;
}

describe('the fhirclient library as the app', () => {
  it('standalone launch: discovery, PKCE, code exchange, id_token and a patient read', async () => {
    const result = await browse(`${appBase}/launch`, 'lib.patient');
    expect(result).toMatchObject({ patient: patientId, family: 'Clientlib', fhirUser: `${fhirBase}/Patient/${patientId}`, refresh: true });
  });

  it('EHR launch: the launch parameter binds the patient and encounter', async () => {
    const minted = await fetch(`${new URL(fhirBase).origin}/auth/launch`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ patient: launchPatient, encounter: 'enc-42' }),
    });
    const { launch } = (await minted.json()) as { launch: string };
    const result = await browse(`${appBase}/launch?${new URLSearchParams({ iss: fhirBase, launch, scope: 'launch openid fhirUser patient/*.rs' })}`, 'lib.doctor');
    expect(result).toMatchObject({ patient: launchPatient, family: 'Launched', fhirUser: `${fhirBase}/Practitioner/lib`, encounter: 'enc-42', banner: false });
  });
});

describe.skipIf(!existsSync(CHROMIUM))('the pages in headless Chromium (Debian chromium)', () => {
  it('sign-in, patient picker and consent pages work in a real browser, ending in the app with the patient', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      await page.goto(`${appBase}/launch`);
      await expect.poll(() => page.url()).toContain('/auth/authorize');
      await page.fill('#username', 'lib.doctor');
      await page.fill('#password', 'not the password');
      await page.click('#signin');
      await expect.poll(() => page.textContent('.error')).toContain('Wrong user name or password');
      await page.fill('#password', PASSWORD);
      await page.click('#signin');
      await page.fill('#name', 'Clientlib');
      await page.click('button:has-text("Search")');
      await page.check(`input[name="patient"][value="${patientId}"]`);
      await page.click('#choose');
      expect(await page.textContent('#scopes')).toContain('patient/*.rs');
      await page.click('#approve');
      await page.waitForURL(`${appBase}/callback?**`);
      const result = JSON.parse((await page.textContent('#result')) ?? '{}') as Record<string, unknown>;
      expect(result).toMatchObject({ patient: patientId, family: 'Clientlib', fhirUser: `${fhirBase}/Practitioner/lib` });
    } finally {
      await browser.close();
    }
  }, 120_000);
});
