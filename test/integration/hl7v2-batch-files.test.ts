import type { Bundle, Observation } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode, ackControlId, MllpClient, mshField, sample } from './hl7v2-helpers.js';

/** A sample's segments ended by \r (the files use \r, \n or \r\n). */
const segmentsOf = (text: string) => text.split(/\r\n|\r|\n/).filter((s) => s.trim() !== '');

/** Messages wrapped as a file (FHS / BHS … BTS / FTS) or a bare batch (BHS … BTS), with `eol` between segments. */
function batchOf(messages: string[], opts: { file?: boolean; eol?: string; batchId?: string; declared?: number } = {}): string {
  const eol = opts.eol ?? '\r';
  const lines = [
    ...(opts.file === false ? [] : ['FHS|^~\\&|LAB FILES|LAB|FHIR|HOSP|20240301120000||||F-1']),
    `BHS|^~\\&|LAB FILES|LAB|FHIR|HOSP|20240301120000||||${opts.batchId ?? 'B-1'}`,
    ...messages.flatMap(segmentsOf),
    `BTS|${opts.declared ?? messages.length}`,
    ...(opts.file === false ? [] : ['FTS|1']),
  ];
  return lines.join(eol) + eol;
}

/** The batch ACK's segments, and its ACK messages split at each MSH. */
function readBatchAck(ack: string): { envelope: string[][]; acks: string[] } {
  const segments = ack.split('\r').filter(Boolean);
  const envelope = segments.filter((s) => ['FHS', 'BHS', 'BTS', 'FTS'].includes(s.slice(0, 3))).map((s) => s.split('|'));
  const acks: string[] = [];
  for (const s of segments) {
    if (s.startsWith('MSH')) acks.push(`${s}\r`);
    else if (!['FHS', 'BHS', 'BTS', 'FTS'].includes(s.slice(0, 3)) && acks.length) acks[acks.length - 1] += `${s}\r`;
  }
  return { envelope, acks };
}

