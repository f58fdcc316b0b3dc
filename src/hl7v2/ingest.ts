import { createHash } from 'node:crypto';
import type { Provenance } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import type { InteractionDeps } from '../interactions/types.js';
import type { Hl7MessageRecord, Hl7MessageStore } from '../storage/hl7v2-messages.js';
import { buildAck, type AckCode, type AckError } from './ack.js';
import { MappingContext, MappingError, type CriticalResult } from './maps/context.js';
import { mapAdt, mapMerge } from './maps/adt.js';
import { mapOrder } from './maps/orders.js';
import { mapResult } from './maps/results.js';
import type { MappingTables, MessageTypeRule } from './maps/tables.js';
import { mapVaccination } from './maps/vaccination.js';
import { mapMedicationOrder } from './maps/medication.js';
import { mapAppointment } from './maps/appointment.js';
import { mapDocument } from './maps/document.js';
import { mapCharges } from './maps/charge.js';
import { Hl7ParseError, normalizeSegmentEnds, parseMessage, readHeader } from './parse/er7.js';
import { messageType, type MessageHeader } from './parse/message.js';

export interface IngestResult {
  ack: string;
  code: AckCode;
  /** hl7_message.id */
  messageId: string;
  /** A retransmission of a message already answered: nothing was written, the same ACK is sent. */
  duplicate: boolean;
}

export interface IngestDeps {
  interactions: InteractionDeps;
  messages: Hl7MessageStore;
  tables: MappingTables;
  log: (message: string, error?: unknown) => void;
}

/** The code behind each `mapper` name of conformance/hl7v2/message-types.json. */
const MAPPERS: Record<MessageTypeRule['mapper'], (ctx: MappingContext, rule: MessageTypeRule) => Promise<void>> = {
  result: mapResult,
  order: mapOrder,
  adt: (ctx, rule) => mapAdt(ctx, rule.encounter ?? 'none'),
  merge: mapMerge,
  vaccination: mapVaccination,
  'medication-order': mapMedicationOrder,
  appointment: mapAppointment,
  document: mapDocument,
  charge: mapCharges,
};

/** Pending messages mapped per batch at start-up. */
const RECOVERY_BATCH = 100;

/**
 * HL7 v2 ingest, whatever the transport: store the raw message (before anything else, so an
 * acknowledged message is never lost), recognise retransmissions, parse, map in one database
 * transaction together with the message's new status, and answer with an original-mode ACK.
 */
/** Receives critical results after their message committed (the subscriptions issue notifies from here). */
export type CriticalResultListener = (event: CriticalResult & { messageId: string }) => Promise<void> | void;

export class Hl7Ingest {
  private readonly criticalListeners: CriticalResultListener[] = [];
  /** Messages being mapped by this process: a retransmission arriving meanwhile (on another
   * connection) waits for the same outcome instead of mapping the message a second time. */
  private readonly inFlight = new Map<string, Promise<Omit<IngestResult, 'duplicate'>>>();

  /** Called once per critical result newly written (a retransmission or an unchanged reprocess raises none). */
  onCriticalResult(listener: CriticalResultListener): void {
    this.criticalListeners.push(listener);
  }

  constructor(private readonly deps: IngestDeps) {
    for (const [type, rule] of Object.entries(deps.tables.messageTypes)) {
      if (!Object.hasOwn(MAPPERS, rule.mapper)) throw new Error(`conformance/hl7v2/message-types.json: ${type} names unknown mapper "${rule.mapper}"`);
    }
  }

  async receive(raw: string, transport: 'mllp' | 'http'): Promise<IngestResult> {
    // PostgreSQL text cannot hold NUL; such a message is kept (marked) and rejected.
    const text = raw.includes('\0') ? raw.replace(/\0/g, '\uFFFD') : raw;
    let header: MessageHeader | undefined;
    try {
      header = readHeader(text);
    } catch {
      header = undefined;
    }
    const { record, duplicate } = await this.deps.messages.insert({
      transport,
      sendingApplication: header?.sendingApplication ?? '',
      sendingFacility: header?.sendingFacility ?? '',
      controlId: header?.controlId ?? '',
      messageType: header ? messageType(header) : '',
      version: header?.version ?? '',
      contentHash: contentHash(text),
      raw: text,
    });
    if (duplicate && record.ack && record.status !== 'received') {
      return { ack: record.ack, code: ackCodeOf(record.status), messageId: record.id, duplicate: true };
    }
    const running = this.inFlight.get(record.id);
    if (running) return { ...(await running), duplicate: true };
    const outcome =
      text !== raw ? this.reject(record, header, { code: '102', text: 'the message contains NUL characters' }) : this.process(record);
    this.inFlight.set(record.id, outcome);
    try {
      return { ...(await outcome), duplicate };
    } finally {
      this.inFlight.delete(record.id);
    }
  }

  /** Maps a stored message again (after a mapping fix): the admin operation. */
  async reprocess(id: string): Promise<IngestResult | undefined> {
    const record = await this.deps.messages.get(id);
    if (!record) return undefined;
    return { ...(await this.process(record)), duplicate: false };
  }

  /** Maps messages stored but never mapped (the process stopped between receipt and mapping). */
  async recoverPending(): Promise<number> {
    let done = 0;
    for (;;) {
      const ids = await this.deps.messages.pendingIds(RECOVERY_BATCH);
      if (ids.length === 0) return done;
      for (const id of ids) {
        const record = await this.deps.messages.get(id);
        if (record?.status === 'received') {
          await this.process(record);
          done++;
        }
      }
    }
  }

