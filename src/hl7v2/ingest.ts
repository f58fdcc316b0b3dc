import { createHash } from 'node:crypto';
import type { Provenance } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import type { InteractionDeps } from '../interactions/types.js';
import type { Hl7MessageRecord, Hl7MessageStore, NewHl7Message } from '../storage/hl7v2-messages.js';
import { buildAck, type AckCode, type AckError, type CommitAckCode } from './ack.js';
import { MappingContext, MappingError, type CriticalResult, type Lookup } from './maps/context.js';
import { mapAdt, mapMerge } from './maps/adt.js';
import { mapOrder } from './maps/orders.js';
import { mapResult, newSpecimens, resultLookups } from './maps/results.js';
import { expectSpecimens } from '../workflows/lab/orders.js';
import type { MappingTables, MessageTypeRule } from './maps/tables.js';
import { mapVaccination } from './maps/vaccination.js';
import { mapMedicationOrder } from './maps/medication.js';
import { mapAppointment } from './maps/appointment.js';
import { mapDocument } from './maps/document.js';
import { mapCharges } from './maps/charge.js';
import { Hl7ParseError, normalizeSegmentEnds, parseMessage, readHeader } from './parse/er7.js';
import { ReceiptBatcher } from './receipt-batcher.js';
import { Pacer } from './pacing.js';
import { buildBatchAck, splitBatch } from './batch.js';
import { messageType, type Hl7Message, type MessageHeader } from './parse/message.js';

