import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Bundle, DiagnosticReport } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { contentHash } from '../../src/hl7v2/ingest.js';
import { startTestApp, type TestApp, dropTestSchema } from '../support/test-app.js';
import { ackCode, ackControlId, MllpClient, mshField, sample } from './hl7v2-helpers.js';

describe('HL7 v2: nothing lost, nothing twice', () => {
  test('a message stored as received when the process stopped is mapped at the next start; its retransmission then writes nothing', async () => {
    const schema = `t_hl7_${randomBytes(5).toString('hex')}`;
    const dir = process.env.DATABASE_URL ? undefined : mkdtempSync(join(tmpdir(), 'hl7v2-restart-'));
    const env: Record<string, string> = dir ? { DATA_DIR: dir } : { DATABASE_SCHEMA: schema };
    const raw = sample('ms-LAB-ORU-2.hl7');
    try {
      const first = await startTestApp(env);
      // What the ingest does before anything else: the raw message, committed. Then the process dies.
      await first.server.hl7v2.messages.insert({
        transport: 'mllp',
        sendingApplication: mshField(raw, 3),
        sendingFacility: mshField(raw, 4),
        controlId: mshField(raw, 10),
        messageType: 'ORU^R01',
        version: mshField(raw, 12),
        contentHash: contentHash(raw),
        raw,
      });
      await first.server.close();

      const second = await startTestApp(env);
      try {
        expect(await second.server.hl7v2.recovered).toBe(1);
        const errors = await second.request({ method: 'GET', url: '/hl7v2/messages?status=processed' });
        expect((errors.json() as { messages: Array<{ controlId: string }> }).messages.map((m) => m.controlId)).toEqual([mshField(raw, 10)]);
        const reports = (await second.request({ method: 'GET', url: '/fhir/DiagnosticReport' })).json() as Bundle;
        expect(reports.entry?.length).toBe(2);
        // The sender never got its ACK and sends again: acknowledged, nothing written twice.
        const versions = await second.server.store.countHistory({});
        const port = await second.server.hl7v2.listen(0, '127.0.0.1');
        const client = await MllpClient.open(port);
        const ack = await client.exchange(raw);
        client.close();
        expect(ackCode(ack)).toBe('AA');
        expect(ackControlId(ack)).toBe(mshField(raw, 10));
        expect(await second.server.store.countHistory({})).toBe(versions);
      } finally {
        await second.server.close();
      }
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
      await dropTestSchema(schema);
    }
  }, 240_000);
});

describe('HL7 v2 admin: failed messages listed, inspected and reprocessed', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  test('an AE message is listed with status=error, and $reprocess maps it once the cause is fixed', async () => {
    // Two patients with the same MRN: the result cannot be matched to one (AE).
    const patient = { resourceType: 'Patient', identifier: [{ system: 'urn:x-hl7v2:assigner:1', value: '10006579' }] };
    const a = await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient });
    await app.request({ method: 'POST', url: '/fhir/Patient', payload: patient });
    const raw = sample('ms-LAB-ORU-2.hl7');
    const first = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'text/plain' }, payload: raw });
    expect(ackCode(first.body)).toBe('AE');
    expect(first.body).toContain('ERR|');
    const id = String(first.headers['x-hl7-message-id']);
    const listed = (await app.request({ method: 'GET', url: '/hl7v2/messages?status=error' })).json() as { messages: Array<{ id: string; error: string }> };
    expect(listed.messages.map((m) => m.id)).toEqual([id]);
    expect(listed.messages[0].error).toContain('more than one Patient');
    expect((await app.request({ method: 'GET', url: '/fhir/DiagnosticReport' })).json().entry ?? []).toHaveLength(0);
    // A retransmission gets the same AE, nothing else happens.
    const again = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'text/plain' }, payload: raw });
    expect(again.body).toBe(first.body);

    // The fix: the duplicate patient is removed. Then the admin reprocesses the message.
    const duplicate = a.json() as { id: string };
    expect((await app.request({ method: 'DELETE', url: `/fhir/Patient/${duplicate.id}` })).statusCode).toBeLessThan(300);
    const reprocessed = await app.request({ method: 'POST', url: `/hl7v2/messages/${id}/$reprocess` });
    expect(reprocessed.statusCode).toBe(200);
    expect(reprocessed.json()).toMatchObject({ id, status: 'processed', ackCode: 'AA', attempts: 2 });
    const reports = (await app.request({ method: 'GET', url: '/fhir/DiagnosticReport' })).json() as Bundle<DiagnosticReport>;
    expect(reports.entry).toHaveLength(2);
    // Reprocessing a processed message writes nothing new.
    const versions = await app.server.store.countHistory({});
    const twice = await app.request({ method: 'POST', url: `/hl7v2/messages/${id}/$reprocess` });
    expect(twice.json().ackCode).toBe('AA');
    expect(await app.server.store.countHistory({})).toBe(versions);
    // And a retransmission now gets the new AA.
    const later = await app.request({ method: 'POST', url: '/hl7v2', headers: { 'content-type': 'text/plain' }, payload: raw });
    expect(ackCode(later.body)).toBe('AA');
  });

  test('bad admin requests are 4xx OperationOutcomes', async () => {
    const bad = await app.request({ method: 'GET', url: '/hl7v2/messages?status=bogus' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().resourceType).toBe('OperationOutcome');
    expect((await app.request({ method: 'GET', url: '/hl7v2/messages?_count=0' })).statusCode).toBe(400);
    expect((await app.request({ method: 'GET', url: '/hl7v2/messages/nope' })).statusCode).toBe(404);
    expect((await app.request({ method: 'POST', url: '/hl7v2/messages/nope/$reprocess' })).statusCode).toBe(404);
  });
});
