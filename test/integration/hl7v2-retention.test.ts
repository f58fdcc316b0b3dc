import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Hl7Retention } from '../../src/hl7v2/retention.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode } from './hl7v2-helpers.js';

/** A small ORU^R01; `obr4` empty makes it unmappable (AE). */
function oru(controlId: string, obr4 = '2823-3^Potassium^LN'): string {
  return [
    `MSH|^~\\&|LIS|HOSP|EHR|HOSP|20240301100000+0000||ORU^R01^ORU_R01|${controlId}|P|2.5.1`,
    `PID|1||MRN-${controlId}^^^HOSP^MR||Ret^Ention||19500101|F`,
    `OBR|1|PLC-${controlId}^CPOE|FIL-${controlId}^LIS|${obr4}|||20240301090000+0000`,
    'OBX|1|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.1|N|||F',
  ].join('\r');
}

describe('HL7 v2: hl7_message retention (HL7_MESSAGE_RETENTION_DAYS, HL7_FAILED_MESSAGE_RETENTION_DAYS)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ HL7_MESSAGE_RETENTION_DAYS: '30', HL7_FAILED_MESSAGE_RETENTION_DAYS: '180' });
  });
  afterAll(async () => {
    await app?.close();
  });

  async function post(message: string): Promise<{ code: string; id: string }> {
    const res = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'text/plain' }, payload: message });
    expect(res.statusCode).toBe(200);
    return { code: ackCode(res.body), id: String(res.headers['x-hl7-message-id']) };
  }
  /** Makes a message look received and handled `days` ago. */
  async function age(id: string, days: number): Promise<void> {
    await sql`UPDATE hl7_message SET received_at = now() - make_interval(days => ${days}), processed_at = now() - make_interval(days => ${days}) WHERE id = ${id}`.execute(
      app.server.database.db,
    );
  }
  const exists = async (id: string) => (await app.request({ method: 'GET', url: `/hl7v2/messages/${id}` })).statusCode === 200;

  test('the configured limits reach the purge that runs at start and every hour', () => {
    expect(app.config.hl7RetentionDays).toBe(30);
    expect(app.config.hl7FailedRetentionDays).toBe(180);
    expect(app.server.hl7v2.retention.enabled).toBe(true);
  });

  test('processed messages past the limit are deleted; failed ones stay until their own limit; unmapped ones stay', async () => {
    const oldProcessed = await post(oru('RET-1'));
    const newProcessed = await post(oru('RET-2'));
    const oldError = await post(oru('RET-3', ''));
    const veryOldError = await post(oru('RET-4', ''));
    const oldRejected = await post(oru('RET-5').replace('ORU^R01^ORU_R01', 'ZZZ^Z01'));
    expect([oldProcessed.code, newProcessed.code, oldError.code, veryOldError.code, oldRejected.code]).toEqual(['AA', 'AA', 'AE', 'AE', 'AR']);
    const { record: pending } = await app.server.hl7v2.messages.insert({
      transport: 'mllp',
      sendingApplication: 'LIS',
      sendingFacility: 'HOSP',
      controlId: 'RET-6',
      messageType: 'ORU^R01',
      version: '2.5.1',
      contentHash: 'retention-test-pending',
      raw: oru('RET-6'),
    });
    for (const id of [oldProcessed.id, oldError.id, oldRejected.id, pending.id]) await age(id, 40);
    await age(veryOldError.id, 200);

    const deleted = await app.server.hl7v2.retention.runOnce();
    expect(deleted).toEqual({ processed: 1, failed: 1 });
    expect(await exists(oldProcessed.id)).toBe(false);
    expect(await exists(veryOldError.id)).toBe(false);
    for (const id of [newProcessed.id, oldError.id, oldRejected.id, pending.id]) expect(await exists(id)).toBe(true);
    // The resources the message wrote are not touched: only the raw message goes.
    const reports = (await app.request({ method: 'GET', url: '/fhir/DiagnosticReport?identifier=FIL-RET-1' })).json() as { entry?: unknown[] };
    expect(reports.entry).toHaveLength(1);
    // A retransmission of a deleted message is taken as new and mapped again: nothing changes, AA.
    const versions = await app.server.store.countHistory({ resourceType: 'DiagnosticReport' });
    expect((await post(oru('RET-1'))).code).toBe('AA');
    expect(await app.server.store.countHistory({ resourceType: 'DiagnosticReport' })).toBe(versions);
  });

  test('with both limits 0 nothing is deleted and no timer runs', async () => {
    const keepAll = new Hl7Retention(app.server.hl7v2.messages, { processedDays: 0, failedDays: 0, log: () => undefined });
    expect(keepAll.enabled).toBe(false);
    const { id } = await post(oru('RET-7'));
    await age(id, 4000);
    expect(await keepAll.runOnce()).toEqual({ processed: 0, failed: 0 });
    expect(await exists(id)).toBe(true);
    keepAll.start();
    await keepAll.close();
  });
});