export interface IngestResult {
  ack: string;
  /** AA / AE / AR; CR for a message refused in enhanced mode (its stored answer is the commit reject). */
  code: AckCode | 'CR';
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
  /** ORU^R01 messages mapped in one transaction at most (default 32; 1: each alone). */
  mappingBatch?: number;
  /**
   * HL7_ACK_ON_RECEIPT: original-mode senders over MLLP get their AA once the message is durably
   * stored and readable, not once mapped (store and forward, as interface engines offer it for
   * senders that cannot do enhanced mode); a later mapping failure is kept as `error` for
   * reprocessing and answered AE to a retransmission.
   */
  ackOnReceipt?: boolean;
  /** Acknowledged messages kept parsed in memory for mapping, at most (default 128); past it they wait unparsed (see `Spilled`). */
  mappingBacklog?: number;
  /** HL7_MAX_QUEUED: acknowledged messages not mapped yet, at most (default 100,000); past it a receipt waits for the mapping. */
  maxQueued?: number;
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

/** Mappers whose look-ups are known before mapping: their messages can be mapped in batches. */
const LOOKUPS: Partial<Record<MessageTypeRule['mapper'], (ctx: MappingContext) => Lookup[]>> = {
  result: (ctx) => resultLookups(ctx),
};

/** Mapping transactions of batched messages running at once. */
const MAPPING_BATCHES = 2;

type Outcome = Omit<IngestResult, 'duplicate'>;

/** A stored, parsed message with the mapping its type names. */
interface Prepared {
  record: Hl7MessageRecord;
  message: Hl7Message;
  rule: MessageTypeRule;
  /** MSH-9 as `code^trigger` */
  type: string;
  /** Received in enhanced mode over MLLP: its ACK is an application ACK (MSH-15/16 NE). */
  enhanced: boolean;
  /**
   * The ordered stream the message came in (an MLLP connection in enhanced mode, a batch):
   * mapped after the stream's earlier messages, since nobody waits for each one's ACK there.
   * undefined: its sender waits for each ACK, which orders its messages already.
   */
  stream?: string;
}

interface Queued {
  item: Prepared;
  resolve: (outcome: Outcome) => void;
  reject: (e: unknown) => void;
}

/** Pending messages mapped per batch at start-up. */
const RECOVERY_BATCH = 100;

/**
 * Messages acknowledged on receipt and kept parsed in memory for mapping, at most. Past it they
 * are acknowledged all the same and wait, unparsed, in the database (`Spilled`): a sender
 * faster than the mapping is answered at the rate the messages are stored, and memory holds
 * only their ids.
 */
const MAPPING_BACKLOG = 128;

/** A spilled message left stored at shutdown: the next start maps it (not an error to log). */
class MappedAtNextStart extends Error {
  constructor(id: string) {
    super(`HL7 v2 message ${id} is left for the next start to map`);
  }
}

/** Acknowledged messages not mapped yet, at most (HL7_MAX_QUEUED): past it a receipt waits. */
const MAX_QUEUED = 100_000;

/**
 * A message acknowledged on receipt (stored, CA / AA sent) while the mapping backlog was full:
 * only its id is kept; it is read back, parsed and mapped, in the order received, once the
 * backlog has room. Its header was checked at receipt (an unsupported type is refused there);
 * a body that then fails to parse is answered AR in the application ACK, not CR.
 */
interface Spilled {
  id: string;
  stream: string;
  enhanced: boolean;
  /** Settles with the mapping's outcome (enhanced mode's application ACK waits for it). */
  outcome: Promise<Outcome>;
  resolve: (outcome: Outcome) => void;
  reject: (e: unknown) => void;
}

/** What MLLP sends for one received message (`accept`). */
export interface Acceptance {
  /** Original mode: the ACK. Enhanced mode: the commit ACK (CA / CE / CR) when MSH-15 asks for it. */
  immediate?: string;
  /** Enhanced mode: the application ACK (AA / AE), once mapped, when MSH-16 asks for it; undefined: none. */
  application?: Promise<string | undefined>;
  mode: 'original' | 'enhanced';
  /** hl7_message.id (absent when the message could not be stored: CE). */
  messageId?: string;
}

/** The answer to a message whose raw row could not be committed (CE, or AE in original mode). */
const NOT_STORED: AckError = { code: '207', text: 'the message could not be stored; send it again' };

/** MSH-15 or MSH-16 valued: enhanced acknowledgement mode (v2.5.1 §2.9.3); both empty: original mode. */
export function isEnhanced(header: Pick<MessageHeader, 'acceptAckType' | 'applicationAckType'> | undefined): boolean {
  return !!header && (header.acceptAckType !== '' || header.applicationAckType !== '');
}

/**
 * Whether an acknowledgement with `code` goes out under a table 0155 condition: AL always, NE
 * never, ER only for errors and rejections, SU only for success. In enhanced mode a field left
 * empty (the other one valued) counts as AL: the sender gets an answer rather than silence.
 */
export function ackWanted(condition: string, code: string): boolean {
  if (condition === 'NE') return false;
  if (condition === 'ER') return code !== 'AA' && code !== 'CA';
  if (condition === 'SU') return code === 'AA' || code === 'CA';
  return true;
}

/** MSH-15 / MSH-16 of our enhanced-mode application ACKs: the sender answers them with nothing. */
const APPLICATION_ACK_TYPES: [string, string] = ['NE', 'NE'];

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
  private readonly inFlight = new Map<string, Promise<Outcome>>();
  /** Raw rows of messages received together are committed together (see receipt-batcher.ts). */
  private readonly receipts: ReceiptBatcher;
  /** Received messages waiting for the next mapping batch (see runBatch). */
  private readonly mappingQueue: Queued[] = [];
  private batchesRunning = 0;
  /** A startBatches call is scheduled (enqueue). */
  private startScheduled = false;
  /** Ordered streams with messages in a running batch: their next ones wait (takeBatch). */
  private readonly runningSenders = new Set<string>();
  /** Numbers the batches received, each an ordered stream of its own. */
  private batchCount = 0;
  /** Messages acknowledged on receipt, parsed and in memory, not mapped yet (at most mappingBacklog, give or take the receipts under way). */
  private backlog = 0;
  private readonly mappingBacklog: number;
  private readonly maxQueued: number;
  /**
   * Messages acknowledged past the backlog, in the order received (`Spilled`). The drain takes
   * them from the front 100 at a time: a splice moves at most HL7_MAX_QUEUED pointers, a
   * fraction of a millisecond per 100 messages mapped.
   */
  private readonly spilled: Spilled[] = [];
  private readonly spilledById = new Map<string, Spilled>();
  /** Spilled messages taken by the drain and not yet in the mapping queue: later receipts still spill behind them. */
  private draining = 0;
  private drainRunning = false;
  /** Receipts waiting because maxQueued messages are acknowledged and not mapped. */
  private queueWaiters: Array<() => void> = [];
  /** Waiting for the parsed backlog to be mapped (backlogMapped). */
  private idleWaiters: Array<() => void> = [];
  /** Messages spilled since start (the queue's figures). */
  private spilledTotal = 0;
  /** An administrator paused the mapping: messages are still received and acknowledged. */
  private paused = false;
  /** Shutting down: spilled messages are left to the next start (releaseSpilled). */
  private closing = false;
  /** Mapping gives the event loop back to receipts every few milliseconds of CPU (pacing.ts). */
  private readonly pacer = new Pacer();
  private readonly pace = () => this.pacer.pace();

  /** Called once per critical result newly written (a retransmission or an unchanged reprocess raises none). */
  onCriticalResult(listener: CriticalResultListener): void {
    this.criticalListeners.push(listener);
  }

