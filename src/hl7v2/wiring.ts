import type { FastifyInstance } from 'fastify';
import type { TokenService } from '../auth/token-service.js';
import type { InteractionDeps } from '../interactions/types.js';
import type { Db } from '../storage/db.js';
import { Hl7MessageStore } from '../storage/hl7v2-messages.js';
import { isBatch } from './batch.js';
import { Hl7Ingest } from './ingest.js';
import type { MappingTables } from './maps/tables.js';
import { MllpServer } from './mllp/server.js';
import { Hl7Retention } from './retention.js';
import { hl7v2Routes } from './routes.js';

export interface Hl7v2Options {
  interactions: InteractionDeps;
  db: Db;
  /** The mapping tables (conformance/hl7v2, `loadMappingTables`). */
  tables: MappingTables;
  maxMessageBytes: number;
  idleTimeoutMs: number;
  /** MLLP over TLS (config TLS_CERT_FILE / TLS_KEY_FILE with HL7_MLLP_TLS on). */
  tls?: { key: Buffer; cert: Buffer; minVersion: 'TLSv1.2' | 'TLSv1.3' };
  /** ORU^R01 messages mapped in one transaction at most (HL7_MAPPING_BATCH; 1: each alone). */
  mappingBatch?: number;
  /** Original-mode AA on durable receipt (HL7_ACK_ON_RECEIPT; see IngestDeps.ackOnReceipt). */
  ackOnReceipt?: boolean;
  /** HL7_MAX_QUEUED (see IngestDeps.maxQueued). */
  maxQueued?: number;
  /** HL7_MAPPING_BACKLOG (see IngestDeps.mappingBacklog). */
  mappingBacklog?: number;
  /** hl7_message retention in days (HL7_MESSAGE_RETENTION_DAYS, HL7_FAILED_MESSAGE_RETENTION_DAYS); 0: kept. */
  retention?: { processedDays: number; failedDays: number };
  log: (message: string, error?: unknown) => void;
}

/** The HL7 v2 channel: ingest service, MLLP listener (not listening until `listen`), HTTP routes. */
export interface Hl7v2Components {
  ingest: Hl7Ingest;
  messages: Hl7MessageStore;
  mllp: MllpServer;
  retention: Hl7Retention;
  /** Starts the MLLP listener (port 0: a free port); resolves to the bound port. */
  listen(port: number, host?: string): Promise<number>;
  /** Registers POST /hl7v2 and the admin routes. */
  routes(http: FastifyInstance, tokens: TokenService): Promise<void>;
  /** Starts mapping, in the background, messages left 'received' by an earlier run, and the retention purge. */
  startRecovery(): void;
  /** The recovery started at start-up: resolves to how many messages it mapped. */
  readonly recovered: Promise<number>;
  close(): Promise<void>;
}

export function createHl7v2(options: Hl7v2Options): Hl7v2Components {
  const messages = new Hl7MessageStore(options.db);
  const ingest = new Hl7Ingest({ interactions: options.interactions, messages, tables: options.tables, log: options.log, mappingBatch: options.mappingBatch, ackOnReceipt: options.ackOnReceipt, maxQueued: options.maxQueued, mappingBacklog: options.mappingBacklog });
  const mllp = new MllpServer({
    handle: async (body, connection) => {
      const text = decode(body);
      // A batch (FHS / BHS) in one frame: one batch acknowledgement for all its messages.
      if (isBatch(text)) return { reply: (await ingest.receiveBatch(text, 'mllp')).ack };
      const { immediate, application } = await ingest.accept(text, 'mllp', `mllp:${connection}`);
      return { reply: immediate, later: application };
    },
    rejectOversized: (head, limit) => ingest.rejectOversized(head, limit),
    maxMessageBytes: options.maxMessageBytes,
    idleTimeoutMs: options.idleTimeoutMs,
    tls: options.tls,
    log: options.log,
  });
  const retention = new Hl7Retention(messages, { ...(options.retention ?? { processedDays: 0, failedDays: 0 }), log: options.log });
  let recovered: Promise<number> = Promise.resolve(0);
  return {
    ingest,
    messages,
    mllp,
    retention,
    get recovered() {
      return recovered;
    },
    startRecovery() {
      recovered = ingest.recoverPending().catch((e: unknown) => {
        options.log('HL7 v2 recovery of pending messages failed', e);
        return 0;
      });
      retention.start();
    },
    listen: (port, host) => mllp.listen(port, host),
    routes: async (http, tokens) => {
      await http.register(hl7v2Routes, { tokens, ingest, messages, maxMessageBytes: options.maxMessageBytes });
    },
    async close() {
      // Frames being handled are answered; spilled messages are left stored for the next start
      // (mapping them all could take minutes), the parsed backlog is still mapped.
      const closed = mllp.close();
      ingest.releaseSpilled();
      await closed;
      // Messages acknowledged on receipt and parsed: their mapping ends before the database closes.
      await ingest.backlogMapped();
      await recovered;
      await retention.close();
    },
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Message bytes as text: UTF-8, or Latin-1 (ISO 8859-1, common in older v2 feeds) when not valid UTF-8. */
function decode(body: Buffer): string {
  try {
    return utf8.decode(body);
  } catch {
    return body.toString('latin1');
  }
}
