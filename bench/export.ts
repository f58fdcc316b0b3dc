import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gunzipSync } from 'node:zlib';
import { sql } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { keysetPage } from '../src/storage/export-store.js';

export interface ExportBenchOptions {
  app: ServerApp;
  token: string;
  /** Synthea patient bundles to have loaded (loaded now if the database holds fewer patients). */
  patients: number;
  /** keyset page size of the raw baseline; the export job's own page size is `app.bulk.tuning.chunkSize` */
  chunkSize?: number;
  /** runs of each path, alternating; the median run is reported (a 2-core machine is noisy) */
  repeats?: number;
}

export interface ExportFigure {
  what: string;
  resources: number;
  seconds: number;
  perSecond: number;
  megabytes: number;
  peakRssMb: number;
  peakHeapMb: number;
}

export interface ExportBenchResult {
  loaded: { patients: number; resources: number; loadSeconds: number };
  before: { rssMb: number; heapMb: number };
  fhir: ExportFigure;
  raw: ExportFigure;
  download: ExportFigure;
  /** fhir resources/s ÷ raw resources/s */
  throughputRatio: number;
}

const SYNTHEA = resolve(process.cwd(), '../shared/data/synthea');
const MB = 1024 * 1024;

/** Peak RSS and heap while `work` runs, sampled every 10 ms (plus once at the end). */
async function sampled<T>(work: () => Promise<T>): Promise<{ value: T; seconds: number; peakRss: number; peakHeap: number }> {
  let peakRss = 0;
  let peakHeap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  };
  sample();
  const timer = setInterval(sample, 10);
  const started = performance.now();
  try {
    const value = await work();
    sample();
    return { value, seconds: (performance.now() - started) / 1000, peakRss, peakHeap };
  } finally {
    clearInterval(timer);
  }
}

/** The run of median duration, with the highest memory peaks seen over all runs. */
function median<T extends { seconds: number; peakRss: number; peakHeap: number }>(runs: T[]): T {
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds);
  const mid = sorted[Math.floor(sorted.length / 2)]!;
  return { ...mid, peakRss: Math.max(...runs.map((r) => r.peakRss)), peakHeap: Math.max(...runs.map((r) => r.peakHeap)) };
}

function figure(what: string, resources: number, bytes: number, run: { seconds: number; peakRss: number; peakHeap: number }): ExportFigure {
  return { what, resources, seconds: run.seconds, perSecond: resources / run.seconds, megabytes: bytes / MB, peakRssMb: run.peakRss / MB, peakHeapMb: run.peakHeap / MB };
}

