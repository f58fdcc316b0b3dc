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
  }
  return { code: 'AA', why: '' };
}

describe('the 403 sample messages over MLLP (three vendors\' test sets, v2.1 to v2.8)', () => {
  let app: TestApp;
  let port: number;
  const files = sampleFiles();
  const acks = new Map<string, string>();
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
        for (let i = c; i < files.length; i += clients.length) acks.set(files[i], await client.exchange(sample(files[i])));
      }),
    );
    for (const client of clients) client.close();
    const elapsed = Date.now() - started;
    const mismatches: string[] = [];
    const byType: Record<string, Record<string, number>> = {};
    for (const file of files) {
      const text = sample(file);
      const ack = acks.get(file) ?? '';
      const expected = expectedCode(text);
      const type = mshField(text, 9).split('^').slice(0, 2).join('^');
      const counts = (byType[type] ??= {});
      counts[ackCode(ack)] = (counts[ackCode(ack)] ?? 0) + 1;
      if (ackCode(ack) !== expected.code) mismatches.push(`${file}: got ${ackCode(ack)}, expected ${expected.code} (${expected.why}): ${ack.split('\r')[1]}`);
      if (ackControlId(ack) !== mshField(text, 10).trim()) mismatches.push(`${file}: MSA-2 "${ackControlId(ack)}" ≠ MSH-10 "${mshField(text, 10)}"`);
      if (ackCode(ack) !== 'AA' && !ackSegments(ack).some((s) => s[0] === 'ERR')) mismatches.push(`${file}: ${ackCode(ack)} without ERR`);
    }
    console.log(`HL7 v2 samples: ${files.length} messages in ${elapsed} ms; ACK codes by type: ${JSON.stringify(byType)}`);
    expect(mismatches).toEqual([]);
    expect(files.length).toBe(403);
  });

  test('every message is stored with the status of its ACK; none is left unmapped', async () => {
    const counts = await app.server.hl7v2.messages.countByStatus();
    // A retransmission inside the set (same sender, MSH-10 and content) is one stored message
    // answered twice with the same ACK text: count distinct ACKs.
    const codes = [...new Set(acks.values())].map(ackCode);
    expect(counts.received ?? 0).toBe(0);
    expect(counts.processed ?? 0).toBe(codes.filter((c) => c === 'AA').length);
    expect(counts.error ?? 0).toBe(codes.filter((c) => c === 'AE').length);
    expect(counts.rejected ?? 0).toBe(codes.filter((c) => c === 'AR').length);
  });

  test('sent a second time, every message gets the same ACK and nothing is written', async () => {
    const before = await app.server.store.countHistory({});
    const client = await MllpClient.open(port);
    for (const file of files) expect(await client.exchange(sample(file))).toBe(acks.get(file));
    client.close();
    expect(await app.server.store.countHistory({})).toBe(before);
  });
});
