import type { Bundle, DiagnosticReport, Observation, Patient, Provenance, Specimen } from 'fhir/r4.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ReceiptBatcher } from '../../src/hl7v2/receipt-batcher.js';
import type { Hl7MessageStore, NewHl7Message } from '../../src/storage/hl7v2-messages.js';
import { startTestApp, type TestApp } from '../support/test-app.js';
import { ackCode, ackControlId } from './hl7v2-helpers.js';

/** An ORU^R01 of patient `mrn` for order `order` with `obx` results; `obr4` empty makes it unmappable (AE). */
function oru(order: string, mrn: string, obx = 3, obr4 = '24320-4^Basic metabolic panel^LN'): string {
  return [
    `MSH|^~\\&|LIS|HOSP|EHR|HOSP|20240301100000+0000||ORU^R01^ORU_R01|${order}|P|2.5.1`,
    `PID|1||${mrn}^^^HOSP^MR||Batch^Test||19600101|M`,
    `ORC|RE|PLC-${order}^CPOE|FIL-${order}^LIS`,
    `OBR|1|PLC-${order}^CPOE|FIL-${order}^LIS|${obr4}|||20240301090000+0000||||||||1234^Welby^Marcus||||||20240301095000+0000|||F`,
    ...Array.from({ length: obx }, (_, i) => `OBX|${i + 1}|NM|2951-2^Sodium^LN|${i + 1}|${138 + i}|mmol/L|135-145|N|||F`),
    `SPM|1|SP-${order}&LIS||119297000^Blood specimen^SCT|||||||||||||20240301080000+0000`,
  ].join('\r');
}

