import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode, ackControlId, ackSegments, MllpClient, mshField, sample, sampleFiles } from './hl7v2-helpers.js';

/** Message types mapped this round (conformance/hl7v2/message-types.json); every other type is AR. */
const SUPPORTED = new Set(['ORU^R01', 'ORM^O01', 'OML^O21', 'VXU^V04', 'RDE^O11', 'SIU^S12', 'SIU^S13', 'SIU^S14', 'SIU^S15', 'MDM^T02', 'DFT^P03', 'ADT^A01', 'ADT^A02', 'ADT^A03', 'ADT^A04', 'ADT^A05', 'ADT^A08', 'ADT^A11', 'ADT^A13', 'ADT^A28', 'ADT^A31', 'ADT^A40']);
/** ADT events that act on a visit and so need PV1; those that do not start one also need PV1-19. */
const VISIT_EVENTS = new Set(['A01', 'A02', 'A03', 'A04', 'A05', 'A08', 'A11', 'A13']);
const STARTS_VISIT = new Set(['A01', 'A04']);
const UPDATE_ONLY = new Set(['A08']);

/**
 * The acknowledgement each sample must get, decided from the raw text with plain splits (not
 * the server's parser), after HL7 v2.5.1 §2.9 (original mode): AR when the message cannot be
 * parsed (MSH-2 without distinct separators) or its type is not supported, AE when a segment
 * or field that the mapping needs is missing, else AA.
 */
function expectedCode(text: string): { code: string; why: string } {
  const sep = mshField(text, 1);
  const enc = text.slice(4, text.indexOf(sep, 4));
  const chars = [sep, ...enc.slice(0, 4)];
  if (new Set(chars).size !== chars.length) return { code: 'AR', why: 'MSH-2 separators not distinct' };
  const type = mshField(text, 9).split('^');
  const key = `${type[0]}^${type[1] ?? ''}`;
  if (!SUPPORTED.has(key)) return { code: 'AR', why: 'unsupported type' };
  const event = type[1];
  const segments = text.split('\r').filter(Boolean).map((s) => s.split(sep));
  const seg = (name: string) => segments.filter((s) => s[0] === name);
  const pid = seg('PID')[0];
  if (!pid) return { code: 'AE', why: 'no PID' };
  if (![pid[3], pid[2], pid[4]].some((f) => (f ?? '').split('^')[0].trim() !== '')) return { code: 'AE', why: 'PID-3 empty' };
  if (key === 'ORU^R01') {
    if (seg('OBR').length === 0) return { code: 'AE', why: 'no OBR' };
    if (seg('OBX').some((o) => (o[3] ?? '').split('^')[0] === '' && (o[3] ?? '').split('^')[1] === undefined && o[2] !== 'ED')) return { code: 'AE', why: 'OBX-3 empty' };
  }
  if ((key === 'ORM^O01' || key === 'OML^O21') && seg('ORC').length === 0 && seg('OBR').length === 0) return { code: 'AE', why: 'no ORC/OBR' };
  if (key === 'ADT^A40' && seg('MRG').length === 0) return { code: 'AE', why: 'no MRG' };
  if (key === 'VXU^V04' && seg('RXA').some((r) => (r[5] ?? '').replace(/\^/g, '') === '' || !/^\d{4}/.test(r[3] ?? ''))) return { code: 'AE', why: 'RXA-3/5 empty' };
  if (key === 'MDM^T02') {
    if (seg('TXA').length === 0) return { code: 'AE', why: 'no TXA' };
    if (!seg('OBX').some((o) => ['TX', 'FT', 'ST'].includes(o[2]) || (o[2] === 'ED' && (o[5] ?? '').split('^')[2]))) return { code: 'AE', why: 'no document content' };
  }
  if (key === 'DFT^P03' && (seg('FT1').length === 0 || seg('FT1').some((f) => (f[7] ?? '').replace(/\^/g, '') === ''))) return { code: 'AE', why: 'no FT1 / FT1-7' };
  if (type[0] === 'SIU') {
    const sch = seg('SCH')[0];
    if (!sch) return { code: 'AE', why: 'no SCH' };
    const timing = (sch[11] ?? '').split('^');
    const ais = seg('AIS')[0];
    const timed = (/^\d{10}/.test(timing[3] ?? '') && /^\d{10}/.test(timing[4] ?? '')) || (ais && /^\d{10}/.test(ais[4] ?? '') && Number(ais[7]) > 0);
    const cancelled = event === 'S15' || /^(cancelled|deleted|dc)$/i.test(sch[25] ?? '');
    if (!timed && !cancelled) return { code: 'AE', why: 'no start/end' };
  }
  if (key === 'RDE^O11') {
    if (seg('ORC').length === 0 || seg('RXE').length === 0) return { code: 'AE', why: 'no ORC/RXE' };
    if (seg('RXE').some((r) => (r[2] ?? '').replace(/\^/g, '') === '')) return { code: 'AE', why: 'RXE-2 empty' };
  }
  if (type[0] === 'ADT' && VISIT_EVENTS.has(event)) {
    const pv1 = seg('PV1')[0];
    if (!pv1) return { code: 'AE', why: 'no PV1' };
    const visit = (pv1[19] ?? '').split('^')[0].trim();
    if (!visit && !STARTS_VISIT.has(event) && !UPDATE_ONLY.has(event)) return { code: 'AE', why: 'no PV1-19' };
    // A discharge (PV1-45) before the admission (PV1-44) makes an Encounter.period R4 refuses (per-1).
    const [admit, discharge] = [(pv1[44] ?? '').split('^')[0].slice(0, 12), (pv1[45] ?? '').split('^')[0].slice(0, 12)];
    if (/^\d{12}$/.test(admit) && /^\d{12}$/.test(discharge) && discharge < admit) return { code: 'AE', why: 'PV1-45 before PV1-44 (per-1)' };
  }
  return { code: 'AA', why: '' };
}

