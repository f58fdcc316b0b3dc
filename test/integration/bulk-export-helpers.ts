import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle, Resource } from 'fhir/r4.js';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import { SHARED_DATA, type TestApp } from '../support/test-app.js';

/** Shared by the bulk export / $everything tests: loading Synthea, the kick-off / poll / download loop. */

export const BASE = 'http://localhost:8080';
export const KICKOFF_HEADERS = { prefer: 'respond-async', accept: 'application/fhir+json' };

/** A URL the server handed out, as a path for inject. */
export function local(url: string): string {
  expect(url.startsWith(BASE)).toBe(true);
  return url.slice(BASE.length);
}

export function syntheaFiles(): string[] {
  const dir = join(SHARED_DATA, 'synthea');
  return readdirSync(dir).filter((f) => f.endsWith('.json.gz')).sort();
}

function readBundle(file: string): Bundle {
  return JSON.parse(gunzipSync(readFileSync(join(SHARED_DATA, 'synthea', file))).toString('utf8')) as Bundle;
}

/** The two `0-*` batch bundles (organizations, practitioners), then `patients` patient transactions. */
export async function loadSynthea(t: TestApp, patients: number): Promise<void> {
  const files = syntheaFiles();
  const batches = files.filter((f) => f.startsWith('0-'));
  const people = files.filter((f) => !f.startsWith('0-')).slice(0, patients);
  for (const file of [...batches, ...people]) {
    const res = await t.request({ method: 'POST', url: '/fhir', payload: readBundle(file), headers: { prefer: 'return=minimal' } });
    expect(res.statusCode, `${file}: ${res.body.slice(0, 300)}`).toBe(200);
  }
}

export interface Manifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: Array<{ type: string; url: string; count: number }>;
  error: Array<{ type: string; url: string; count: number }>;
}

export async function kickOff(t: TestApp, url: string, options: { method?: 'GET' | 'POST'; payload?: unknown; headers?: Record<string, string> } = {}): Promise<LightMyRequestResponse> {
  return t.request({ method: options.method ?? 'GET', url, payload: options.payload as string | undefined, headers: { ...KICKOFF_HEADERS, ...options.headers } });
}

/** Kick-off that must be accepted; returns the status path. */
export async function startExport(t: TestApp, url: string, options: Parameters<typeof kickOff>[2] = {}): Promise<string> {
  const res = await kickOff(t, url, options);
  expect(res.statusCode, res.body.slice(0, 400)).toBe(202);
  return local(String(res.headers['content-location']));
}

/** Polls until the export is no longer running; returns the final response. */
export async function waitForExport(t: TestApp, statusPath: string, timeoutMs = 60_000): Promise<LightMyRequestResponse> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await t.request({ method: 'GET', url: statusPath });
    if (res.statusCode !== 202) return res;
    if (Date.now() > deadline) throw new Error(`export still running after ${timeoutMs} ms: ${String(res.headers['x-progress'])}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function exportManifest(t: TestApp, url: string, options: Parameters<typeof kickOff>[2] = {}): Promise<Manifest> {
  const res = await waitForExport(t, await startExport(t, url, options));
  expect(res.statusCode, res.body.slice(0, 400)).toBe(200);
  return res.json() as Manifest;
}

/** Every resource of every output file, checked to be NDJSON of the file's type. */
export async function downloadAll(t: TestApp, manifest: Manifest, kind: 'output' | 'error' = 'output'): Promise<Resource[]> {
  const out: Resource[] = [];
  for (const file of manifest[kind]) {
    const res = await t.request({ method: 'GET', url: local(file.url), headers: { accept: 'application/fhir+ndjson' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/fhir+ndjson');
    const lines = res.body.split('\n').filter((l) => l !== '');
    expect(lines.length).toBe(file.count);
    for (const line of lines) {
      const resource = JSON.parse(line) as Resource;
      expect(resource.resourceType).toBe(file.type);
      out.push(resource);
    }
  }
  return out;
}

/** A token for the test client with other scopes. */
export async function tokenWithScope(t: TestApp, scope: string, clientSecret: string): Promise<string> {
  const res = await t.server.http.inject({
    method: 'POST',
    url: '/auth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`test-client:${clientSecret}`).toString('base64')}` },
    payload: `grant_type=client_credentials&scope=${encodeURIComponent(scope)}`,
  });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json() as { access_token: string }).access_token;
}

/** Ids of a search's matches over all its pages, sorted. */
export async function searchIds(t: TestApp, query: string, headers: Record<string, string> = {}): Promise<string[]> {
  const ids: string[] = [];
  let url: string | undefined = `/fhir/${query}${query.includes('?') ? '&' : '?'}_count=1000&_elements=id`;
  while (url) {
    const res = await t.request({ method: 'GET', url, headers });
    expect(res.statusCode, res.body.slice(0, 300)).toBe(200);
    const bundle = res.json() as Bundle;
    ids.push(...(bundle.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource!.id!));
    const next = bundle.link?.find((l) => l.relation === 'next')?.url;
    url = next ? local(next) : undefined;
  }
  return ids.sort();
}