async function loadSynthea(o: ExportBenchOptions): Promise<number> {
  const db = o.app.database.db;
  const count = async (type: string) =>
    Number((await sql<{ n: string }>`SELECT count(*) AS n FROM resource WHERE resource_type = ${type} AND deleted = false`.execute(db)).rows[0]!.n);
  const have = await count('Patient');
  if (have >= o.patients) return 0;
  const files = readdirSync(SYNTHEA).filter((f) => f.endsWith('.json.gz')).sort();
  const batches = (await count('Organization')) > 0 ? [] : files.filter((f) => f.startsWith('0-'));
  const people = files.filter((f) => !f.startsWith('0-')).slice(have, o.patients);
  const started = performance.now();
  for (const file of [...batches, ...people]) {
    const res = await o.app.http.inject({
      method: 'POST',
      url: '/fhir',
      headers: { authorization: `Bearer ${o.token}`, 'content-type': 'application/fhir+json', prefer: 'return=minimal' },
      payload: gunzipSync(readFileSync(join(SYNTHEA, file))),
    });
    if (res.statusCode !== 200) throw new Error(`loading ${file} failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
  }
  return (performance.now() - started) / 1000;
}

/** System $export through the API: kick-off, poll until the manifest is there. */
async function fhirExport(o: ExportBenchOptions): Promise<{ jobId: string; files: Array<{ url: string; count: number }>; resources: number }> {
  const headers = { authorization: `Bearer ${o.token}`, accept: 'application/fhir+json', prefer: 'respond-async' };
  const kick = await o.app.http.inject({ method: 'GET', url: '/fhir/$export', headers });
  if (kick.statusCode !== 202) throw new Error(`kick-off failed: ${kick.statusCode} ${kick.body.slice(0, 300)}`);
  const status = new URL(String(kick.headers['content-location'])).pathname;
  for (;;) {
    const res = await o.app.http.inject({ method: 'GET', url: status, headers });
    if (res.statusCode === 200) {
      const manifest = res.json() as { output: Array<{ url: string; count: number }> };
      return { jobId: status.split('/').pop()!, files: manifest.output, resources: manifest.output.reduce((n, f) => n + f.count, 0) };
    }
    if (res.statusCode !== 202) throw new Error(`export failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The baseline: the same keyset pages (`SELECT id, content FROM resource` by type and id) written
 * to one NDJSON file per type on local disk with plain fs streams: what exporting costs without
 * the job machinery, the snapshot logic and storing the files in the database.
 */
async function rawExport(o: ExportBenchOptions, dir: string): Promise<{ resources: number; bytes: number }> {
  const db = o.app.database.db;
  const limit = o.chunkSize ?? 1000;
  const types = (await sql<{ resource_type: string }>`SELECT DISTINCT resource_type FROM resource ORDER BY resource_type`.execute(db)).rows.map((r) => r.resource_type);
  let resources = 0;
  let bytes = 0;
  for (const type of types) {
    const out = createWriteStream(join(dir, `${type}.ndjson`));
    for (let after = ''; ; ) {
      // same plan guard as the export (keysetPage): index order, no sort of the whole rest
      const rows = await keysetPage(db, sql<{ id: string; json: string }>`
        SELECT id, content::text AS json FROM resource
        WHERE resource_type = ${type} AND id > ${after} AND deleted = false ORDER BY id LIMIT ${limit}`);
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.id;
      const body = `${rows.map((r) => r.json).join('\n')}\n`;
      resources += rows.length;
      bytes += Buffer.byteLength(body);
      if (!out.write(body)) await once(out, 'drain');
      if (rows.length < limit) break;
    }
    out.end();
    await once(out, 'finish');
  }
  return { resources, bytes };
}

/** Stored (gzip) size of an export's files: what the job wrote to its file store. */
async function storedBytes(o: ExportBenchOptions, jobId: string, files: Array<{ url: string }>): Promise<number> {
  let bytes = 0;
  for (const file of files) {
    const fileNo = Number(/(\d+)\.ndjson$/.exec(file.url)![1]);
    for await (const chunk of o.app.bulk.files.chunks(jobId, fileNo)) bytes += chunk.length;
  }
  return bytes;
}

async function downloadAll(o: ExportBenchOptions, files: Array<{ url: string }>): Promise<number> {
  let bytes = 0;
  for (const file of files) {
    const res = await o.app.http.inject({ method: 'GET', url: new URL(file.url).pathname, headers: { authorization: `Bearer ${o.token}` } });
    if (res.statusCode !== 200) throw new Error(`download failed: ${res.statusCode}`);
    bytes += res.rawPayload.length;
  }
  return bytes;
}

/**
 * Bulk Data system export throughput (kick-off → manifest, through the job runner in this
 * process) beside a raw baseline in the same run, with peak RSS / heap sampled during each.
 */
export async function benchExport(o: ExportBenchOptions): Promise<ExportBenchResult> {
  const loadSeconds = await loadSynthea(o);
  const db = o.app.database.db;
  const stored = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM resource WHERE deleted = false`.execute(db)).rows[0]!.n);
  const patients = Number((await sql<{ n: string }>`SELECT count(*) AS n FROM resource WHERE resource_type = 'Patient' AND deleted = false`.execute(db)).rows[0]!.n);
  const dir = mkdtempSync(join(tmpdir(), 'bench-export-'));
  try {
    // Warm-up: plans, JIT, page cache for both paths.
    await fhirExport(o);
    await rawExport(o, dir);
    global.gc?.();
    const m = process.memoryUsage();
    const before = { rssMb: m.rss / MB, heapMb: m.heapUsed / MB };
    const raws: Array<Awaited<ReturnType<typeof sampled<{ resources: number; bytes: number }>>>> = [];
    const fhirs: Array<Awaited<ReturnType<typeof fhirExportSampled>>> = [];
    const fhirExportSampled = () => sampled(() => fhirExport(o));
    for (let i = 0; i < (o.repeats ?? 3); i++) {
      raws.push(await sampled(() => rawExport(o, dir)));
      global.gc?.();
      fhirs.push(await fhirExportSampled());
      global.gc?.();
    }
    const raw = median(raws);
    const fhir = median(fhirs);
    const download = await sampled(() => downloadAll(o, fhir.value.files));
    const storedSize = await storedBytes(o, fhir.value.jobId, fhir.value.files);
    const where = o.app.database.kind === 'postgres' ? 'in PostgreSQL' : 'on disk';
    const fhirFigure = figure(`FHIR $export (job, gzip files ${where}; MB stored)`, fhir.value.resources, storedSize, fhir);
    const rawFigure = figure('raw keyset SELECT → NDJSON files', raw.value.resources, raw.value.bytes, raw);
    return {
      loaded: { patients, resources: stored, loadSeconds },
      before,
      fhir: fhirFigure,
      raw: rawFigure,
      download: figure('download of the export files (HTTP, inflated; MB sent)', fhir.value.resources, download.value, download),
      throughputRatio: fhirFigure.perSecond / rawFigure.perSecond,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printExportBench(title: string, r: ExportBenchResult): void {
  const f1 = (n: number) => n.toFixed(1);
  console.log(`\n${title}: ${r.loaded.resources} resources of ${r.loaded.patients} Synthea patients; RSS ${f1(r.before.rssMb)} MB, heap ${f1(r.before.heapMb)} MB before`);
  console.log(['what', 'resources', 'seconds', 'resources/s', 'MB', 'peak RSS MB', 'peak heap MB'].join(' | '));
  for (const x of [r.fhir, r.raw, r.download]) {
    console.log([x.what, x.resources, x.seconds.toFixed(2), f1(x.perSecond), f1(x.megabytes), f1(x.peakRssMb), f1(x.peakHeapMb)].join(' | '));
  }
  console.log(`throughput ratio FHIR / raw: ${r.throughputRatio.toFixed(2)}`);
}
