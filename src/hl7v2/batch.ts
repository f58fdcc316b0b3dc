import { randomBytes } from 'node:crypto';
import { escapeText } from './parse/escapes.js';
import { normalizeSegmentEnds } from './parse/er7.js';
import { STANDARD_DELIMITERS } from './parse/message.js';

/**
 * HL7 v2 batches (v2.5.1 §2.10.3): [FHS] { BHS { MSH… } BTS } [FTS]. A file (FHS … FTS)
 * holds batches, a batch (BHS … BTS) holds messages; senders without MLLP sessions (or with
 * overnight files) send many messages this way, in one frame or one HTTP body.
 */
export interface Hl7Batch {
  /** FHS fields by number (FHS-1 is the separator), when the batch came in a file. */
  fhs?: string[];
  /** BHS fields by number, when there was a BHS. */
  bhs?: string[];
  /** Each message's text (segments ended by \r), in order; text before the first MSH that is not envelope is one more (unreadable) message. */
  messages: string[];
  /** BTS-1 (batch message count) as the sender declared it, when it did. */
  declaredCount?: number;
}

const ENVELOPE = new Set(['FHS', 'BHS', 'BTS', 'FTS']);

/** A frame or body that starts with FHS or BHS is a batch, not a message. */
export function isBatch(text: string): boolean {
  return /^\uFEFF?[\s]*(FHS|BHS)/.test(text);
}

/** Fields of an envelope segment by number, as MSH: [name, separator, encoding characters, field 3, …]. */
function envelopeFields(segment: string): string[] {
  const separator = segment.charAt(3) || '|';
  const parts = segment.split(separator);
  return [parts[0], separator, ...parts.slice(1)];
}

/** Splits a batch into its messages (each starts at an MSH) and reads its envelope. */
export function splitBatch(raw: string): Hl7Batch {
  const segments = normalizeSegmentEnds(raw.trimStart()).split('\r');
  const batch: Hl7Batch = { messages: [] };
  let current: string[] | undefined;
  let stray: string[] = [];
  const close = () => {
    if (current?.length) batch.messages.push(`${current.join('\r')}\r`);
    current = undefined;
  };
  for (const segment of segments) {
    if (segment.trim() === '') continue;
    const name = segment.slice(0, 3);
    if (ENVELOPE.has(name)) {
      close();
      if (stray.length) {
        batch.messages.push(`${stray.join('\r')}\r`);
        stray = [];
      }
      const fields = envelopeFields(segment);
      if (name === 'FHS') batch.fhs = fields;
      else if (name === 'BHS') batch.bhs = fields;
      else if (name === 'BTS' && /^\d+$/.test((fields[2] ?? '').trim())) batch.declaredCount = Number(fields[2].trim());
    } else if (name === 'MSH') {
      close();
      if (stray.length) {
        batch.messages.push(`${stray.join('\r')}\r`);
        stray = [];
      }
      current = [segment];
    } else if (current) current.push(segment);
    // Segments outside any message are kept together as one unreadable message: stored and rejected, never dropped.
    else stray.push(segment);
  }
  close();
  if (stray.length) batch.messages.push(`${stray.join('\r')}\r`);
  return batch;
}

function timestamp(now: Date): string {
  return now.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, '+0000');
}

/**
 * The batch acknowledgement: the sender's envelope mirrored (sender and receiver swapped,
 * FHS-12 / BHS-12 naming its file / batch control id FHS-11 / BHS-11), each message's ACK in
 * order, BTS-1 the number of ACKs and BTS-2 a count per code (and a note when the sender's
 * BTS-1 did not match what arrived).
 */
export function buildBatchAck(batch: Hl7Batch, acks: readonly string[], now = new Date()): string {
  const e = (text: string | undefined) => escapeText(text ?? '', STANDARD_DELIMITERS);
  // The sender's envelope fields stay as sent (they use its separators; components are kept).
  const raw = (fields: string[] | undefined, n: number) => (fields?.[n] ?? '').replace(/[|\r]/g, ' ');
  const id = () => `B${now.getTime().toString(36)}${randomBytes(4).toString('hex')}`.slice(0, 20);
  const header = (name: 'FHS' | 'BHS', fields: string[] | undefined) =>
    [name, '^~\\&', raw(fields, 5), raw(fields, 6), raw(fields, 3), raw(fields, 4), timestamp(now), '', '', '', id(), raw(fields, 11)].join('|').replace(/\|+$/, '');
  const counts = new Map<string, number>();
  for (const ack of acks) {
    const code = /\rMSA\|([A-Z]{2})/.exec(`\r${ack}`)?.[1] ?? '??';
    counts.set(code, (counts.get(code) ?? 0) + 1);
  }
  let comment = [...counts].map(([code, n]) => `${n} ${code}`).join(', ') || 'no messages';
  if (batch.declaredCount !== undefined && batch.declaredCount !== acks.length) comment += `; BTS-1 said ${batch.declaredCount}, ${acks.length} received`;
  const segments: string[] = [];
  if (batch.fhs) segments.push(header('FHS', batch.fhs));
  segments.push(header('BHS', batch.bhs ?? batch.fhs));
  for (const ack of acks) segments.push(...ack.split('\r').filter(Boolean));
  segments.push(`BTS|${acks.length}|${e(comment)}`);
  if (batch.fhs) segments.push('FTS|1');
  return `${segments.join('\r')}\r`;
}