describe('HL7 v2 batches (FHS / BHS … BTS / FTS): every message processed, one batch ACK', () => {
  let app: TestApp;
  let port: number;
  beforeAll(async () => {
    app = await startTestApp();
    port = await app.server.hl7v2.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });

  // Real samples: an ADT^A01 (HAPI v2.4), an ORU^R01 (public health lab v2.5.1), a VXU^V04
  // (Microsoft v2.5.1), a BAR^P01 (not supported: AR), and the ADT^A01 again without its PID
  // and with another MSH-10 (cannot be mapped: AE).
  const adt = sample('hapi-ADT_A01.hl7');
  const withoutPid = segmentsOf(adt)
    .filter((s) => !s.startsWith('PID'))
    .map((s) => (s.startsWith('MSH') ? s.replace('|22139243|', '|22139243-NOPID|') : s))
    .join('\r');
  const messages = [adt, sample('ms-ORU-R01-01.hl7'), sample('ms-VXU-V04-01.hl7'), sample('ms-BAR-P01-01.hl7'), withoutPid];
  const expected = ['AA', 'AA', 'AA', 'AR', 'AE'];
  let firstAck = '';

  test('a file of real sample messages in one MLLP frame gets one batch ACK, each message ACKed in order', async () => {
    const before = (await app.server.hl7v2.messages.list({ count: 1000 })).length;
    const client = await MllpClient.open(port);
    const ack = await client.exchange(batchOf(messages));
    client.close();
    firstAck = ack;
    const { envelope, acks } = readBatchAck(ack);
    expect(envelope.map((s) => s[0])).toEqual(['FHS', 'BHS', 'BTS', 'FTS']);
    // Sender and receiver swapped; FHS-12 / BHS-12 name the sender's file and batch control ids.
    expect(envelope[0].slice(2, 6)).toEqual(['FHIR', 'HOSP', 'LAB FILES', 'LAB']);
    expect(envelope[0][11]).toBe('F-1');
    expect(envelope[1][11]).toBe('B-1');
    expect(envelope[2][1]).toBe(String(messages.length));
    expect(envelope[2][2]).toBe('3 AA, 1 AR, 1 AE');
    expect(acks.map(ackCode)).toEqual(expected);
    expect(acks.map(ackControlId)).toEqual(messages.map((m) => mshField(m, 10).trim()));
    // Each message is stored on its own, with its status.
    const stored = await app.server.hl7v2.messages.list({ count: 1000 });
    expect(stored.length - before).toBe(messages.length);
    expect(stored.filter((r) => r.controlId === '22139243-NOPID').map((r) => r.status)).toEqual(['error']);
    const patients = await app.request({ method: 'GET', url: '/fhir/Patient?family=Duck' });
    expect(((patients.json() as Bundle).entry ?? []).length).toBe(1);
  });

  test('the same file sent again: the same ACKs, nothing written', async () => {
    const before = await app.server.store.countHistory({});
    const client = await MllpClient.open(port);
    const ack = await client.exchange(batchOf(messages));
    client.close();
    expect(readBatchAck(ack).acks).toEqual(readBatchAck(firstAck).acks);
    expect(await app.server.store.countHistory({})).toBe(before);
  });

  test('POST /hl7v2 with a bare batch (BHS … BTS, \\n line ends): the batch ACK without FHS / FTS', async () => {
    const body = batchOf([sample('ms-ADT-A01-01.hl7'), sample('ms-DFT-P03-02.hl7')], { file: false, eol: '\n', batchId: 'HTTP-B' });
    const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: body });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-hl7-batch-messages']).toBe('2');
    const { envelope, acks } = readBatchAck(res.body);
    expect(envelope.map((s) => s[0])).toEqual(['BHS', 'BTS']);
    expect(envelope[0][11]).toBe('HTTP-B');
    expect(acks.map(ackCode)).toEqual(['AA', 'AA']);
  });

  test('messages of a batch are mapped in batch order: a result and its corrections, the last one wins', async () => {
    const oru = (i: number, value: number) =>
      [
        `MSH|^~\\&|BATCH LIS|LAB|FHIR|HOSP|20240301100000+0000||ORU^R01^ORU_R01|ORD-${i}|P|2.5.1`,
        'PID|1||MRN-BATCH-ORDER^^^HOSP^MR||Order^Test||19600101|M',
        'OBR|1|PLC-BO^CPOE|FIL-BO^LIS|24320-4^Basic metabolic panel^LN|||20240301090000+0000||||||||||||||20240301095000+0000|||F',
        `OBX|1|NM|2951-2^Sodium^LN||${value}|mmol/L|135-145|N|||${i ? 'C' : 'F'}`,
      ].join('\r');
    const values = [140, 141, 142, 143, 144, 145];
    const client = await MllpClient.open(port);
    const ack = await client.exchange(batchOf(values.map((v, i) => oru(i, v)), { file: false }));
    client.close();
    expect(readBatchAck(ack).acks.map(ackCode)).toEqual(values.map(() => 'AA'));
    const res = await app.request({ method: 'GET', url: '/fhir/Observation?subject:Patient.identifier=MRN-BATCH-ORDER' });
    const observations = ((res.json() as Bundle).entry ?? []).map((e) => e.resource as Observation);
    expect(observations).toHaveLength(1);
    expect(observations[0].valueQuantity?.value).toBe(145);
    expect(observations[0].meta?.versionId).toBe(String(values.length));
  });

  test('broken batches: stray segments are one rejected message, a wrong BTS-1 is noted, an empty batch is answered; never a 500', async () => {
    const stray = ['BHS|^~\\&|LAB FILES|LAB|FHIR|HOSP|20240301120000||||B-STRAY', 'ZZZ|garbage before any MSH', ...segmentsOf(adt), 'BTS|7'].join('\r');
    const client = await MllpClient.open(port);
    const ack = await client.exchange(stray);
    const { envelope, acks } = readBatchAck(ack);
    expect(acks.map(ackCode)).toEqual(['AR', 'AA']);
    expect(envelope.find((s) => s[0] === 'BTS')?.[2]).toBe('1 AR, 1 AA; BTS-1 said 7, 2 received');
    // The connection still works afterwards.
    const empty = await client.exchange('BHS|^~\\&|LAB FILES|LAB\rBTS|0\r');
    expect(empty.split('\r').filter(Boolean).map((s) => s.slice(0, 4))).toEqual(['BHS|', 'BTS|']);
    client.close();
    for (const payload of ['FHS|', 'BHS|^~\\&\rMSH|', 'FHS|^~\\&\r\r\rFTS|x']) {
      const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'text/plain' }, payload });
      expect(res.statusCode).toBe(200);
      expect(res.body.startsWith('FHS|') || res.body.startsWith('BHS|')).toBe(true);
    }
  });
});