  constructor(private readonly deps: IngestDeps) {
    this.receipts = new ReceiptBatcher(deps.messages);
    this.mappingBacklog = Math.max(1, deps.mappingBacklog ?? MAPPING_BACKLOG);
    this.maxQueued = Math.max(this.mappingBacklog, deps.maxQueued ?? MAX_QUEUED);
    for (const [type, rule] of Object.entries(deps.tables.messageTypes)) {
      if (!Object.hasOwn(MAPPERS, rule.mapper)) throw new Error(`conformance/hl7v2/message-types.json: ${type} names unknown mapper "${rule.mapper}"`);
    }
  }

  /**
   * A message as MLLP answers it. Original mode (MSH-15 and MSH-16 empty): `receive`, the ACK
   * once mapped. Enhanced mode: the commit ACK once the raw message is durably stored (CA), or
   * refused (CR: unreadable, unsupported type) or not storable (CE: send it again); the mapping
   * goes on after it, and its application ACK (AA / AE) follows when MSH-16 asks for it.
   */
  async accept(raw: string, transport: 'mllp' | 'http', stream = `${transport}:default`): Promise<Acceptance> {
    const header = raw.includes('\0') ? undefined : safeHeader(raw);
    const enhanced = isEnhanced(header);
    if (!header || (!enhanced && !(this.deps.ackOnReceipt && transport === 'mllp'))) {
      const result = await this.receive(raw, transport);
      return { immediate: result.ack, mode: 'original', messageId: result.messageId };
    }
    // Answered before mapping: once there is room in the queue, the receipt is under way, and
    // mapping gives way to it (pacing.ts) until it is answered.
    await this.roomInQueue();
    this.pacer.receiptStarted();
    try {
      return enhanced ? await this.acceptEnhanced(raw, header, transport, stream) : await this.acceptOnReceipt(raw, header, transport, stream);
    } finally {
      this.pacer.receiptDone();
    }
  }

  /** Enhanced mode: the commit ACK on durable receipt, the application ACK once mapped. */
  private async acceptEnhanced(raw: string, header: MessageHeader, transport: 'mllp' | 'http', stream: string): Promise<Acceptance> {
    const commit = (code: CommitAckCode, error?: AckError) => (ackWanted(header.acceptAckType, code) ? buildAck(header, code, error) : undefined);
    const appAck = (outcome: Promise<Outcome>) =>
      outcome.then(
        (o) => (ackWanted(header.applicationAckType, o.code) ? o.ack : undefined),
        (e: unknown) => {
          // Committed (CA sent): the message stays 'received' and is mapped at the next start.
          if (!(e instanceof MappedAtNextStart)) this.deps.log('HL7 v2 message could not be mapped after its commit ACK', e);
          return undefined;
        },
      );
    const receipt = await this.receiveForLater(raw, header, transport);
    if (!receipt) return { immediate: commit('CE', NOT_STORED), mode: 'enhanced' };
    const { record, duplicate } = receipt;
    const base = { mode: 'enhanced' as const, messageId: record.id };
    if (duplicate && record.ack && record.status !== 'received') {
      // A retransmission of a message already handled: the same answers, nothing written.
      if (record.status === 'rejected') return { ...base, immediate: ackWanted(header.acceptAckType, 'CR') ? record.ack : undefined };
      return { ...base, immediate: commit('CA'), application: appAck(Promise.resolve({ ack: record.ack, code: ackCodeOf(record.status), messageId: record.id })) };
    }
    const running = this.inFlight.get(record.id) ?? this.spilledById.get(record.id)?.outcome;
    if (running) return { ...base, immediate: commit('CA'), application: appAck(running) };
    if (this.mustSpill()) {
      const refused = await this.refuseByHeader(record, header, 'commit');
      if (refused) return { ...base, immediate: ackWanted(header.acceptAckType, refused.code) ? refused.ack : undefined };
      return { ...base, immediate: commit('CA'), application: appAck(this.spill(record.id, stream, true)) };
    }
    const prepared = await this.prepare(record, true, stream);
    if (!('rule' in prepared)) return { ...base, immediate: ackWanted(header.acceptAckType, prepared.code) ? prepared.ack : undefined };
    return { ...base, immediate: commit('CA'), application: appAck(this.mapInBackground(prepared, record.id)) };
  }