/**
 * The frames MLLP answers a sample with: original mode (MSH-15 and MSH-16 empty) its ACK;
 * enhanced mode (v2.5.1 §2.9.3, table 0155) a commit ACK CA / CR when MSH-15 asks for it,
 * then, for a message not refused, the application ACK when MSH-16 asks for it. An empty one
 * of the two counts as AL.
 */
function expectedFrames(text: string, code: string): string[] {
  const accept = mshField(text, 15).split('^')[0].trim().toUpperCase();
  const application = mshField(text, 16).split('^')[0].trim().toUpperCase();
  if (!accept && !application) return [code];
  const wanted = (condition: string, c: string) => condition !== 'NE' && (condition !== 'ER' || !['AA', 'CA'].includes(c)) && (condition !== 'SU' || ['AA', 'CA'].includes(c));
  if (code === 'AR') return wanted(accept, 'CR') ? ['CR'] : [];
  return [...(wanted(accept, 'CA') ? ['CA'] : []), ...(wanted(application, code) ? [code] : [])];
}

/** Sends a message and collects the frames it is answered with (their number is known in advance). */
async function exchangeAll(client: MllpClient, message: string, frames: number): Promise<string[]> {
  const before = client.acks.length;
  await client.send(message);
  return (await client.waitFor(before + frames)).slice(before);
}

