import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode, ackControlId, ackSegments, MllpClient, mshField, observationsOfPatient, storedWhenDone } from './hl7v2-helpers.js';

/** An ORU^R01 with MSH-15 / MSH-16 as given; `obr4` empty makes it unmappable (AE); `value` is the sodium result. */
function oru(controlId: string, ackTypes: [string, string], opts: { order?: string; value?: number; status?: string; obr4?: string; type?: string } = {}): string {
  const order = opts.order ?? controlId;
  const type = opts.type ?? 'ORU^R01^ORU_R01';
  return [
    `MSH|^~\\&|ENH LIS|ENH LAB|FHIR|HOSP|20240301100000+0000||${type}|${controlId}|P|2.5.1|||${ackTypes[0]}|${ackTypes[1]}`,
    `PID|1||MRN-${order}^^^HOSP^MR||Enhanced^Test||19600101|M`,
    `ORC|RE|PLC-${order}^CPOE|FIL-${order}^LIS`,
    `OBR|1|PLC-${order}^CPOE|FIL-${order}^LIS|${opts.obr4 ?? '24320-4^Basic metabolic panel^LN'}|||20240301090000+0000||||||||1234^Welby^Marcus||||||20240301095000+0000|||${opts.status ?? 'F'}`,
    `OBX|1|NM|2951-2^Sodium^LN||${opts.value ?? 140}|mmol/L|135-145|N|||${opts.status ?? 'F'}`,
  ].join('\r');
}