  /**
   * Original mode with HL7_ACK_ON_RECEIPT: AA once stored and readable (parsed, a mapping found;
   * else AR at once as usual), the mapping after it in the sender's ordered stream.
   */
  private async acceptOnReceipt(raw: string, header: MessageHeader, transport: 'mllp' | 'http', stream: string): Promise<Acceptance> {
    const receipt = await this.receiveForLater(raw, header, transport);
    if (!receipt) return { immediate: buildAck(header, 'AE', NOT_STORED), mode: 'original' };
    const { record, duplicate } = receipt;
    const base = { mode: 'original' as const, messageId: record.id };
    // A retransmission of a message already mapped (or refused): its stored answer.
    if (duplicate && record.ack && record.status !== 'received') return { ...base, immediate: record.ack };
    if (this.inFlight.has(record.id) || this.spilledById.has(record.id)) return { ...base, immediate: buildAck(header, 'AA') };
    // Acknowledged: a message whose mapping fails stays 'received' and is mapped at the next start.
    const logFailure = (e: unknown) => {
      if (!(e instanceof MappedAtNextStart)) this.deps.log('HL7 v2 message could not be mapped after its receipt ACK', e);
    };
    if (this.mustSpill()) {
      const refused = await this.refuseByHeader(record, header, 'original');
      if (refused) return { ...base, immediate: refused.ack };
      void this.spill(record.id, stream, false).catch(logFailure);
      return { ...base, immediate: buildAck(header, 'AA') };
    }
    const prepared = await this.prepare(record, false, stream);
    if (!('rule' in prepared)) return { ...base, immediate: prepared.ack };
    void this.mapInBackground(prepared, record.id).catch(logFailure);
    return { ...base, immediate: buildAck(header, 'AA') };
  }

  /**
   * The raw row of a message to be acknowledged on receipt (the caller waited for room in the
   * mapping backlog); undefined (logged) when it could not be stored: the sender is to send it again.
   */
  private async receiveForLater(raw: string, header: MessageHeader, transport: 'mllp' | 'http'): Promise<{ record: Hl7MessageRecord; duplicate: boolean } | undefined> {
    try {
      return await this.receipts.store(newMessage(raw, header, transport));
    } catch (e) {
      this.deps.log('HL7 v2 message could not be stored', e);
      return undefined;
    }
  }

