import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode, ackControlId, MllpClient, observationsOfPatient, storedWhenDone } from './hl7v2-helpers.js';

/**
 * Messages acknowledged on receipt past the parsed backlog (HL7_MAPPING_BACKLOG) wait unparsed
 * in the database and are mapped later, in the order received. The mapping is paused through
 * the admin operation while messages arrive, so which messages spill does not depend on timing.
 */

/** An ORU^R01 for order `order` of patient MRN-SP-<order>; MSH-15/16 as given (empty: original mode). */
function oru(controlId: string, order: string, value: number, opts: { ackTypes?: [string, string]; type?: string } = {}): string {
  const [accept, application] = opts.ackTypes ?? ['', ''];
  return [
    `MSH|^~\\&|SPILL LIS|SPILL LAB|FHIR|HOSP|20240301100000+0000||${opts.type ?? 'ORU^R01^ORU_R01'}|${controlId}|P|2.5.1|||${accept}|${application}`,
    `PID|1||MRN-SP-${order}^^^HOSP^MR||Spill^Test||19600101|M`,
    `ORC|RE|PLC-SP-${order}^CPOE|FIL-SP-${order}^LIS`,
    `OBR|1|PLC-SP-${order}^CPOE|FIL-SP-${order}^LIS|24320-4^Basic metabolic panel^LN|||20240301090000+0000||||||||1234^Welby^Marcus||||||20240301095000+0000|||${value > 140 ? 'C' : 'F'}`,
    `OBX|1|NM|2951-2^Sodium^LN||${value}|mmol/L|135-145|N|||${value > 140 ? 'C' : 'F'}`,
  ].join('\r');
}

interface QueueState {
  mappingPaused: boolean;
  parsed: number;
  spilled: number;
  spilledSinceStart: number;
  waitingReceipts: number;
}

async function queue(app: TestApp): Promise<QueueState> {
  const res = await app.request({ method: 'GET', url: '/hl7v2/queue' });
  expect(res.statusCode).toBe(200);
  return res.json() as QueueState;
}

async function setMapping(app: TestApp, on: boolean): Promise<void> {
  const res = await app.request({ method: 'POST', url: on ? '/hl7v2/$resume-mapping' : '/hl7v2/$pause-mapping' });
  expect(res.statusCode).toBe(200);
  expect((res.json() as QueueState).mappingPaused).toBe(!on);
}

/** The sodium value the patient's one Observation ends with. */
async function sodium(app: TestApp, order: string): Promise<number | undefined> {
  const observations = await observationsOfPatient(app, `MRN-SP-${order}`);
  expect(observations).toHaveLength(1);
  return observations[0]!.valueQuantity?.value;
}