describe('HL7 v2 enhanced acknowledgement mode over MLLP (MSH-15 / MSH-16, table 0155)', () => {
  let app: TestApp;
  let port: number;
  beforeAll(async () => {
    app = await startTestApp();
    port = await app.server.hl7v2.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });

  test('AL / AL: a commit ACK CA on receipt, then the application ACK AA as a message of its own', async () => {
    const client = await MllpClient.open(port);
    await client.send(oru('ENH-1', ['AL', 'AL']));
    const [commit, application] = await client.waitFor(2);
    client.close();
    expect(ackCode(commit)).toBe('CA');
    expect(ackControlId(commit)).toBe('ENH-1');
    expect(ackSegments(commit).some((s) => s[0] === 'ERR')).toBe(false);
    expect(ackCode(application)).toBe('AA');
    expect(ackControlId(application)).toBe('ENH-1');
    // Two messages: each its own MSH-10; the application ACK asks for no answer (MSH-15/16 NE).
    expect(mshField(application, 10)).not.toBe(mshField(commit, 10));
    expect([mshField(application, 15), mshField(application, 16)]).toEqual(['NE', 'NE']);
    expect(mshField(application, 9)).toBe('ACK^R01^ACK');
    expect(await observationsOfPatient(app, 'MRN-ENH-1')).toHaveLength(1);
  });

  test('AL / NE: only the commit ACK; the message is mapped after it', async () => {
    const client = await MllpClient.open(port);
    const ack = await client.exchange(oru('ENH-2', ['AL', 'NE']));
    expect(ackCode(ack)).toBe('CA');
    expect((await storedWhenDone(app, 'ENH-2')).status).toBe('processed');
    // Nothing else arrives on the connection.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(client.acks).toHaveLength(1);
    client.close();
    expect(await observationsOfPatient(app, 'MRN-ENH-2')).toHaveLength(1);
  });

  test('NE / AL: no commit ACK, the application ACK only', async () => {
    const client = await MllpClient.open(port);
    const ack = await client.exchange(oru('ENH-3', ['NE', 'AL']));
    client.close();
    expect(ackCode(ack)).toBe('AA');
    expect(ackControlId(ack)).toBe('ENH-3');
  });

  test('ER / ER: silent when all goes well; an unmappable message gets only its application ACK AE with ERR', async () => {
    const client = await MllpClient.open(port);
    await client.send(oru('ENH-4', ['ER', 'ER']));
    await client.send(oru('ENH-5', ['ER', 'ER'], { obr4: '' }));
    const [ack] = await client.waitFor(1);
    expect(ackCode(ack)).toBe('AE');
    expect(ackControlId(ack)).toBe('ENH-5');
    expect(ackSegments(ack).find((s) => s[0] === 'ERR')?.[3]).toMatch(/^101\^/);
    expect((await storedWhenDone(app, 'ENH-4')).status).toBe('processed');
    expect((await storedWhenDone(app, 'ENH-5')).status).toBe('error');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(client.acks).toHaveLength(1);
    client.close();
  });

  test('an unsupported type is refused at commit: CR with ERR (no application ACK); SU says nothing of it', async () => {
    const client = await MllpClient.open(port);
    const ack = await client.exchange(oru('ENH-6', ['AL', 'AL'], { type: 'ZZZ^Z01' }));
    expect(ackCode(ack)).toBe('CR');
    expect(ackSegments(ack).find((s) => s[0] === 'ERR')?.[3]).toMatch(/^200\^/);
    await client.send(oru('ENH-7', ['SU', 'SU'], { type: 'ZZZ^Z01' }));
    // The next message's answer comes first and alone: nothing was sent for ENH-7.
    const next = await client.exchange(oru('ENH-8', ['AL', 'NE']));
    expect(ackControlId(next)).toBe('ENH-8');
    expect(client.acks).toHaveLength(2);
    client.close();
    expect((await storedWhenDone(app, 'ENH-6')).status).toBe('rejected');
    expect((await storedWhenDone(app, 'ENH-7')).status).toBe('rejected');
  });

  test("a sender's messages are mapped in the order sent, though it does not wait for their mapping", async () => {
    const client = await MllpClient.open(port);
    // One observation, then four corrections, sent back to back: the last value must win.
    const values = [140, 141, 142, 143, 144];
    for (const [i, value] of values.entries()) await client.send(oru(`ENH-ORD-${i}`, ['AL', 'AL'], { order: 'ORD', value, status: i ? 'C' : 'F' }));
    const acks = await client.waitFor(values.length * 2);
    client.close();
    expect(acks.filter((a) => ackCode(a) === 'CA')).toHaveLength(values.length);
    expect(acks.filter((a) => ackCode(a) === 'AA').map(ackControlId)).toEqual(values.map((_, i) => `ENH-ORD-${i}`));
    const [obs] = await observationsOfPatient(app, 'MRN-ORD');
    expect(obs.valueQuantity?.value).toBe(144);
    expect(obs.status).toBe('corrected');
    expect(obs.meta?.versionId).toBe(String(values.length));
  });

  test('connection closed before the application ACK: the message is still mapped, its ACK stored and sent again on retransmission', async () => {
    const message = oru('ENH-9', ['AL', 'AL']);
    const client = await MllpClient.open(port);
    const commit = await client.exchange(message);
    client.close();
    expect(ackCode(commit)).toBe('CA');
    const stored = await storedWhenDone(app, 'ENH-9');
    expect(stored.status).toBe('processed');
    const admin = await app.request({ method: 'GET', url: `/hl7v2/messages/${stored.id}` });
    const storedAck = (admin.json() as { ack: string }).ack;
    expect(ackCode(storedAck)).toBe('AA');
    const before = await app.server.store.countHistory({});
    const again = await MllpClient.open(port);
    await again.send(message);
    const [commit2, application] = await again.waitFor(2);
    again.close();
    expect(ackCode(commit2)).toBe('CA');
    expect(application).toBe(storedAck);
    expect(await app.server.store.countHistory({})).toBe(before);
  });

  test('over HTTP the response is the application ACK whatever MSH-15/16 say (the 200 is the commit)', async () => {
    const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: oru('ENH-10', ['AL', 'NE']) });
    expect(res.statusCode).toBe(200);
    expect(ackCode(res.body)).toBe('AA');
    expect(await observationsOfPatient(app, 'MRN-ENH-10')).toHaveLength(1);
  });
});