describe('HL7 v2: ORU^R01 received together are mapped in one transaction (HL7_MAPPING_BATCH)', () => {
  let app: TestApp;
  /** Transactions that wrote something, and how many resources each. */
  const commits: number[] = [];
  beforeAll(async () => {
    app = await startTestApp();
    app.server.store.onAfterCommit((changes) => {
      commits.push(changes.length);
    });
  });
  afterAll(async () => {
    await app?.close();
  });

  const receive = (messages: string[]) => Promise.all(messages.map((m) => app.server.hl7v2.ingest.receive(m, 'mllp')));
  async function search<T>(query: string): Promise<T[]> {
    const res = await app.request({ method: 'GET', url: `/fhir/${query}` });
    expect(res.statusCode).toBe(200);
    return ((res.json() as Bundle).entry ?? []).map((e) => e.resource as T);
  }

  test('each message gets its own AA, Provenance and status, in fewer transactions than messages; shared patients are created once', async () => {
    commits.length = 0;
    const messages = Array.from({ length: 16 }, (_, i) => oru(`B-${i}`, `MRN-B-${i % 4}`));
    const results = await receive(messages);
    expect(results.map((r) => r.code)).toEqual(Array(16).fill('AA'));
    expect(results.map((r) => ackControlId(r.ack))).toEqual(messages.map((_, i) => `B-${i}`));
    // 16 messages, each 1 report + 3 observations + 1 specimen + Provenance (+ a patient for 4 of them).
    expect(commits.reduce((a, b) => a + b, 0)).toBe(16 * 6 + 4);
    expect(commits.length).toBeLessThan(16);
    for (let p = 0; p < 4; p++) expect(await search<Patient>(`Patient?identifier=MRN-B-${p}`)).toHaveLength(1);
    // Which message of a patient creates it depends on how the batches were cut and ran side by side;
    // exactly one of each patient's four messages names the Patient among what it wrote.
    const creators = [0, 0, 0, 0];
    for (const [i, r] of results.entries()) {
      const [report] = await search<DiagnosticReport>(`DiagnosticReport?identifier=FIL-B-${i}`);
      expect(report.result).toHaveLength(3);
      const [provenance] = await search<Provenance>(`Provenance?_id=hl7v2-${r.messageId}`);
      const targets = provenance.target.map((t) => t.reference?.split('/')[0]).sort();
      if (targets.includes('Patient')) creators[i % 4]++;
      expect(targets.filter((t) => t !== 'Patient')).toEqual(['DiagnosticReport', 'Observation', 'Observation', 'Observation', 'Specimen']);
      const stored = (await app.request({ method: 'GET', url: `/hl7v2/messages/${r.messageId}` })).json() as { status: string; resources: string[]; attempts: number };
      expect(stored).toMatchObject({ status: 'processed', attempts: 1 });
      // What it wrote and what it found (the patient created by an earlier message of the batch).
      expect(stored.resources).toHaveLength(6);
    }
    expect(creators).toEqual([1, 1, 1, 1]);
    // All again, together: retransmissions, answered with the same ACKs, nothing written.
    commits.length = 0;
    const again = await receive(messages);
    expect(again.map((r) => r.ack)).toEqual(results.map((r) => r.ack));
    expect(again.every((r) => r.duplicate)).toBe(true);
    expect(commits).toEqual([]);
  });

  test('one unmappable message among them is the only AE: the batch is mapped again message by message', async () => {
    const messages = Array.from({ length: 10 }, (_, i) => (i === 6 ? oru(`E-${i}`, 'MRN-E', 2, '') : oru(`E-${i}`, 'MRN-E', 2)));
    const results = await receive(messages);
    expect(results.map((r) => ackCode(r.ack))).toEqual(messages.map((_, i) => (i === 6 ? 'AE' : 'AA')));
    expect(await search<DiagnosticReport>('DiagnosticReport?identifier=FIL-E-6')).toEqual([]);
    for (const i of [0, 5, 7, 9]) expect(await search<DiagnosticReport>(`DiagnosticReport?identifier=FIL-E-${i}`)).toHaveLength(1);
    const failed = (await app.request({ method: 'GET', url: `/hl7v2/messages/${results[6].messageId}` })).json() as { status: string; error: string };
    expect(failed.status).toBe('error');
    expect(failed.error).toContain('OBR-4');
    expect(await search<Patient>('Patient?identifier=MRN-E')).toHaveLength(1);
  });

  test('a correction arriving in the same batch as the original result updates it as a new version', async () => {
    const original = oru('C-1', 'MRN-C', 1);
    const corrected = original.replace('|138|mmol/L|135-145|N|||F', '|150|mmol/L|135-145|H|||C').replace('|ORU^R01^ORU_R01|C-1|', '|ORU^R01^ORU_R01|C-1b|');
    const results = await receive([oru('C-0', 'MRN-C', 1), original, corrected]);
    expect(results.map((r) => r.code)).toEqual(['AA', 'AA', 'AA']);
    const all = await search<Observation>('Observation?subject:Patient.identifier=MRN-C');
    expect(all).toHaveLength(2);
    const obs = all.find((o) => o.identifier?.[0].value?.includes('FIL-C-1|'));
    expect(obs).toMatchObject({ status: 'corrected', valueQuantity: { value: 150 }, meta: { versionId: '2' } });
  });

  test('raw rows received together are inserted by one statement; a bad row fails alone; a repeat in the same statement is a duplicate', async () => {
    const store: Hl7MessageStore = app.server.hl7v2.messages;
    const statements: number[] = [];
    const counting = Object.create(store) as Hl7MessageStore;
    counting.insertMany = (messages: readonly NewHl7Message[]) => {
      statements.push(messages.length);
      return store.insertMany(messages);
    };
    const batcher = new ReceiptBatcher(counting);
    const row = (i: number, raw = `MSH|^~\\&|GC|HOSP|||20240301||ORU^R01|GC-${i}|P|2.5.1`): NewHl7Message => ({
      transport: 'mllp',
      sendingApplication: 'GC',
      sendingFacility: 'HOSP',
      controlId: `GC-${i}`,
      messageType: 'ORU^R01',
      version: '2.5.1',
      contentHash: `group-commit-${i}`,
      raw,
    });
    const results = await Promise.allSettled([
      ...Array.from({ length: 8 }, (_, i) => batcher.store(row(i))),
      batcher.store(row(3)),
      // PostgreSQL text holds no NUL: this row fails the statement it is in.
      batcher.store(row(99, 'MSH|\0|')),
    ]);
    // The first went alone; the others waited for it and went together (then, after the failure, one by one).
    expect(statements[0]).toBe(1);
    expect(statements[1]).toBe(9);
    const ok = results.slice(0, 9).map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    expect(ok.slice(0, 8).every((r) => r && !r.duplicate && r.record.status === 'received')).toBe(true);
    expect(ok[8]).toMatchObject({ duplicate: true, record: { id: ok[3]?.record.id } });
    expect(results[9].status).toBe('rejected');
    for (const r of ok) expect((await store.get(r?.record.id ?? ''))?.controlId).toMatch(/^GC-/);
  });

  test('issue 10: the new Specimens of a batch take their accession numbers together, consecutive and without gaps', async () => {
    const accession = async (order: string) => {
      const [specimen] = await search<Specimen>(`Specimen?identifier=SP-${order}`);
      const value = specimen?.accessionIdentifier?.value ?? '';
      expect(value).toMatch(/^LAB-\d{8}-\d{5}$/);
      return Number(value.slice(-5));
    };
    const first = Array.from({ length: 6 }, (_, i) => oru(`ACC-${i}`, `MRN-ACC-${i % 2}`, 1));
    expect((await receive(first)).map((r) => r.code)).toEqual(Array(6).fill('AA'));
    const numbers = await Promise.all(first.map((_, i) => accession(`ACC-${i}`)));
    expect(new Set(numbers).size).toBe(6);
    expect(Math.max(...numbers) - Math.min(...numbers)).toBe(5);
    // Three known specimens (their orders resent under new control ids) and three new ones: only
    // the new ones are numbered, right after the first ones.
    const resent = [0, 1, 2].map((i) => oru(`ACC-${i}`, `MRN-ACC-${i % 2}`, 1).replace(`|ORU^R01^ORU_R01|ACC-${i}|`, `|ORU^R01^ORU_R01|ACC-${i}-again|`));
    const fresh = [6, 7, 8].map((i) => oru(`ACC-${i}`, `MRN-ACC-${i % 2}`, 1));
    expect((await receive([...resent, ...fresh])).map((r) => r.code)).toEqual(Array(6).fill('AA'));
    expect(await Promise.all([0, 1, 2].map((i) => accession(`ACC-${i}`)))).toEqual(numbers.slice(0, 3));
    const next = await Promise.all([6, 7, 8].map((i) => accession(`ACC-${i}`)));
    expect([...next].sort((a, b) => a - b)).toEqual([1, 2, 3].map((k) => Math.max(...numbers) + k));
    // No number was taken and left unused: a Specimen created over REST now gets the next one.
    const created = await app.request({ method: 'POST', url: '/fhir/Specimen', payload: { resourceType: 'Specimen' } });
    expect(created.statusCode).toBe(201);
    expect(Number(((created.json() as Specimen).accessionIdentifier?.value ?? '').slice(-5))).toBe(Math.max(...next) + 1);
  });
});