describe('HL7 v2 messages acknowledged past the parsed backlog (HL7_MAPPING_BACKLOG=2)', () => {
  let app: TestApp;
  let port: number;
  beforeAll(async () => {
    app = await startTestApp({ HL7_MAPPING_BACKLOG: '2', HL7_MAX_QUEUED: '40' });
    port = await app.server.hl7v2.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });

  test('enhanced mode: every message is committed (CA) at once, then mapped in the order each sender sent it', async () => {
    await setMapping(app, false);
    const before = (await queue(app)).spilledSinceStart;
    const [a, b] = [await MllpClient.open(port), await MllpClient.open(port)];
    // Two senders, each correcting its own result again and again without waiting: the last value must win.
    for (let i = 0; i < 12; i++) {
      await a.send(oru(`SP-A-${i}`, 'A', 140 + i, { ackTypes: ['AL', 'AL'] }));
      await b.send(oru(`SP-B-${i}`, 'B', 140 + i, { ackTypes: ['AL', 'AL'] }));
    }
    const commits = [...(await a.waitFor(12)), ...(await b.waitFor(12))];
    expect(commits.map(ackCode)).toEqual(Array(24).fill('CA'));
    expect(a.acks.slice(0, 12).map(ackControlId)).toEqual(Array.from({ length: 12 }, (_, i) => `SP-A-${i}`));
    const paused = await queue(app);
    // Two parsed (the backlog), the 22 others waiting unparsed; nothing mapped yet.
    expect(paused.parsed).toBe(2);
    expect(paused.spilled).toBe(22);
    expect(paused.spilledSinceStart - before).toBe(22);
    expect((await app.server.hl7v2.messages.countByStatus()).received).toBeGreaterThanOrEqual(24);

    await setMapping(app, true);
    const applications = [...(await a.waitFor(24)).slice(12), ...(await b.waitFor(24)).slice(12)];
    a.close();
    b.close();
    expect(applications.map(ackCode)).toEqual(Array(24).fill('AA'));
    expect(applications.slice(0, 12).map(ackControlId)).toEqual(Array.from({ length: 12 }, (_, i) => `SP-A-${i}`));
    for (const order of ['A', 'B']) {
      expect(await sodium(app, order)).toBe(151);
      expect((await storedWhenDone(app, `SP-${order}-11`)).status).toBe('processed');
    }
    expect(await queue(app)).toMatchObject({ parsed: 0, spilled: 0 });
  });

  test('a retransmission of a waiting message is answered again and mapped once', async () => {
    await setMapping(app, false);
    const client = await MllpClient.open(port);
    for (let i = 0; i < 5; i++) await client.send(oru(`SP-R-${i}`, `R${i}`, 140, { ackTypes: ['AL', 'AL'] }));
    await client.waitFor(5);
    // SP-R-4 is past the backlog: sent again, it is committed again and answered once mapped.
    await client.send(oru('SP-R-4', 'R4', 140, { ackTypes: ['AL', 'AL'] }));
    await client.waitFor(6);
    expect(ackCode(client.acks[5]!)).toBe('CA');
    await setMapping(app, true);
    const applications = (await client.waitFor(12)).slice(6);
    client.close();
    expect(applications.map(ackCode)).toEqual(Array(6).fill('AA'));
    expect(applications.filter((ack) => ackControlId(ack) === 'SP-R-4')).toHaveLength(2);
    const stored = (await app.server.hl7v2.messages.list({ count: 1000 })).filter((r) => r.controlId === 'SP-R-4');
    expect(stored).toHaveLength(1);
    expect(stored[0]!.attempts).toBe(1);
    expect(await observationsOfPatient(app, 'MRN-SP-R4')).toHaveLength(1);
  });

  test('an unsupported type past the backlog is still refused at commit (CR), by its header', async () => {
    await setMapping(app, false);
    const client = await MllpClient.open(port);
    for (let i = 0; i < 3; i++) await client.send(oru(`SP-T-${i}`, `T${i}`, 140, { ackTypes: ['AL', 'NE'] }));
    await client.waitFor(3);
    expect((await queue(app)).spilled).toBeGreaterThan(0);
    const refused = await client.exchange(oru('SP-T-Z', 'TZ', 140, { ackTypes: ['AL', 'AL'], type: 'ZZZ^Z01' }));
    expect(ackCode(refused)).toBe('CR');
    expect((await storedWhenDone(app, 'SP-T-Z')).status).toBe('rejected');
    await setMapping(app, true);
    expect((await storedWhenDone(app, 'SP-T-2')).status).toBe('processed');
    // AL / NE: the three commits and the refusal, no application ACKs.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(client.acks).toHaveLength(4);
    client.close();
  });

  test('HL7_MAX_QUEUED: past it, receipts wait for the mapping and nothing is lost', async () => {
    await setMapping(app, false);
    const client = await MllpClient.open(port);
    for (let i = 0; i < 45; i++) await client.send(oru(`SP-Q-${i}`, `Q${i}`, 140, { ackTypes: ['AL', 'NE'] }));
    await client.waitFor(40);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // 40 acknowledged and not mapped: the 41st receipt waits.
    expect(client.acks).toHaveLength(40);
    expect((await queue(app)).waitingReceipts).toBe(1);
    await setMapping(app, true);
    const all = await client.waitFor(45);
    client.close();
    expect(all.map(ackCode)).toEqual(Array(45).fill('CA'));
    expect((await storedWhenDone(app, 'SP-Q-44')).status).toBe('processed');
  });
});

describe('HL7_ACK_ON_RECEIPT=on past the parsed backlog', () => {
  let app: TestApp;
  let port: number;
  beforeAll(async () => {
    app = await startTestApp({ HL7_ACK_ON_RECEIPT: 'on', HL7_MAPPING_BACKLOG: '1' });
    port = await app.server.hl7v2.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });

  test('AA on receipt for every message, mapped in order once the mapping resumes', async () => {
    await setMapping(app, false);
    const client = await MllpClient.open(port);
    for (let i = 0; i < 8; i++) {
      const ack = await client.exchange(oru(`SP-O-${i}`, 'O', 140 + i));
      expect(ackCode(ack)).toBe('AA');
    }
    client.close();
    expect((await queue(app)).spilled).toBe(7);
    await setMapping(app, true);
    expect((await storedWhenDone(app, 'SP-O-7')).status).toBe('processed');
    expect(await sodium(app, 'O')).toBe(147);
  });

  test('shutdown leaves the waiting messages stored, unmapped, for the next start, and does not wait for them', async () => {
    await setMapping(app, false);
    const client = await MllpClient.open(port);
    for (let i = 0; i < 6; i++) expect(ackCode(await client.exchange(oru(`SP-S-${i}`, `S${i}`, 140)))).toBe('AA');
    expect((await queue(app)).spilled).toBe(5);
    const started = Date.now();
    await app.server.hl7v2.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    client.close();
    // The parsed one was mapped before the channel closed; the five others wait for the next start.
    expect((await storedWhenDone(app, 'SP-S-0')).status).toBe('processed');
    const left = (await app.server.hl7v2.messages.list({ status: 'received', count: 100 })).map((r) => r.controlId).sort();
    expect(left).toEqual(['SP-S-1', 'SP-S-2', 'SP-S-3', 'SP-S-4', 'SP-S-5']);
  });
});
