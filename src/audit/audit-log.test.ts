import type { AuditEvent } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { FhirError } from '../fhir/errors.js';
import type { AuditInsert } from '../storage/audit-store.js';
import { AuditLog, type AuditItem, type AuditWriter } from './audit-log.js';
import { RestAuditTuple } from './http-audit.js';
import { AuditRenderer } from './audit-render.js';

const renderer = new AuditRenderer({ baseUrl: 'http://localhost:8080' }, ['http://localhost:8080/fhir']);

const event = (n: number): AuditEvent => ({
  resourceType: 'AuditEvent',
  type: { code: 'rest' },
  action: 'R',
  recorded: new Date().toISOString(),
  outcomeDesc: `event ${n}`,
  agent: [{ requestor: true, who: { reference: 'Patient/secret-patient' } }],
  source: { observer: { display: 'test' } },
});

/**
 * A writer standing in for the database in the ways that matter to the queue: it can be
 * held (a database that does not keep up), fail as a whole (unreachable), or refuse one
 * event for its content (SQLSTATE class 22).
 */
class ControlledWriter implements AuditWriter {
  written: AuditInsert[] = [];
  /** Events per append call (one statement each), in order. */
  batches: number[] = [];
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  down = false;
  poison?: string;

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.open?.();
    this.gate = undefined;
  }

  async append(rows: readonly AuditInsert[]): Promise<void> {
    if (this.gate) await this.gate;
    if (this.down) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    if (this.poison && rows.some((r) => r.head.includes(`"outcomeDesc":"${this.poison}"`))) throw Object.assign(new Error('invalid input syntax'), { code: '22007' });
    this.written.push(...rows);
    this.batches.push(rows.length);
  }
}

function setup(options: { queueLimit?: number; admissionWaitMs?: number; render?: (item: AuditItem) => AuditInsert } = {}) {
  const writer = new ControlledWriter();
  const logs: string[] = [];
  const audit = new AuditLog({ writer, render: options.render ?? ((item) => renderer.render(item)), enabled: true, log: (m) => logs.push(m), queueLimit: options.queueLimit ?? 100, admissionWaitMs: options.admissionWaitMs ?? 5_000 });
  return { writer, logs, audit };
}

