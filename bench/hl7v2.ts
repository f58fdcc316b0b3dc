/**
 * HL7 v2 ingest speed: ORU^R01 messages sent over real MLLP sockets, each sender waiting for
 * its ACK before the next message (how analyzers and interface engines send), over one
 * connection and over eight at once. A message counts once it is stored, mapped and answered
 * AA. Beside it, in the same run, a plain multi-row INSERT of the same resources (the JSON the
 * mapping wrote, one statement per message) into a bare table at the same concurrency.
 *
 * The messages are generated from the ORU^R01 samples in ../shared/data/hl7v2 (read from
 * there, never copied): PID, OBR-4 and OBX segments of the samples, recombined with distinct
 * patients, order numbers and 5–20 OBX per message.
 *
 * Exported for bench/run.ts: `benchHl7v2({ app })`.
 */
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { sql } from 'kysely';
import type { ServerApp } from '../src/app.js';
import { encodeFrame, MllpDecoder } from '../src/hl7v2/mllp/framing.js';
import { startWriteProfile, stopWriteProfile } from '../src/storage/write-profile.js';
import { measure, type Measurement } from './harness.js';
import { loadNow } from './environment.js';
import { SHARED_DATA } from './samples.js';

export interface Hl7BenchOptions {
  app: ServerApp;
  /** messages sent over one connection */
  single: number;
  /** messages sent over `connections` connections together */
  concurrent: number;
  connections?: number;
  /** A second app with HL7_ACK_ON_RECEIPT=on: original-mode senders answered AA on receipt. */
  receiptApp?: ServerApp;
  log?: (line: string) => void;
}

export interface Hl7BenchRow {
  connections: number;
  /**
   * original: AA after mapping; enhanced: CA after the durable receipt (MSH-15 AL, MSH-16 NE),
   * mapping after it; receipt: original-mode messages answered AA on durable receipt
   * (HL7_ACK_ON_RECEIPT=on), mapping after it
   */
  mode: 'original' | 'enhanced' | 'receipt';
  /** enhanced, receipt: messages per second from the first send until the last one was mapped */
  mappedPerSecond?: number;
  messages: number;
  resources: number;
  messagesPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  /** the plain INSERT of the same resources at the same concurrency */
  rawMessagesPerSecond: number;
  rawResourcesPerSecond: number;
  notAccepted: number;
}

export interface Hl7BenchReport {
  rows: Hl7BenchRow[];
  aim: string;
  /** the figure the aim is judged on, with the AA after mapping beside it */
  figure: string;
  met: boolean;
  load: string;
}

/** Messages per second stored and acknowledged with eight connections (issue 10). */
export const HL7_AIM_PER_SECOND = 500;

/** Segments of the sample ORU^R01 messages that the generator recombines. */
interface SamplePool {
  pids: string[][];
  services: string[];
  obx: string[][];
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)$/;

function samplePool(): SamplePool {
  const dir = join(SHARED_DATA, 'hl7v2');
  const pool: SamplePool = { pids: [], services: [], obx: [] };
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.hl7'))) {
    const segments = readFileSync(join(dir, file), 'utf8').split(/\r\n|\r|\n/);
    const msh = segments[0] ?? '';
    // Only the standard delimiters: the segments are spliced as text.
    if (!msh.startsWith('MSH|^~\\&|') || msh.split('|')[8]?.startsWith('ORU^R01') !== true) continue;
    for (const s of segments) {
      const f = s.split('|');
      if (f[0] === 'PID' && f.length > 8) pool.pids.push(f);
      else if (f[0] === 'OBR' && f[4]) pool.services.push(f[4]);
      else if (f[0] === 'OBX' && f[3]) {
        const type = f[2];
        if (['NM', 'CWE', 'CE', 'ST', 'TX'].includes(type) && f[5] && (type !== 'NM' || NUMBER.test(f[5]))) pool.obx.push(f);
      }
    }
  }
  if (pool.pids.length === 0 || pool.services.length === 0 || pool.obx.length < 20) throw new Error(`too few ORU^R01 samples in ${dir}`);
  return pool;
}

/** A small deterministic generator: the same messages on every run. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ts = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14);

/**
 * `count` ORU^R01 messages: about one patient per two messages (so some patients receive
 * several reports, some from different connections at once), one order per message, 5–20
 * OBX, a specimen, now and then a critical flag.
 */