  /** Maps an acknowledged message in its sender's ordered stream, counted in the backlog until done. */
  private mapInBackground(prepared: Prepared, id: string): Promise<Outcome> {
    const outcome = this.map(prepared, true);
    this.inFlight.set(id, outcome);
    this.backlog++;
    const settled = () => {
      this.inFlight.delete(id);
      this.backlog--;
      if (this.backlog === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      this.wakeQueueWaiters();
      this.scheduleDrain();
    };
    outcome.then(settled, settled);
    return outcome;
  }

  /** The mapping queue's state (admin: GET /hl7v2/queue). */
  queueState(): { mappingPaused: boolean; parsed: number; spilled: number; spilledSinceStart: number; waitingReceipts: number; mappingBacklog: number; maxQueued: number } {
    return {
      mappingPaused: this.paused,
      parsed: this.backlog,
      spilled: this.waiting,
      spilledSinceStart: this.spilledTotal,
      waitingReceipts: this.queueWaiters.length,
      mappingBacklog: this.mappingBacklog,
      maxQueued: this.maxQueued,
    };
  }

  /**
   * Stops starting mapping transactions (those running finish), for every message: messages
   * are still stored, and those acknowledged on receipt (enhanced mode, HL7_ACK_ON_RECEIPT) are
   * answered, up to HL7_MAX_QUEUED; all are mapped in the order received once resumed.
   * Original-mode senders answered after mapping wait for their ACK meanwhile, and so does a
   * reprocess. Not kept across a restart (every start maps).
   */
  pauseMapping(): void {
    this.paused = true;
  }

  resumeMapping(): void {
    this.paused = false;
    this.startBatches();
  }

  /**
   * Shutdown: spilled messages are not read back any more; they stay stored as 'received' and
   * the next start maps them (their application ACKs are then kept with them, replayed on a
   * retransmission). Messages already parsed in the backlog are still mapped, paused or not.
   */
  releaseSpilled(): void {
    this.closing = true;
    // A paused mapping resumes for the parsed backlog: its senders' connections wait for it.
    this.resumeMapping();
    const left = this.spilled.splice(0);
    this.spilledById.clear();
    for (const entry of left) entry.reject(new MappedAtNextStart(entry.id));
    this.wakeQueueWaiters();
  }

  /** Resolves once no acknowledged message is being mapped (shutdown, after releaseSpilled). */
  async backlogMapped(): Promise<void> {
    while (this.backlog > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Spilled messages not yet in the mapping queue: waiting, or being read back by the drain. */
  private get waiting(): number {
    return this.spilled.length + this.draining;
  }

  /** Messages acknowledged and not mapped yet: the parsed backlog and the spilled ones. */
  private get queued(): number {
    return this.backlog + this.waiting;
  }

  /** Waits while maxQueued messages are acknowledged and not mapped yet. */
  private async roomInQueue(): Promise<void> {
    while (!this.closing && this.queued >= this.maxQueued) await new Promise<void>((resolve) => this.queueWaiters.push(resolve));
  }

  private wakeQueueWaiters(): void {
    if (this.queueWaiters.length && (this.closing || this.queued < this.maxQueued)) for (const wake of this.queueWaiters.splice(0)) wake();
  }

  /**
   * Whether a receipt goes to the spilled messages: when the parsed backlog is full, and while
   * earlier messages are still spilled or being drained (a sender's messages are mapped in
   * the order received, and its next message must not pass its spilled one).
   */
  private mustSpill(): boolean {
    return this.backlog >= this.mappingBacklog || this.waiting > 0;
  }

  /** Keeps a stored message's id for mapping later (`Spilled`); resolves with its mapping's outcome. */
  private spill(id: string, stream: string, enhanced: boolean): Promise<Outcome> {
    let resolve!: (outcome: Outcome) => void;
    let reject!: (e: unknown) => void;
    const outcome = new Promise<Outcome>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const entry: Spilled = { id, stream, enhanced, outcome, resolve, reject };
    if (this.closing) {
      reject(new MappedAtNextStart(id));
      return outcome;
    }
    this.spilledTotal++;
    this.spilled.push(entry);
    this.spilledById.set(id, entry);
    this.scheduleDrain();
    return outcome;
  }

  /** Starts the drain of spilled messages once the backlog is down to half (a read back fills it again). */
  private scheduleDrain(): void {
    if (this.drainRunning || this.spilled.length === 0) return;
    if (this.backlog > this.mappingBacklog / 2) return;
    this.drainRunning = true;
    void this.drain().finally(() => {
      this.drainRunning = false;
      this.scheduleDrain();
    });
  }

  /**
   * Reads spilled messages back, in the order received, as the backlog has room, and hands
   * each to the mapping (parsed now). A read that fails (database down) is tried again a
   * second later; the messages are stored in any case, and a restart maps them.
   */
  private async drain(): Promise<void> {
    while (!this.closing && this.spilled.length > 0 && this.backlog < this.mappingBacklog) {
      const taken = this.spilled.splice(0, Math.min(RECOVERY_BATCH, this.mappingBacklog - this.backlog));
      this.draining += taken.length;
      try {
        let records: Map<string, Hl7MessageRecord>;
        try {
          records = await this.deps.messages.getMany(taken.map((t) => t.id));
        } catch (e) {
          // Put back in front (spill only appends meanwhile), tried again in a second.
          this.spilled.unshift(...taken);
          this.deps.log('HL7 v2 spilled messages could not be read back; trying again in a second', e);
          await new Promise((resolve) => setTimeout(resolve, 1000));
          continue;
        }
        for (const entry of taken) {
          this.spilledById.delete(entry.id);
          try {
            const record = records.get(entry.id);
            // Handled meanwhile (an admin's reprocess) or gone: its stored answer, if any.
            if (!record || record.status !== 'received') {
              if (record?.ack) entry.resolve({ ack: record.ack, code: ackCodeOf(record.status), messageId: record.id });
              else entry.reject(new Error(`HL7 v2 message ${entry.id} is no longer stored`));
              continue;
            }
            // Parsing is mapping work: it gives way to receipts like the rest of it (pacing.ts).
            await this.pace();
            const prepared = await this.prepare(record, entry.enhanced, entry.stream, true);
            if (!('rule' in prepared)) entry.resolve(prepared);
            else this.mapInBackground(prepared, record.id).then(entry.resolve, entry.reject);
          } catch (e) {
            entry.reject(e);
          }
        }
      } finally {
        this.draining -= taken.length;
        this.wakeQueueWaiters();
      }
    }
  }

  /**
   * A spilled receipt's check on its header alone: an unsupported message type is refused at
   * once (CR, or AR in original mode), as `prepare` would; undefined when the type is mapped.
   */
  private async refuseByHeader(record: Hl7MessageRecord, header: MessageHeader, answer: 'original' | 'commit'): Promise<Outcome | undefined> {
    const error = this.unsupported(header);
    return error ? this.reject(record, header, error, answer) : undefined;
  }

  /** Why a message of this header's type is not mapped (table 0357 code 200 / 201); undefined when it is. */
  private unsupported(header: MessageHeader): AckError | undefined {
    const type = messageType(header);
    if (this.deps.tables.messageTypes[type]) return undefined;
    const knownCode = Object.keys(this.deps.tables.messageTypes).some((k) => k.startsWith(`${header.messageCode}^`));
    return {
      code: knownCode ? '201' : '200',
      text: knownCode ? `event ${header.triggerEvent || '(none)'} of ${header.messageCode} is not supported` : `message type ${type} is not supported`,
    };
  }

  /**
   * One message, original-mode semantics whatever MSH-15/16 say (HTTP, and tests): stored,
   * mapped, answered AA / AE / AR.
   */
  async receive(raw: string, transport: 'mllp' | 'http', stream?: string): Promise<IngestResult> {
    // PostgreSQL text cannot hold NUL; such a message is kept (marked) and rejected.
    const text = raw.includes('\0') ? raw.replace(/\0/g, '\uFFFD') : raw;
    const header = safeHeader(text);
    const { record, duplicate } = await this.receipts.store(newMessage(text, header, transport));
    if (duplicate && record.ack && record.status !== 'received') {
      return { ack: record.ack, code: ackCodeOf(record.status), messageId: record.id, duplicate: true };
    }
    const running = this.inFlight.get(record.id);
    if (running) return { ...(await running), duplicate: true };
    const outcome =
      text !== raw ? this.reject(record, header, { code: '102', text: 'the message contains NUL characters' }) : this.process(record, true, false, stream);
    this.inFlight.set(record.id, outcome);
    try {
      return { ...(await outcome), duplicate };
    } finally {
      this.inFlight.delete(record.id);
    }
  }

  /**
   * An FHS / BHS batch (v2.5.1 §2.10.3): every message in it stored and mapped as if sent alone
   * (original mode, whatever MSH-15/16 say), then one batch acknowledgement listing each
   * message's ACK in order. The messages are received together (one group commit) and mapped in
   * the order of the batch: each goes through the ordered queue, which it reaches in batch order
   * because every receipt resolves in that order and takes the same steps to get there.
   */
  async receiveBatch(raw: string, transport: 'mllp' | 'http'): Promise<{ ack: string; results: IngestResult[] }> {
    const batch = splitBatch(raw);
    const stream = `batch:${++this.batchCount}`;
    const results = await Promise.all(batch.messages.map((message) => this.receive(message, transport, stream)));
    return { ack: buildBatchAck(batch, results.map((r) => r.ack)), results };
  }

  /** Maps a stored message again (after a mapping fix): the admin operation. */
  async reprocess(id: string): Promise<IngestResult | undefined> {
    const record = await this.deps.messages.get(id);
    if (!record) return undefined;
    return { ...(await this.process(record, false, record.transport === 'mllp' && isEnhanced(safeHeader(record.raw)))), duplicate: false };
  }

  /**
   * Maps messages stored but never mapped (the process stopped between receipt and mapping):
   * those received before it started, oldest first. Messages this process received meanwhile
   * are its own to map (in flight or spilled), never taken here a second time.
   */
  async recoverPending(): Promise<number> {
    let done = 0;
    const upTo = await this.deps.messages.now();
    let after: { id: string; receivedAt: string } | undefined;
    for (;;) {
      const pending = await this.deps.messages.pendingIds(RECOVERY_BATCH, upTo, after);
      if (pending.length === 0) return done;
      after = pending[pending.length - 1];
      for (const { id } of pending) {
        if (this.inFlight.has(id) || this.spilledById.has(id)) continue;
        const record = await this.deps.messages.get(id);
        if (record?.status === 'received') {
          // A message CA'd in enhanced mode keeps an application ACK as its stored answer. In
          // flight meanwhile: a retransmission waits for this outcome instead of mapping it again.
          const outcome = this.process(record, false, record.transport === 'mllp' && isEnhanced(safeHeader(record.raw)));
          this.inFlight.set(id, outcome);
          try {
            await outcome;
          } finally {
            this.inFlight.delete(id);
          }
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

  /** Parses a stored message and finds its mapping: AR when either fails, else maps it. */
  private async process(record: Hl7MessageRecord, batched = false, enhanced = false, stream?: string): Promise<Outcome> {
    const prepared = await this.prepare(record, enhanced, stream);
    return 'rule' in prepared ? this.map(prepared, batched) : prepared;
  }

  /** Maps a prepared message: with others (a batch) when its type allows, else alone. */
  private map(item: Prepared, batched: boolean): Promise<Outcome> {
    // Enhanced mode: every type through the queue, which keeps each sender's messages in order
    // (its sender no longer waits for one message's mapping before sending the next).
    // Paused (pauseMapping): every message waits in the queue until resumed.
    if (this.paused || (batched && item.stream !== undefined)) return this.enqueue(item);
    return batched && LOOKUPS[item.rule.mapper] && (this.deps.mappingBatch ?? 32) > 1 ? this.enqueue(item) : this.mapOne(item);
  }

  /**
   * Parses a stored message and finds its mapping; when either fails the message is stored as
   * rejected and its answer returned: AR, or in enhanced mode CR (a commit reject).
   */
  private async prepare(record: Hl7MessageRecord, enhanced: boolean, stream?: string, spilled = false): Promise<Prepared | Outcome> {
    // A spilled message's commit ACK (CA) is sent: its refusal goes in the application ACK.
    const refusal = enhanced ? (spilled ? 'after-commit' : 'commit') : 'original';
    let message: Hl7Message;
    try {
      message = parseMessage(record.raw);
    } catch (e) {
      if (e instanceof Hl7ParseError) return this.reject(record, undefined, { code: e.code, text: e.message }, refusal);
      this.deps.log(`HL7 v2 message ${record.id} failed to parse`, e);
      const error: AckError = { code: '207', text: 'internal error while parsing the message' };
      const ack = buildAck(safeHeader(record.raw), 'AE', error, undefined, enhanced ? APPLICATION_ACK_TYPES : undefined);
      await this.deps.messages.finish(record.id, { status: 'error', ack, error: error.text });
      return { ack, code: 'AE', messageId: record.id };
    }
    const header = message.header;
    const type = messageType(header);
    const rule = this.deps.tables.messageTypes[type];
    if (!rule) return this.reject(record, header, this.unsupported(header)!, refusal);
    return { record, message, rule, type, enhanced, stream };
  }

  /** Maps one message in a transaction of its own; a mapping failure is an AE, the message kept as `error`. */
  private async mapOne(item: Prepared): Promise<Outcome> {
    const { record, message } = item;
    try {
      const { ack, critical } = await this.deps.interactions.store.transaction(async (tx) => {
        const ctx = new MappingContext(this.deps.interactions, tx, this.deps.tables, message, record.id, new Map(), this.pace);
        await MAPPERS[item.rule.mapper](ctx, item.rule);
        const done = await this.conclude(ctx, item);
        await this.deps.messages.finish(record.id, { status: 'processed', ack: done.ack, resources: done.resources }, await tx.executor());
        return done;
      });
      await this.announceCritical(critical, record.id);
      return { ack, code: 'AA', messageId: record.id };
    } catch (e) {
      const error: AckError =
        e instanceof MappingError
          ? { code: e.code, text: e.message }
          : e instanceof FhirError
            ? { code: '207', text: `the mapped resources were refused: ${e.message}` }
            : { code: '207', text: 'internal error while mapping the message' };
      if (!(e instanceof MappingError) && !(e instanceof FhirError)) this.deps.log(`HL7 v2 message ${record.id} failed to map`, e);
      const ack = buildAck(message.header, 'AE', error, undefined, item.enhanced ? APPLICATION_ACK_TYPES : undefined);
      await this.deps.messages.finish(record.id, { status: 'error', ack, error: error.text });
      return { ack, code: 'AE', messageId: record.id };
    }
  }

  /** After a message's mapping, in its transaction: the Provenance of what it wrote, its ACK, its outcome. */
  private async conclude(ctx: MappingContext, { record, message, type, enhanced }: Prepared): Promise<{ ack: string; resources: string[]; critical: CriticalResult[] }> {
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
      // A message never mapped before has no Provenance yet: its id is new, chosen by the server,
      // so it is a create ('POST'), which no before-write hook needs to read a replaced version
      // for (a 'PUT' made guardProvenance read it: a flush and a round trip per message).
      if (record.attempts === 0) await ctx.tx.create(provenance, 'POST', provenance.id);
      else await ctx.put(provenance);
    }
    return {
      ack: buildAck(message.header, 'AA', undefined, undefined, enhanced ? APPLICATION_ACK_TYPES : undefined),
      resources: written.map((w) => `${w.resourceType}/${w.id}/_history/${w.versionId}`),
      critical: ctx.critical,
    };
  }

  /**
   * Queues a message for the next mapping batch, starting one when fewer than MAPPING_BATCHES run.
   * The start waits for the end of the current macrotask: the receipts of one group commit all
   * resolve in it, so their messages (parsed on the way) go into one batch together instead of
   * the first one alone and the others in the next.
   */
  private enqueue(item: Prepared): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      this.mappingQueue.push({ item, resolve, reject });
      if (!this.startScheduled) {
        this.startScheduled = true;
        setImmediate(() => {
          this.startScheduled = false;
          this.startBatches();
        });
      }
    });
  }

  private startBatches(): void {
    while (!this.paused && this.batchesRunning < MAPPING_BATCHES && this.mappingQueue.length) {
      const batch = this.takeBatch();
      if (batch.length === 0) return;
      const senders = batch.map((q) => q.item.stream).filter((k) => k !== undefined);
      for (const k of senders) this.runningSenders.add(k);
      this.batchesRunning++;
      void this.runBatch(batch).finally(() => {
        for (const k of senders) this.runningSenders.delete(k);
        this.batchesRunning--;
        this.startBatches();
      });
    }
  }

  /**
   * The next batch, in arrival order: batchable messages (LOOKUPS) together, any other type
   * alone. An enhanced-mode message waits while a batch holding its sender's messages runs,
   * and so do that sender's later ones: a sender's messages are mapped in the order sent.
   */
  private takeBatch(): Queued[] {
    const max = Math.max(1, this.deps.mappingBatch ?? 32);
    const taken: Queued[] = [];
    const blocked = new Set(this.runningSenders);
    for (let i = 0; i < this.mappingQueue.length && taken.length < max; ) {
      const queued = this.mappingQueue[i];
      const sender = queued.item.stream;
      const alone = !LOOKUPS[queued.item.rule.mapper];
      if ((sender !== undefined && blocked.has(sender)) || (alone && taken.length > 0)) {
        if (sender !== undefined) blocked.add(sender);
        i++;
        continue;
      }
      taken.push(queued);
      this.mappingQueue.splice(i, 1);
      if (alone) break;
    }
    return taken;
  }

  /**
   * Maps the messages that arrived while the previous batch was being written, in ONE
   * transaction: one advisory lock statement, one search per resource type and one write
   * statement for all of them, one commit. Each message is still all or nothing (the batch
   * commits whole or not at all) and its status commits with its resources. When any message
   * fails, the batch is rolled back and each message mapped alone, so only the failing one is
   * an AE.
   */
  private async runBatch(batch: Queued[]): Promise<void> {
    if (batch.length === 1) {
      await this.mapOne(batch[0].item).then(batch[0].resolve, batch[0].reject);
      return;
    }
    let done: Array<{ ack: string; resources: string[]; critical: CriticalResult[] }>;
    try {
      done = await this.deps.interactions.store.transaction(async (tx) => {
        const known = new Map<string, string[]>();
        const contexts = batch.map(({ item }) => new MappingContext(this.deps.interactions, tx, this.deps.tables, item.message, item.record.id, known, this.pace));
        await contexts[0].prefetch(contexts.flatMap((ctx, i) => LOOKUPS[batch[i].item.rule.mapper]?.(ctx) ?? []));
        // The batch's new Specimens (distinct: two messages may name one) take their accession
        // numbers in one statement, not one each.
        expectSpecimens(tx, new Set(contexts.flatMap((ctx, i) => (batch[i].item.rule.mapper === 'result' ? newSpecimens(ctx) : []))).size);
        const outcomes = [];
        for (const [i, { item }] of batch.entries()) {
          // Mapping with everything prefetched runs on resolved promises only: without a
          // macrotask turn, a batch of 32 holds the event loop for its whole CPU time, and
          // receipts, commit ACKs and other connections' frames wait behind it.
          if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
          await MAPPERS[item.rule.mapper](contexts[i], item.rule);
          outcomes.push(await this.conclude(contexts[i], item));
        }
        await this.deps.messages.finishMany(
          outcomes.map((o, i) => ({ id: batch[i].item.record.id, status: 'processed' as const, ack: o.ack, resources: o.resources })),
          await tx.executor(),
        );
        return outcomes;
      });
    } catch {
      for (const { item, resolve, reject } of batch) await this.mapOne(item).then(resolve, reject);
      return;
    }
    for (const [i, { item, resolve }] of batch.entries()) {
      await this.announceCritical(done[i].critical, item.record.id);
      resolve({ ack: done[i].ack, code: 'AA', messageId: item.record.id });
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

  /**
   * Stores a message as rejected with its answer: AR (original mode), CR (enhanced mode, at
   * commit), or AR as the application ACK of a message whose CA was already sent (spilled).
   */
  private async reject(record: Hl7MessageRecord, header: MessageHeader | undefined, error: AckError, answer: 'original' | 'commit' | 'after-commit' = 'original'): Promise<Outcome> {
    const code = answer === 'commit' ? 'CR' : 'AR';
    const ack = buildAck(header ?? safeHeader(record.raw), code, error, undefined, answer === 'after-commit' ? APPLICATION_ACK_TYPES : undefined);
    await this.deps.messages.finish(record.id, { status: 'rejected', ack, error: error.text });
    return { ack, code, messageId: record.id };
  }
}

/** The row of a received message; `text` already has any NUL replaced. */
function newMessage(text: string, header: MessageHeader | undefined, transport: 'mllp' | 'http'): NewHl7Message {
  return {
    transport,
    sendingApplication: header?.sendingApplication ?? '',
    sendingFacility: header?.sendingFacility ?? '',
    controlId: header?.controlId ?? '',
    messageType: header ? messageType(header) : '',
    version: header?.version ?? '',
    contentHash: contentHash(text),
    raw: text,
  };
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
