import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CR, encodeFrame, FS, VT } from '../../src/hl7v2/mllp/framing.js';
import { startTestApp, TEST_CLIENT, type TestApp } from '../support/test-app.js';
import { ackCode, ackControlId, ackSegments, MllpClient, mshField, sample } from './hl7v2-helpers.js';

/** A small valid ADT^A04 with a control id of our choosing. */
function adt(controlId: string, mrn = `MRN-${controlId}`): string {
  return [
    `MSH|^~\\&|TESTAPP|TESTFAC|FHIR|HOSP|20240105103000+0100||ADT^A04^ADT_A01|${controlId}|P|2.5.1`,
    'EVN|A04|20240105103000+0100',
    `PID|1||${mrn}^^^TESTFAC^MR||Doe^Jane^Q||19800101|F|||1 Main St^^Springfield^IL^62701^USA^H`,
    `PV1|1|O|CLINIC^101^A^TESTFAC||||||||||||||||V-${controlId}^^^TESTFAC^VN|||||||||||||||||||||||||20240105103000+0100`,
  ].join('\r') + '\r';
}

describe('HL7 v2 over MLLP (HL7 v2 MLLP Release 2 framing: <VT> message <FS><CR>)', () => {
  let app: TestApp;
  let port: number;
  beforeAll(async () => {
    app = await startTestApp({ HL7_MAX_MESSAGE_BYTES: '65536', HL7_IDLE_TIMEOUT_SECONDS: '2' });
    port = await app.server.hl7v2.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });

  test('a message is acknowledged AA with MSA-2 = MSH-10; the ACK swaps sender and receiver and keeps the version', async () => {
    const client = await MllpClient.open(port);
    const ack = await client.exchange(adt('CTRL-1'));
    client.close();
    const [msh, msa] = ackSegments(ack);
    expect(msa.slice(0, 3)).toEqual(['MSA', 'AA', 'CTRL-1']);
    expect(msh[2]).toBe('FHIR');
    expect(msh[3]).toBe('HOSP');
    expect(msh[4]).toBe('TESTAPP');
    expect(msh[5]).toBe('TESTFAC');
    expect(msh[8]).toBe('ACK^A04^ACK');
    expect(msh[11]).toBe('2.5.1');
    const found = await app.request({ method: 'GET', url: '/fhir/Patient?identifier=MRN-CTRL-1' });
    expect(found.json().total ?? found.json().entry?.length).toBe(1);
  });

  test('many messages on one connection are answered in order', async () => {
    const client = await MllpClient.open(port);
    for (let i = 0; i < 20; i++) await client.send(adt(`SEQ-${i}`));
    const acks = await client.waitFor(20);
    client.close();
    expect(acks.map(ackControlId)).toEqual(Array.from({ length: 20 }, (_, i) => `SEQ-${i}`));
    expect(acks.every((a) => ackCode(a) === 'AA')).toBe(true);
  });

  test('a frame split across many TCP packets, and several frames in one packet', async () => {
    const client = await MllpClient.open(port);
    const frame = Buffer.concat([Buffer.from([VT]), Buffer.from(adt('SPLIT-1')), Buffer.from([FS, CR])]);
    // Split everywhere, including between <FS> and <CR>.
    const cuts = [1, 7, 50, frame.length - 1];
    let at = 0;
    for (const cut of cuts) {
      await client.write(frame.subarray(at, cut));
      await new Promise((r) => setTimeout(r, 30));
      at = cut;
    }
    await client.write(frame.subarray(at));
    expect(ackControlId((await client.waitFor(1))[0])).toBe('SPLIT-1');
    const merged = Buffer.concat(['MERGED-1', 'MERGED-2', 'MERGED-3'].map((id) => Buffer.concat([Buffer.from([VT]), Buffer.from(adt(id)), Buffer.from([FS, CR])])));
    await client.write(merged);
    const acks = await client.waitFor(4);
    client.close();
    expect(acks.slice(1).map(ackControlId)).toEqual(['MERGED-1', 'MERGED-2', 'MERGED-3']);
  });

  test('a frame cut off mid-message (a new <VT> starts) is dropped; the next whole frame is answered', async () => {
    const client = await MllpClient.open(port);
    const whole = adt('CUT-2');
    await client.write(Buffer.concat([Buffer.from([VT]), Buffer.from(adt('CUT-1').slice(0, 60))]));
    await client.write(Buffer.concat([Buffer.from([VT]), Buffer.from(whole), Buffer.from([FS, CR])]));
    const acks = await client.waitFor(1);
    await new Promise((r) => setTimeout(r, 200));
    client.close();
    expect(client.acks).toHaveLength(1);
    expect(ackControlId(acks[0])).toBe('CUT-2');
    const list = await app.request({ method: 'GET', url: '/hl7v2/messages?_count=1000' });
    const ids = (list.json() as { messages: Array<{ controlId: string }> }).messages.map((m) => m.controlId);
    expect(ids).toContain('CUT-2');
    expect(ids).not.toContain('CUT-1');
  });

  test('garbage outside frames is ignored; a frame of garbage is rejected AR and stored as rejected', async () => {
    const client = await MllpClient.open(port);
    await client.write(Buffer.from('GET / HTTP/1.1\r\n\r\nnoise'));
    const ack1 = await client.exchange('this is not HL7 at all');
    const ack2 = await client.exchange(adt('AFTER-GARBAGE'));
    client.close();
    expect(ackCode(ack1)).toBe('AR');
    expect(ackSegments(ack1).find((s) => s[0] === 'ERR')).toBeDefined();
    expect(ackCode(ack2)).toBe('AA');
    const rejected = await app.request({ method: 'GET', url: '/hl7v2/messages?status=rejected' });
    expect((rejected.json() as { messages: Array<{ controlId: string }> }).messages.some((m) => m.controlId === '')).toBe(true);
  });

  test('an oversized frame gets a negative ACK naming the message, then the connection is closed', async () => {
    const client = await MllpClient.open(port);
    const big = adt('BIG-1') + `NTE|1||${'x'.repeat(70_000)}\r`;
    await client.send(big);
    expect(await client.waitClosed()).toBe(true);
    expect(client.acks).toHaveLength(1);
    expect(ackCode(client.acks[0])).toBe('AR');
    expect(ackControlId(client.acks[0])).toBe('BIG-1');
    const rejected = (await app.request({ method: 'GET', url: '/hl7v2/messages?status=rejected' })).json() as { messages: Array<{ controlId: string; error: string }> };
    expect(rejected.messages.find((m) => m.controlId === 'BIG-1')?.error).toContain('exceeds the 65536 byte limit');
    // The listener is still fine for everyone else.
    const other = await MllpClient.open(port);
    expect(ackCode(await other.exchange(adt('AFTER-BIG')))).toBe('AA');
    other.close();
  });

  test('an idle connection is closed after HL7_IDLE_TIMEOUT_SECONDS, an unfinished frame with it', async () => {
    const client = await MllpClient.open(port);
    await client.write(Buffer.concat([Buffer.from([VT]), Buffer.from('MSH|^~\\&|HALF')]));
    expect(await client.waitClosed(6000)).toBe(true);
    expect(client.acks).toHaveLength(0);
  });

  test('many connections at once', async () => {
    const clients = await Promise.all(Array.from({ length: 12 }, () => MllpClient.open(port)));
    const acks = await Promise.all(clients.map((c, i) => c.exchange(adt(`CONC-${i}`, 'MRN-SHARED'))));
    for (const c of clients) c.close();
    expect(acks.map(ackCode)).toEqual(Array(12).fill('AA'));
    // Twelve messages about one patient, concurrently: still one Patient.
    const found = await app.request({ method: 'GET', url: '/fhir/Patient?identifier=MRN-SHARED&_summary=count' });
    expect(found.json().total).toBe(1);
  });

  test('POST /hl7v2 over HL7_MAX_MESSAGE_BYTES is a 413 OperationOutcome', async () => {
    const big = adt('BIG-HTTP') + `NTE|1||${'x'.repeat(70_000)}\r`;
    const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: big });
    expect(res.statusCode).toBe(413);
    expect(res.json().resourceType).toBe('OperationOutcome');
  });

  test('a sender that does not wait for ACKs still gets every one, in order', async () => {
    const client = await MllpClient.open(port);
    await client.write(Buffer.concat(Array.from({ length: 80 }, (_, i) => encodeFrame(adt(`FLOOD-${i}`)))));
    const acks = await client.waitFor(80, 60_000);
    client.close();
    expect(acks.map(ackControlId)).toEqual(Array.from({ length: 80 }, (_, i) => `FLOOD-${i}`));
  });

  test('a retransmission (same sender, MSH-10 and content) gets the same ACK and writes nothing', async () => {
    const client = await MllpClient.open(port);
    const message = sample('ms-LAB-ORU-2.hl7');
    const first = await client.exchange(message);
    const before = await app.request({ method: 'GET', url: '/fhir/Observation/_history?_count=1000' });
    const second = await client.exchange(message);
    client.close();
    expect(ackCode(first)).toBe('AA');
    expect(second).toBe(first);
    const after = await app.request({ method: 'GET', url: '/fhir/Observation/_history?_count=1000' });
    expect(after.json().entry?.length).toBe(before.json().entry?.length);
    expect(mshField(message, 10)).toBe(ackControlId(first));
  });
});

