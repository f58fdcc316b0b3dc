import type { AuditEvent } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { FhirError } from '../fhir/errors.js';
import { AuditLog, type AuditWriter } from './audit-log.js';

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
  written: AuditEvent[] = [];
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

  async append(events: readonly AuditEvent[]): Promise<void> {
    if (this.gate) await this.gate;
    if (this.down) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    if (events.some((e) => e.outcomeDesc === this.poison)) throw Object.assign(new Error('invalid input syntax'), { code: '22007' });
    this.written.push(...events);
  }
}

function setup(options: { queueLimit?: number; admissionWaitMs?: number } = {}) {
  const writer = new ControlledWriter();
  const logs: string[] = [];
  const audit = new AuditLog({ writer, enabled: true, log: (m) => logs.push(m), queueLimit: options.queueLimit ?? 100, admissionWaitMs: options.admissionWaitMs ?? 5_000 });
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
});