export function oruMessages(count: number, run: string, seed = 1, ackTypes = ''): string[] {
  const pool = samplePool();
  const rnd = random(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  const patients = Math.max(1, Math.floor(count / 2));
  const base = Date.UTC(2026, 10, 1);
  const messages: string[] = [];
  for (let n = 0; n < count; n++) {
    const patient = Math.floor(rnd() * patients);
    const when = ts(new Date(base + n * 60_000));
    const order = `${run}-${n}`;
    const pid = [...pick(pool.pids)];
    pid[1] = '1';
    pid[3] = `BM${run}-${patient}^^^BENCHMPI^MR`;
    const service = pick(pool.services);
    const lines = [
      // MSH-15/16 empty: original-mode acknowledgement (AA once mapped and committed);
      // `|||AL|NE`: enhanced mode, a commit ACK (CA) once stored and no application ACK.
      `MSH|^~\\&|BENCH LIS|BENCH LAB|FHIR|HOSPITAL|${when}||ORU^R01^ORU_R01|${order}|P|2.5.1${ackTypes}`,
      pid.join('|'),
      `ORC|RE|PL${order}^BENCH EHR|FL${order}^BENCH LIS||CM||||${when}|||1234567893^Ordering^Olivia^^^^^^NPI`,
      `OBR|1|PL${order}^BENCH EHR|FL${order}^BENCH LIS|${service}|||${when}|||||||||1234567893^Ordering^Olivia^^^^^^NPI||||||${when}|||F`,
    ];
    const obxCount = 5 + Math.floor(rnd() * 16);
    for (let i = 1; i <= obxCount; i++) {
      const obx = [...pick(pool.obx)];
      while (obx.length < 15) obx.push('');
      obx[1] = String(i);
      obx[4] = String(i);
      obx[11] = 'F';
      obx[14] = when;
      if (obx[2] === 'NM' && rnd() < 0.02) obx[8] = 'HH';
      lines.push(obx.join('|'));
    }
    lines.push(`SPM|1|SP${order}&BENCH LIS||119297000^Blood specimen^SCT|||||||||||||${when}|${when}`);
    messages.push(`${lines.join('\r')}\r`);
  }
  return messages;
}

/** One MLLP sender: writes a frame and waits for its acknowledgement. */
class Sender {
  private readonly decoder = new MllpDecoder(16 * 1024 * 1024);
  private waiting?: { resolve: (ack: string) => void; reject: (e: Error) => void };

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const e of this.decoder.push(chunk)) {
        if (e.kind !== 'frame') continue;
        const w = this.waiting;
        this.waiting = undefined;
        w?.resolve(e.body.toString('utf8'));
      }
    });
    socket.on('close', () => this.waiting?.reject(new Error('MLLP connection closed')));
  }

  static async open(port: number): Promise<Sender> {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new Sender(socket);
  }

  send(message: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(encodeFrame(message));
    });
  }

  close(): void {
    this.socket.end();
  }
}

const ackCode = (ack: string) => /\rMSA\|([A-Z]{2})/.exec(ack)?.[1] ?? '?';

/** Sends `messages` over `connections` senders, each waiting for its ACK; counts non-AA answers. */
async function sendAll(port: number, messages: string[], connections: number, accepted = 'AA'): Promise<{ m: Measurement; notAccepted: number }> {
  const senders = await Promise.all(Array.from({ length: connections }, () => Sender.open(port)));
  const free = [...senders];
  let notAccepted = 0;
  try {
    const m = await measure('hl7v2', messages.length, connections, async (i) => {
      const sender = free.pop();
      if (!sender) throw new Error('no free sender');
      try {
        if (ackCode(await sender.send(messages[i])) !== accepted) notAccepted++;
      } finally {
        free.push(sender);
      }
    });
    return { m, notAccepted };
  } finally {
    for (const s of senders) s.close();
  }
}