describe('HL7 v2 MLLP listener shutdown', () => {
  test('closing the server closes open connections and stops accepting new ones', async () => {
    const app = await startTestApp();
    try {
      const port = await app.server.hl7v2.listen(0, '127.0.0.1');
      const client = await MllpClient.open(port);
      expect(ackCode(await client.exchange(adt('BEFORE-CLOSE')))).toBe('AA');
      await app.server.close();
      expect(await client.waitClosed()).toBe(true);
      await expect(MllpClient.open(port)).rejects.toThrow();
    } finally {
      await app.close();
    }
  });
});

describe('HL7 v2 over HTTP: POST /hl7v2', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  test('answers the ACK as ER7 text, for x-application/hl7-v2+er7 and text/plain bodies', async () => {
    for (const type of ['x-application/hl7-v2+er7', 'text/plain']) {
      const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': type }, payload: adt(`HTTP-${type}`) });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toContain('x-application/hl7-v2+er7');
      expect(ackCode(res.body)).toBe('AA');
      expect(ackControlId(res.body)).toBe(`HTTP-${type}`);
    }
  });

  test('needs a bearer token (401) with system write scope (403); JSON bodies are refused (415)', async () => {
    const anonymous = await app.server.http.inject({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'text/plain' }, payload: adt('NOAUTH') });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json().resourceType).toBe('OperationOutcome');
    const tokenResponse = await app.server.http.inject({
      method: 'POST',
      url: '/auth/token',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}`,
      },
      payload: 'grant_type=client_credentials&scope=system/*.read',
    });
    const readToken = (tokenResponse.json() as { access_token: string }).access_token;
    const readOnly = await app.server.http.inject({
      method: 'POST',
      url: '/hl7v2',
      headers: { 'content-type': 'text/plain', authorization: `Bearer ${readToken}` },
      payload: adt('READONLY'),
    });
    expect(readOnly.statusCode).toBe(403);
    const list = await app.server.http.inject({ method: 'GET', url: '/hl7v2/messages', headers: { authorization: `Bearer ${readToken}` } });
    expect(list.statusCode).toBe(200);
    const json = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'application/json' }, payload: '{}' });
    expect(json.statusCode).toBe(415);
  });

  test('custom delimiters (MSH-1/MSH-2) and escape sequences are decoded', async () => {
    const message = [
      'MSH#*~$%#LABAPP#LAB#FHIR#HOSP#20240105103000+0100##ORU*R01*ORU_R01#ESC-1#P#2.5.1',
      'PID#1##ESC-MRN***LAB%2.16.840.1.113883.19.5%ISO*MR##O$F$Brien*Mary##19700101#F',
      'OBR#1#PL-1*LAB#FL-1*LAB#2345-7*Glucose*LN#####20240105090000+0100#################F',
      'OBX#1#NM#2345-7*Glucose*LN##105#mg/dL#70-99#H###F###20240105090000+0100',
      'OBX#2#TX#8251-1*Note*LN#1#line one$.br$line two $F$ pipe $S$ caret $T$ amp $R$ tilde $E$ esc##########F',
    ].join('\r');
    const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: message });
    expect(ackCode(res.body)).toBe('AA');
    const patient = (await app.request({ method: 'GET', url: '/fhir/Patient?identifier=urn:oid:2.16.840.1.113883.19.5|ESC-MRN' })).json().entry[0].resource;
    expect(patient.name[0].family).toBe('O#Brien');
    const obs = (await app.request({ method: 'GET', url: '/fhir/Observation?code=8251-1' })).json().entry[0].resource;
    expect(obs.valueString).toBe('line one\nline two # pipe * caret % amp ~ tilde $ esc');
  });
});