describe('AuditLog: bounded queue with back-pressure', () => {
  it('admits at once while there is room, makes requests wait when full, and lets them go when the writer catches up', async () => {
    const { writer, audit } = setup();
    expect(audit.admit()).toBeUndefined();
    writer.hold();
    for (let i = 0; i < 100; i++) audit.record(event(i));
    const flushing = audit.flush();
    const waiting = audit.admit();
    expect(waiting).toBeInstanceOf(Promise);
    let admitted = false;
    void waiting!.then(() => (admitted = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(admitted).toBe(false);
    writer.release();
    await flushing;
    await waiting;
    expect(admitted).toBe(true);
    expect(writer.written).toHaveLength(100);
    expect(audit.stats()).toMatchObject({ queued: 0, written: 100, lost: 0, refused: 0 });
  });

  it('answers 503 (counted, logged without PHI) when the queue stays full', async () => {
    const { writer, audit, logs } = setup({ admissionWaitMs: 30 });
    writer.hold();
    for (let i = 0; i < 100; i++) audit.record(event(i));
    const error = await audit.admit()!.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FhirError);
    expect((error as FhirError).status).toBe(503);
    expect(audit.stats().refused).toBe(1);
    expect(logs.join('\n')).not.toContain('secret-patient');
    writer.release();
    await audit.close();
    expect(writer.written).toHaveLength(100);
  });

  it('writes what arrived during a write with its own timer, not at once after it: one statement per batch, not per round trip', async () => {
    const { writer, audit } = setup({ queueLimit: 10_000 });
    writer.hold();
    for (let i = 0; i < 3; i++) audit.record(event(i));
    // The writer's timer (at most 0.5 s after the first event) starts a write, which is held.
    await new Promise((r) => setTimeout(r, 600));
    for (let i = 3; i < 8; i++) audit.record(event(i));
    writer.release();
    await new Promise((r) => setTimeout(r, 50));
    expect(writer.batches).toEqual([3]);
    expect(audit.stats()).toMatchObject({ queued: 5, written: 3 });
    // The five wait at most their own 0.5 s.
    await new Promise((r) => setTimeout(r, 600));
    expect(writer.batches).toEqual([3, 5]);
    // A full batch is written at once, and flush() writes everything, also what arrives meanwhile.
    for (let i = 0; i < 500; i++) audit.record(event(i));
    await new Promise((r) => setTimeout(r, 20));
    expect(writer.batches).toEqual([3, 5, 500]);
    writer.hold();
    audit.record(event(0));
    const flushed = audit.flush();
    audit.record(event(1));
    writer.release();
    await flushed;
    expect(audit.stats()).toMatchObject({ queued: 0, written: 510 });
  });

  it('keeps events queued while the database is unreachable and writes them when it is back', async () => {
    const { writer, audit, logs } = setup();
    writer.down = true;
    for (let i = 0; i < 10; i++) audit.record(event(i));
    await audit.flush();
    expect(audit.stats()).toMatchObject({ queued: 10, written: 0, lost: 0 });
    expect(logs.some((m) => m.includes('kept queued'))).toBe(true);
    writer.down = false;
    await audit.flush();
    expect(audit.stats()).toMatchObject({ queued: 0, written: 10, lost: 0 });
  });

  it('isolates an event the database refuses: it alone is lost, counted and logged', async () => {
    const { writer, audit, logs } = setup();
    writer.poison = 'event 7';
    for (let i = 0; i < 20; i++) audit.record(event(i));
    await audit.flush();
    expect(writer.written).toHaveLength(19);
    expect(audit.stats()).toMatchObject({ written: 19, lost: 1 });
    expect(logs.some((m) => m.includes('SQLSTATE 22007'))).toBe(true);
    expect(logs.join('\n')).not.toContain('secret-patient');
  });

  it('beyond twice the limit an event is dropped only with a count and a log line', async () => {
    const { writer, audit, logs } = setup();
    writer.hold();
    for (let i = 0; i < 201; i++) audit.record(event(i));
    expect(audit.stats()).toMatchObject({ queued: 200, lost: 1 });
    expect(logs.some((m) => m.includes('1 AuditEvent(s) lost'))).toBe(true);
    writer.release();
    await audit.close();
    expect(writer.written).toHaveLength(200);
  });

  it('close() writes what is queued (graceful shutdown)', async () => {
    const { writer, audit } = setup();
    for (let i = 0; i < 5; i++) audit.record(event(i));
    await audit.close();
    expect(writer.written).toHaveLength(5);
  });

  it('makes a FHIR request\'s event from what the request path kept only when writing, also at close()', async () => {
    const { writer, audit } = setup();
    const auth = { clientId: 'app', subject: 'u1', scope: 'user/*.rs', scopes: [], expiresAt: 2e9, kind: 'user' as const, fhirUser: 'Practitioner/d1', role: 'DOCTOR' };
    const at = Date.parse('2026-12-04T10:00:00.000Z');
    audit.record(new RestAuditTuple('/fhir/:type/:id', 'GET', { type: 'Observation', id: 'o1' }, '/fhir/Observation/o1', 200, auth, '10.0.0.1', undefined, 'p1', 'req-1', at, undefined));
    audit.record(new RestAuditTuple('/fhir/:type', 'GET', { type: 'Observation' }, '/fhir/Observation?patient=p2&code=x', 200, auth, '10.0.0.1', undefined, undefined, 'req-2', at, undefined));
    // POSTs: what the event needs of the body was taken on the request path.
    audit.record(new RestAuditTuple('/fhir/:type/_search', 'POST', { type: 'Observation' }, '/fhir/Observation/_search?code=x', 200, auth, undefined, undefined, undefined, 'req-3', at, { query: 'code=x&patient=p3' }));
    audit.record(new RestAuditTuple('/fhir', 'POST', {}, '/fhir', 200, auth, undefined, undefined, undefined, 'req-4', at, { bundle: { batch: true, entities: ['Patient/p4', 'Encounter/e4'] } }));
    expect(writer.written).toHaveLength(0);
    await audit.close();
    const [, , formSearch, bundle] = writer.written.map((row) => JSON.parse(`${row.head}}`) as AuditEvent);
    expect(formSearch).toMatchObject({ subtype: [{ code: 'search-type' }], entity: [{ description: 'Observation', query: Buffer.from('code=x&patient=p3').toString('base64') }, { what: { reference: 'Patient/p3' } }, {}] });
    expect(bundle).toMatchObject({ subtype: [{ code: 'batch' }], action: 'E', entity: [{ what: { reference: 'Patient/p4' } }, { what: { reference: 'Encounter/e4' } }, {}] });
    const [read, search] = writer.written.map((row) => JSON.parse(`${row.head}}`) as AuditEvent & { id: string });
    expect(read).toMatchObject({ subtype: [{ code: 'read' }], recorded: '2026-12-04T10:00:00.000Z', agent: [{ who: { reference: 'Practitioner/d1' } }, {}] });
    expect(read!.entity!.map((e) => e.what?.reference ?? e.what?.identifier?.value)).toEqual(['Observation/o1', 'Patient/p1', 'req-1']);
    expect(search).toMatchObject({ subtype: [{ code: 'search-type' }] });
    expect(search!.entity!.find((e) => e.role?.code === '24')?.query).toBe(Buffer.from('patient=p2&code=x').toString('base64'));
    expect(search!.entity!.some((e) => e.what?.reference === 'Patient/p2')).toBe(true);
    expect(JSON.parse(writer.written[1]!.keys)).toEqual(expect.arrayContaining(['patient>Patient/p2', 'subtype=search-type', 'agent>Practitioner/d1']));
  });

  it('an event that cannot be built is lost alone, counted once and logged, also when the batch is retried', async () => {
    const render = (item: AuditItem): AuditInsert => {
      if (!(item instanceof RestAuditTuple) && item.outcomeDesc === 'event 3') throw new Error('bug');
      return renderer.render(item);
    };
    const { writer, audit, logs } = setup({ render });
    writer.down = true;
    for (let i = 0; i < 6; i++) audit.record(event(i));
    await audit.flush();
    writer.down = false;
    await audit.flush();
    expect(writer.written).toHaveLength(5);
    expect(new Set(writer.written.map((r) => r.id)).size).toBe(5);
    expect(audit.stats()).toMatchObject({ queued: 0, written: 5, lost: 1 });
    expect(logs.filter((m) => m.includes('could not be built'))).toHaveLength(1);
  });
});