  /**
   * A frame cut off for its size: recorded as rejected with its first bytes (the rest never
   * arrived whole) and answered AR, named from those bytes when they hold an MSH.
   */
  async rejectOversized(head: Buffer, limit: number): Promise<string> {
    const text = head.toString('utf8').replace(/\0/g, '\uFFFD');
    let header: MessageHeader | undefined;
    try {
      header = readHeader(text);
    } catch {
      header = undefined;
    }
    const error: AckError = { code: '207', text: `the message exceeds the ${limit} byte limit and was not accepted (only its first ${head.length} bytes are kept)` };
    const { record, duplicate } = await this.deps.messages.insert({
      transport: 'mllp',
      sendingApplication: header?.sendingApplication ?? '',
      sendingFacility: header?.sendingFacility ?? '',
      controlId: header?.controlId ?? '',
      messageType: header ? messageType(header) : '',
      version: header?.version ?? '',
      contentHash: `oversized:${contentHash(text)}`,
      raw: text,
    });
    if (duplicate && record.ack) return record.ack;
    return (await this.reject(record, header, error)).ack;
  }

  private async process(record: Hl7MessageRecord): Promise<Omit<IngestResult, 'duplicate'>> {
    let header: MessageHeader | undefined;
    try {
      const message = parseMessage(record.raw);
      header = message.header;
      const type = messageType(header);
      const rule = this.deps.tables.messageTypes[type];
      if (!rule) {
        const knownCode = Object.keys(this.deps.tables.messageTypes).some((k) => k.startsWith(`${header?.messageCode}^`));
        return this.reject(record, header, {
          code: knownCode ? '201' : '200',
          text: knownCode ? `event ${header.triggerEvent || '(none)'} of ${header.messageCode} is not supported` : `message type ${type} is not supported`,
        });
      }
      const ack = buildAck(header, 'AA');
      const { store } = this.deps.interactions;
      const critical = await store.transaction(async (tx) => {
        const ctx = new MappingContext(this.deps.interactions, tx, this.deps.tables, message, record.id);
        await MAPPERS[rule.mapper](ctx, rule);
        const written = [...ctx.written.values()];
        const changed = written.filter((w) => w.changed);
        if (changed.length) {
          const provenance: Provenance & { id: string } = {
            resourceType: 'Provenance',
            id: `hl7v2-${record.id}`,
            target: changed.map((w) => ({ reference: `${w.resourceType}/${w.id}/_history/${w.versionId}` })),
            recorded: new Date().toISOString(),
            activity: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation', code: 'UPDATE' }] },
            agent: [{ who: { display: `HL7 v2 sender ${record.sendingApplication || '(unnamed)'} ${record.sendingFacility}`.trim() } }],
            entity: [
              {
                role: 'source',
                what: {
                  identifier: { system: ctx.system('message'), value: record.id },
                  display: `HL7 v2 ${type} message ${record.controlId || '(no MSH-10)'}`,
                },
              },
            ],
          };
          await ctx.put(provenance);
        }
        const refs = written.map((w) => `${w.resourceType}/${w.id}/_history/${w.versionId}`);
        await this.deps.messages.finish(record.id, { status: 'processed', ack, resources: refs }, await tx.executor());
        return ctx.critical;
      });
      await this.announceCritical(critical, record.id);
      return { ack, code: 'AA', messageId: record.id };
    } catch (e) {
      if (e instanceof Hl7ParseError) return this.reject(record, header, { code: e.code, text: e.message });
      const error: AckError =
        e instanceof MappingError
          ? { code: e.code, text: e.message }
          : e instanceof FhirError
            ? { code: '207', text: `the mapped resources were refused: ${e.message}` }
            : { code: '207', text: 'internal error while mapping the message' };
      if (!(e instanceof MappingError) && !(e instanceof FhirError)) this.deps.log(`HL7 v2 message ${record.id} failed to map`, e);
      const ack = buildAck(header ?? safeHeader(record.raw), 'AE', error);
      await this.deps.messages.finish(record.id, { status: 'error', ack, error: error.text });
      return { ack, code: 'AE', messageId: record.id };
    }
  }

  private async announceCritical(results: CriticalResult[], messageId: string): Promise<void> {
    for (const result of results) {
      for (const listener of this.criticalListeners) {
        try {
          await listener({ ...result, messageId });
        } catch (e) {
          // The message is stored and acknowledged; a failing listener owns its retries.
          this.deps.log(`critical result listener failed for HL7 v2 message ${messageId}`, e);
        }
      }
    }
  }

  private async reject(record: Hl7MessageRecord, header: MessageHeader | undefined, error: AckError): Promise<Omit<IngestResult, 'duplicate'>> {
    const ack = buildAck(header ?? safeHeader(record.raw), 'AR', error);
    await this.deps.messages.finish(record.id, { status: 'rejected', ack, error: error.text });
    return { ack, code: 'AR', messageId: record.id };
  }
}

function safeHeader(raw: string): MessageHeader | undefined {
  try {
    return readHeader(raw);
  } catch {
    return undefined;
  }
}

function ackCodeOf(status: string): AckCode {
  return status === 'processed' ? 'AA' : status === 'error' ? 'AE' : 'AR';
}

/**
 * What makes two receipts the same message: the text with segment ends normalised and MSH-7
 * (date/time of message, which some senders renew on every retry) left out.
 */
export function contentHash(text: string): string {
  const normalized = normalizeSegmentEnds(text);
  const end = normalized.indexOf('\r');
  const first = end < 0 ? normalized : normalized.slice(0, end);
  const separator = first.charAt(3);
  const fields = separator ? first.split(separator) : [first];
  if (fields.length > 6) fields[6] = '';
  return createHash('sha256').update(fields.join(separator)).update(end < 0 ? '' : normalized.slice(end)).digest('hex');
}
