import { connect, type Socket } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeFrame, MllpDecoder } from '../../src/hl7v2/mllp/framing.js';
import type { Bundle, Observation } from 'fhir/r4.js';
import { expect } from 'vitest';
import type { Hl7MessageRecord } from '../../src/storage/hl7v2-messages.js';
import { SHARED_DATA, type TestApp } from '../support/test-app.js';

export const HL7_DIR = join(SHARED_DATA, 'hl7v2');

/** The Observations of the patient with identifier `mrn` (each test's messages have a patient of their own). */
export async function observationsOfPatient(app: TestApp, mrn: string): Promise<Observation[]> {
  const res = await app.request({ method: 'GET', url: `/fhir/Observation?subject:Patient.identifier=${mrn}` });
  expect(res.statusCode).toBe(200);
  return ((res.json() as Bundle).entry ?? []).map((e) => e.resource as Observation);
}

/** The stored message of this control id once it is no longer 'received' (mapped, failed or refused). */
export async function storedWhenDone(app: TestApp, controlId: string): Promise<Hl7MessageRecord> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = (await app.server.hl7v2.messages.list({ count: 1000 })).find((r) => r.controlId === controlId);
    if (found && found.status !== 'received') return found;
    if (Date.now() > deadline) throw new Error(`message ${controlId} still not mapped`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function sampleFiles(): string[] {
  return readdirSync(HL7_DIR)
    .filter((f) => f.endsWith('.hl7'))
    .sort();
}

export function sample(file: string): string {
  return readFileSync(join(HL7_DIR, file), 'utf8');
}

/** MSH fields by number (MSH-1 is the separator), read with plain string splits, independent of the server's parser. */
export function mshField(message: string, n: number): string {
  const msh = message.split(/\r\n|\r|\n/)[0];
  const sep = msh.charAt(3);
  return n === 1 ? sep : (msh.split(sep)[n - 1] ?? '');
}

/** Segments of an ACK as arrays of fields (field 0 is the segment name). */
export function ackSegments(ack: string): string[][] {
  return ack
    .split('\r')
    .filter(Boolean)
    .map((s) => s.split('|'));
}

export function ackCode(ack: string): string {
  return ackSegments(ack).find((s) => s[0] === 'MSA')?.[1] ?? '';
}

export function ackControlId(ack: string): string {
  return ackSegments(ack).find((s) => s[0] === 'MSA')?.[2] ?? '';
}

/** A test MLLP sender over a real socket: send bytes, wait for acknowledgements. */
export class MllpClient {
  readonly acks: string[] = [];
  closed = false;
  private waiters: Array<() => void> = [];
  private readonly decoder = new MllpDecoder(64 * 1024 * 1024);

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const e of this.decoder.push(chunk)) if (e.kind === 'frame') this.acks.push(e.body.toString('utf8'));
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<MllpClient> {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new MllpClient(socket);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(bytes: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (e) => (e ? reject(e) : resolve())));
  }

  send(message: string): Promise<void> {
    return this.write(encodeFrame(message));
  }

  /** Resolves once `count` acknowledgements arrived in total (or the connection closed). */
  async waitFor(count: number, timeoutMs = 30_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.acks.length < count && !this.closed) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} ACKs (got ${this.acks.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.acks.slice(0, count);
  }

  async waitClosed(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return this.closed;
  }

  /** Sends and waits for the one acknowledgement of this message. */
  async exchange(message: string): Promise<string> {
    const n = this.acks.length + 1;
    await this.send(message);
    const acks = await this.waitFor(n);
    return acks[n - 1];
  }

  close(): void {
    this.socket.destroy();
  }
}