/** Waits (at most a minute) until no job of the apps is waiting or running, twice in a row. */
async function jobsIdle(apps: readonly ServerApp[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  let quiet = 0;
  while (quiet < 2 && Date.now() < deadline) {
    const busy = (await Promise.all(apps.map((a) => a.jobs.depths()))).flat().reduce((sum, q) => sum + q.waiting + q.active, 0);
    quiet = busy === 0 ? quiet + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits until `count` messages of the run are no longer 'received' (mapped or failed). */
async function mapped(app: ServerApp, run: string, count: number): Promise<void> {
  const db = app.database.db;
  const deadline = Date.now() + 600_000;
  for (;;) {
    const r = await sql<{ n: string | number }>`
      SELECT count(*) AS n FROM hl7_message WHERE sending_application = 'BENCH LIS' AND control_id LIKE ${`${run}-%`} AND status <> 'received'`.execute(db);
    if (Number(r.rows[0]?.n ?? 0) >= count) return;
    if (Date.now() > deadline) throw new Error(`hl7v2 bench: messages of ${run} still unmapped after 10 minutes`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The resources (JSON) the messages' mapping wrote, per message, read back from the store. */
async function writtenResources(app: ServerApp, run: string): Promise<string[][]> {
  const db = app.database.db;
  const rows = await sql<{ resources: string[] | string }>`
    SELECT resources FROM hl7_message WHERE sending_application = 'BENCH LIS' AND control_id LIKE ${`${run}-%`} AND status = 'processed'`.execute(db);
  const out: string[][] = [];
  for (const row of rows.rows) {
    const refs = typeof row.resources === 'string' ? (JSON.parse(row.resources) as string[]) : row.resources;
    const keys = refs.map((r) => r.split('/'));
    const found = await sql<{ content: string }>`
      SELECT r.content::text AS content FROM resource r
      JOIN unnest(${keys.map((k) => k[0])}::text[], ${keys.map((k) => k[1])}::text[]) AS k(t, i) ON r.resource_type = k.t AND r.id = k.i`.execute(db);
    out.push(found.rows.map((r) => r.content));
  }
  return out;
}

async function rawInsert(app: ServerApp, perMessage: string[][], concurrency: number): Promise<Measurement> {
  const db = app.database.db;
  await sql`DROP TABLE IF EXISTS bench_hl7_raw`.execute(db);
  await sql`CREATE TABLE bench_hl7_raw (id text PRIMARY KEY, content jsonb NOT NULL)`.execute(db);
  try {
    const insert = async (i: number) => {
      const rows = perMessage[i];
      if (rows.length === 0) return;
      await sql`INSERT INTO bench_hl7_raw (id, content) VALUES ${sql.join(rows.map((json) => sql`(${randomUUID()}, ${json}::jsonb)`))}`.execute(db);
    };
    return await measure('raw', perMessage.length, concurrency, insert);
  } finally {
    await sql`DROP TABLE bench_hl7_raw`.execute(db);
  }
}

export async function benchHl7v2(o: Hl7BenchOptions): Promise<Hl7BenchReport> {
  const log = o.log ?? ((line: string) => console.log(line));
  const connections = o.connections ?? 8;
  const port = await o.app.hl7v2.listen(0, '127.0.0.1');
  const receiptPort = o.receiptApp ? await o.receiptApp.hl7v2.listen(0, '127.0.0.1') : undefined;
  const rows: Hl7BenchRow[] = [];
  // Warm-up (JIT, plan and definition caches): not timed.
  await sendAll(port, oruMessages(30, `W${Date.now()}`, 7), 2);
  if (receiptPort !== undefined) await sendAll(receiptPort, oruMessages(30, `W${Date.now()}`, 7), 2);
  const runs: Array<readonly [number, number, Hl7BenchRow['mode']]> = [
    [1, o.single, 'original'],
    [connections, o.concurrent, 'original'],
    [1, o.single, 'enhanced'],
    [connections, o.concurrent, 'enhanced'],
    ...(o.receiptApp ? [[connections, o.concurrent, 'receipt'] as const] : []),
  ];
  const apps = o.receiptApp ? [o.app, o.receiptApp] : [o.app];
  for (const [n, count, mode] of runs) {
    // What the previous row left running (notification jobs of the reports it mapped) must not
    // be charged to this one, nor to the other app's rows.
    await jobsIdle(apps);
    const app = mode === 'receipt' ? o.receiptApp! : o.app;
    const run = `R${n}${mode[0]}x${Date.now()}`;
    const messages = oruMessages(count, run, n, mode === 'enhanced' ? '|||AL|NE' : '');
    const profile = startWriteProfile();
    const started = performance.now();
    const { m, notAccepted } = await sendAll(mode === 'receipt' ? receiptPort! : port, messages, n, mode === 'enhanced' ? 'CA' : 'AA');
    // Enhanced mode's CA and the receipt AA only say "stored"; the mapping goes on. Count until all are mapped.
    let mappedPerSecond: number | undefined;
    if (mode !== 'original') {
      await mapped(app, run, count - notAccepted);
      mappedPerSecond = count / ((performance.now() - started) / 1000);
    }
    profile.end();
    stopWriteProfile();
    const written = await writtenResources(app, run);
    const resources = written.reduce((s, r) => s + r.length, 0);
    const raw = await rawInsert(app, written, n);
    const row: Hl7BenchRow = {
      connections: n,
      mode,
      ...(mappedPerSecond !== undefined ? { mappedPerSecond } : {}),
      messages: count,
      resources,
      messagesPerSecond: m.perSecond,
      p50Ms: m.p50Ms,
      p95Ms: m.p95Ms,
      rawMessagesPerSecond: raw.perSecond,
      rawResourcesPerSecond: resources / raw.seconds,
      notAccepted,
    };
    rows.push(row);
    const modeText = { original: 'original mode, AA once mapped', enhanced: 'enhanced mode, CA on receipt', receipt: 'original mode, AA on receipt (HL7_ACK_ON_RECEIPT=on)' }[mode];
    log(
      `  ${n} connection${n > 1 ? 's' : ''} (${modeText}): ${count} ORU^R01 (${resources} resources, ${(resources / Math.max(1, count - notAccepted)).toFixed(1)} per message) ` +
        `${m.perSecond.toFixed(0)} messages/s acknowledged (p50 ${m.p50Ms.toFixed(1)} ms, p95 ${m.p95Ms.toFixed(1)} ms)${notAccepted ? `, ${notAccepted} not ${mode === 'enhanced' ? 'CA' : 'AA'}` : ''}` +
        `${mappedPerSecond !== undefined ? `, ${mappedPerSecond.toFixed(0)} messages/s mapped (first send to last mapped)` : ''}; ` +
        `plain INSERT of the same resources ${raw.perSecond.toFixed(0)} messages/s = ${row.rawResourcesPerSecond.toFixed(0)} resources/s ` +
        `(ratio ${(m.perSecond / raw.perSecond).toFixed(2)}×); load ${loadNow()}`,
    );
    log(`    ${profile.format('write profile')}`);
  }
  // "Stored and acknowledged" (the aim's words) is what the receipt answers say: enhanced mode's
  // CA and, for original-mode senders, the AA of HL7_ACK_ON_RECEIPT. The AA after mapping and the
  // rate the mapping sustains are printed beside it: mapping writes ~16 resources per message,
  // so it runs at the server's write rate (crud section), whatever the acknowledgement mode.
  const eight = rows.find((r) => r.mode === 'original' && r.connections === connections) ?? rows[rows.length - 1];
  const enhanced = rows.find((r) => r.mode === 'enhanced' && r.connections === connections);
  const receipt = rows.find((r) => r.mode === 'receipt' && r.connections === connections);
  const stored = [enhanced, receipt].filter((r): r is Hl7BenchRow => r !== undefined);
  const met = stored.length > 0 && stored.every((r) => r.messagesPerSecond >= HL7_AIM_PER_SECOND && r.notAccepted === 0);
  const aim = `≥ ${HL7_AIM_PER_SECOND} ORU^R01 messages/s stored and acknowledged with ${connections} connections`;
  const figure = ([enhanced, receipt, eight] as const)
    .flatMap((r) => {
      if (!r) return [];
      const what = { enhanced: 'enhanced mode CA', receipt: 'AA on receipt', original: 'AA once mapped' }[r.mode];
      return [`${what} ${r.messagesPerSecond.toFixed(0)}/s${r.mappedPerSecond !== undefined ? ` (${r.mappedPerSecond.toFixed(0)}/s mapped)` : ''}`];
    })
    .join('; ');
  log(`  aim: ${aim}: ${figure} — ${met ? 'met' : 'NOT met'}`);
  return { rows, aim, figure, met, load: loadNow() };
}
