import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode, ackControlId, MllpClient, observationsOfPatient, storedWhenDone } from './hl7v2-helpers.js';

/**
 * An original-mode ORU^R01 (MSH-15/16 empty) for order `order` (default: the control id) of the
 * patient MRN-R-<order>; `obr4` empty makes it unmappable; `value` is the sodium result.
 */
function oru(controlId: string, opts: { order?: string; value?: number; obr4?: string; type?: string } = {}): string {
  const order = opts.order ?? controlId;
  return [
    `MSH|^~\\&|RCPT LIS|RCPT LAB|FHIR|HOSP|20240301100000+0000||${opts.type ?? 'ORU^R01^ORU_R01'}|${controlId}|P|2.5.1`,
    `PID|1||MRN-R-${order}^^^HOSP^MR||Receipt^Test||19600101|M`,
    `ORC|RE|PLC-${order}^CPOE|FIL-${order}^LIS`,
    `OBR|1|PLC-${order}^CPOE|FIL-${order}^LIS|${opts.obr4 ?? '24320-4^Basic metabolic panel^LN'}|||20240301090000+0000||||||||1234^Welby^Marcus||||||20240301095000+0000|||F`,
    `OBX|1|NM|2951-2^Sodium^LN||${opts.value ?? 140}|mmol/L|135-145|N|||F`,
  ].join('\r');
}

describe('HL7_ACK_ON_RECEIPT=on: original-mode senders get AA once the message is stored', () => {
  let app: TestApp;
  let port: number;
  beforeAll(async () => {
    app = await startTestApp({ HL7_ACK_ON_RECEIPT: 'on' });
    port = await app.server.hl7v2.listen(0, '127.0.0.1');
  });
  afterAll(async () => {
    await app?.close();
  });

  test('one AA per message, in order, then every message is mapped in the order sent', async () => {
    const client = await MllpClient.open(port);
    // The same order resulted three times: the last value sent must be the one kept.
    const ids = ['RC-1', 'RC-2', 'RC-3'];
    for (const [i, id] of ids.entries()) {
      const ack = await client.exchange(oru(id, { order: 'RC', value: 140 + i }));
      expect(ackCode(ack)).toBe('AA');
      expect(ackControlId(ack)).toBe(id);
    }
    client.close();
    for (const id of ids) expect((await storedWhenDone(app, id)).status).toBe('processed');
    const [obs] = await observationsOfPatient(app, 'MRN-R-RC');
    expect(obs.valueQuantity?.value).toBe(142);
  });

  test('an unreadable or unsupported message is still refused at once (AR), nothing queued', async () => {
    const client = await MllpClient.open(port);
    const ack = await client.exchange(oru('RC-AR', { type: 'ZZZ^Z99' }));
    client.close();
    expect(ackCode(ack)).toBe('AR');
    expect((await storedWhenDone(app, 'RC-AR')).status).toBe('rejected');
  });

  test('a message that fails its mapping after the AA is kept as error and answered AE when sent again', async () => {
    const client = await MllpClient.open(port);
    const first = await client.exchange(oru('RC-ERR', { obr4: '' }));
    expect(ackCode(first)).toBe('AA');
    const stored = await storedWhenDone(app, 'RC-ERR');
    expect(stored.status).toBe('error');
    expect(await observationsOfPatient(app, 'MRN-R-RC-ERR')).toEqual([]);
    // The retransmission learns of the failure: the stored application answer.
    const again = await client.exchange(oru('RC-ERR', { obr4: '' }));
    client.close();
    expect(ackCode(again)).toBe('AE');
    expect(ackControlId(again)).toBe('RC-ERR');
  });

  test('messages over HTTP keep original-mode semantics (the answer after mapping)', async () => {
    const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'x-application/hl7-v2+er7' }, payload: oru('RC-HTTP', { obr4: '' }) });
    expect(ackCode(res.body)).toBe('AE');
  });
});
