import { randomBytes, randomFillSync } from 'node:crypto';
import { escapeText } from './parse/escapes.js';
import { STANDARD_DELIMITERS, type MessageHeader } from './parse/message.js';

/** Original-mode acknowledgement codes (HL7 table 0008). */
export type AckCode = 'AA' | 'AE' | 'AR';
/** Enhanced-mode commit (accept) acknowledgement codes (HL7 table 0008): stored, could not be stored, refused. */
export type CommitAckCode = 'CA' | 'CE' | 'CR';

/** An error to report in ERR: HL7 table 0357 code and our explanation. */
export interface AckError {
  /** 100 segment sequence error, 101 required field missing, 102 data type error, 200 unsupported message type, 201 unsupported event code, 207 application internal error. */
  code: string;
  text: string;
}

const ERROR_NAMES: Record<string, string> = {
  '100': 'Segment sequence error',
  '101': 'Required field missing',
  '102': 'Data type error',
  '200': 'Unsupported message type',
  '201': 'Unsupported event code',
  '207': 'Application internal error',
};

/** The version to answer in: the message's own, or 2.5.1 when it named none we can read. */
function ackVersion(version: string): string {
  return /^2\.\d+(\.\d+)?$/.test(version) ? version : '2.5.1';
}

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [, a = '0', b = '0'] = /^(\d+)\.(\d+)/.exec(version) ?? [];
  return Number(a) > major || (Number(a) === major && Number(b) >= minor);
}

/** MSH-10 of our ACK: unique and within the 20 characters v2.3 / v2.4 allow. */
function ackControlId(now: Date): string {
  return `A${now.getTime().toString(36)}${randomHex()}`.slice(0, 20);
}

/**
 * Ten random hex digits. Every receipt builds an ACK: one randomBytes call per ACK costs more
 * than the rest of the ACK, so random bytes are drawn 256 ACKs at a time.
 */
const RANDOM_POOL = randomBytes(5 * 256);
let randomUsed = RANDOM_POOL.length;
function randomHex(): string {
  if (randomUsed === RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomUsed = 0;
  }
  randomUsed += 5;
  return RANDOM_POOL.toString('hex', randomUsed - 5, randomUsed);
}

function timestamp(now: Date): string {
  return now.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, '+0000');
}

/**
 * The acknowledgement of a message (v2.5.1 §2.9.2, original mode): MSH with sender and
 * receiver swapped, the message's version and processing id, type ACK^<trigger>^ACK; MSA with
 * the code and MSH-10 of the message; for AE / AR an ERR segment (v2.5+: ERR-3 code, ERR-4
 * severity, ERR-8 text; older versions: ERR-1 location^^^code&text&HL70357).
 */
export function buildAck(
  header: Partial<MessageHeader> | undefined,
  code: AckCode | CommitAckCode,
  error?: AckError,
  now = new Date(),
  /** MSH-15 / MSH-16 of the ACK itself: an enhanced-mode application ACK says NE / NE (answer nothing). */
  ackTypes?: [string, string],
): string {
  const d = STANDARD_DELIMITERS;
  const e = (text: string | undefined) => escapeText(text ?? '', d);
  /** HD fields were read as text joined with ^; keep their components. */
  const hd = (text: string | undefined) => (text ?? '').split('^').map(e).join('^');
  const version = ackVersion(header?.version ?? '');
  const trigger = header?.triggerEvent ?? '';
  const type = versionAtLeast(version, 2, 4) || version === '2.3.1' ? `ACK^${e(trigger)}^ACK` : `ACK^${e(trigger)}`;
  const msh = [
    'MSH',
    '^~\\&',
    hd(header?.receivingApplication),
    hd(header?.receivingFacility),
    hd(header?.sendingApplication),
    hd(header?.sendingFacility),
    timestamp(now),
    '',
    type,
    ackControlId(now),
    e(header?.processingId) || 'P',
    version,
    ...(ackTypes ? ['', '', ...ackTypes] : []),
  ].join('|');
  const text = error ? error.text.slice(0, 200) : '';
  const segments = [msh, ['MSA', code, e(header?.controlId), e(text)].join('|').replace(/\|+$/, '')];
  if (error) {
    const name = ERROR_NAMES[error.code] ?? 'Application error';
    if (versionAtLeast(version, 2, 5)) {
      segments.push(['ERR', '', '', `${error.code}^${e(name)}^HL70357`, 'E', '', '', '', e(error.text.slice(0, 1000))].join('|'));
    } else {
      segments.push(`ERR|^^^${error.code}&${e(name)}&HL70357`);
    }
  }
  return `${segments.join('\r')}\r`;
}