/** Waits until no stored message is left 'received' (enhanced mode maps after the commit ACK). */
async function settled(app: TestApp): Promise<Record<string, number>> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const counts = await app.server.hl7v2.messages.countByStatus();
    if (!counts.received || Date.now() > deadline) return counts;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('the 403 sample messages over MLLP (three vendors\' test sets, v2.1 to v2.8)', () => {
  let app: TestApp;
  let port: number;
  const files = sampleFiles();
  /** file → the frames it was answered with (original mode: its ACK; enhanced mode: commit and / or application ACK). */
  const acks = new Map<string, string[]>();
  beforeAll(async () => {
    app = await startTestApp();
    port = await app.server.hl7v2.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });

  test('every message gets the right ACK code with MSA-2 = its MSH-10 (four connections)', async () => {
    const started = Date.now();
    const clients = await Promise.all(Array.from({ length: 4 }, () => MllpClient.open(port)));
    await Promise.all(
      clients.map(async (client, c) => {
        for (let i = c; i < files.length; i += clients.length) {
          const text = sample(files[i]);
          acks.set(files[i], await exchangeAll(client, text, expectedFrames(text, expectedCode(text).code).length));
        }
      }),
    );
    for (const client of clients) client.close();
    const elapsed = Date.now() - started;
    const mismatches: string[] = [];
    const byType: Record<string, Record<string, number>> = {};
    let enhanced = 0;
    for (const file of files) {
      const text = sample(file);
      const frames = acks.get(file) ?? [];
      const expected = expectedCode(text);
      const want = expectedFrames(text, expected.code);
      if (mshField(text, 15) || mshField(text, 16)) enhanced++;
      const type = mshField(text, 9).split('^').slice(0, 2).join('^');
      const counts = (byType[type] ??= {});
      const got = frames.map(ackCode);
      for (const c of got) counts[c] = (counts[c] ?? 0) + 1;
      if (got.join(',') !== want.join(',')) mismatches.push(`${file}: got [${got}], expected [${want}] (${expected.code} ${expected.why}): ${frames.map((f) => f.split('\r')[1]).join(' / ')}`);
      for (const ack of frames) {
        if (ackControlId(ack) !== mshField(text, 10).trim()) mismatches.push(`${file}: MSA-2 "${ackControlId(ack)}" ≠ MSH-10 "${mshField(text, 10)}"`);
        if (!['AA', 'CA'].includes(ackCode(ack)) && !ackSegments(ack).some((s) => s[0] === 'ERR')) mismatches.push(`${file}: ${ackCode(ack)} without ERR`);
        // An application ACK in enhanced mode asks for no answer itself (MSH-15 / MSH-16 NE).
        if (want.length && ['AA', 'AE'].includes(ackCode(ack)) && (mshField(text, 15) || mshField(text, 16))) {
          if (mshField(ack, 15) !== 'NE' || mshField(ack, 16) !== 'NE') mismatches.push(`${file}: application ACK without MSH-15/16 NE`);
        }
      }
    }
    expect(enhanced).toBeGreaterThan(50);
    console.log(`HL7 v2 samples: ${files.length} messages in ${elapsed} ms; ACK codes by type: ${JSON.stringify(byType)}`);
    expect(mismatches).toEqual([]);
    expect(files.length).toBe(403);
  });

  test('every message is stored with the status of its expected ACK; none is left unmapped', async () => {
    const counts = await settled(app);
    expect(counts.received ?? 0).toBe(0);
    // A retransmission inside the set (same sender, MSH-10 and content) is one stored message.
    const stored = await app.server.hl7v2.messages.list({ count: 1000 });
    const status: Record<string, string> = { AA: 'processed', AE: 'error', AR: 'rejected' };
    const wrong = stored.filter((r) => r.status !== status[expectedCode(r.raw).code]).map((r) => `${r.controlId}: ${r.status}, expected ${expectedCode(r.raw).code}`);
    expect(wrong).toEqual([]);
    expect(stored.length).toBe(Object.values(counts).reduce((a, b) => a + b, 0));
  });

  test('sent a second time, every message gets the same ACK and nothing is written', async () => {
    const before = await app.server.store.countHistory({});
    const client = await MllpClient.open(port);
    for (const file of files) {
      const first = acks.get(file) ?? [];
      const again = await exchangeAll(client, sample(file), first.length);
      // A commit ACK is made afresh (it says "stored" again); every other ACK is the stored one.
      expect(again.map(ackCode)).toEqual(first.map(ackCode));
      expect(again.filter((a) => ackCode(a) !== 'CA')).toEqual(first.filter((a) => ackCode(a) !== 'CA'));
    }
    client.close();
    expect(await app.server.store.countHistory({})).toBe(before);
  });
});
