import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors, FhirError } from '../fhir/errors.js';
import type { Permission } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import type { Hl7MessageRecord, Hl7MessageStatus, Hl7MessageStore } from '../storage/hl7v2-messages.js';
import { isBatch } from './batch.js';
import type { Hl7Ingest } from './ingest.js';

/** ER7 media types senders use for HL7 v2 over HTTP; text/plain is accepted too. */
export const ER7_TYPES = ['x-application/hl7-v2+er7', 'application/hl7-v2', 'application/edi-hl7'];
const ACK_TYPE = 'x-application/hl7-v2+er7; charset=utf-8';
const STATUSES: readonly Hl7MessageStatus[] = ['received', 'processed', 'error', 'rejected'];

export interface Hl7RouteDeps {
  tokens: TokenService;
  ingest: Hl7Ingest;
  messages: Hl7MessageStore;
  maxMessageBytes: number;
}

/** A summary of a stored message for the admin list (the raw text only on the single view). */
function summary(r: Hl7MessageRecord) {
  return {
    id: r.id,
    receivedAt: r.receivedAt,
    transport: r.transport,
    status: r.status,
    messageType: r.messageType,
    version: r.version,
    controlId: r.controlId,
    sendingApplication: r.sendingApplication,
    sendingFacility: r.sendingFacility,
    error: r.error,
    resources: r.resources,
    attempts: r.attempts,
    processedAt: r.processedAt,
  };
}

/**
 * HL7 v2 over HTTP: POST /hl7v2 with one ER7 message answers its ACK (200, also for AE / AR:
 * the ACK carries the outcome; original-mode semantics whatever MSH-15/16 say, the 200 being
 * the commit); with an FHS / BHS batch, the batch ACK holding each message's ACK.
 * Admin: GET /hl7v2/messages[?status=error] lists stored messages, GET /hl7v2/messages/{id}
 * shows one with its raw text and ACK, POST /hl7v2/messages/{id}/$reprocess maps it again;
 * GET /hl7v2/queue shows the mapping queue, POST /hl7v2/$pause-mapping and $resume-mapping stop
 * and restart the mapping (receipt goes on). Ingest needs a system scope that may create and
 * update every type (system/*.write, system/*.cu…); the admin reads need system read.
 */
export async function hl7v2Routes(app: FastifyInstance, deps: Hl7RouteDeps): Promise<void> {
  app.addHook('onRequest', async (request) => {
    request.auth = await deps.tokens.verify(request.headers.authorization);
  });
  app.addContentTypeParser(ER7_TYPES, { parseAs: 'string', bodyLimit: deps.maxMessageBytes }, (_request, body, done) => done(null, body));
  const requireSystem = (request: FastifyRequest, permissions: Permission[]) => {
    const auth = request.auth;
    if (!auth) throw errors.unauthorized('an access token is required');
    const allowed = auth.scopes.some((s) => s.context === 'system' && s.resourceType === '*' && permissions.every((p) => s.permissions.has(p)));
    if (!allowed) throw errors.forbidden(`HL7 v2 ${permissions.includes('c') ? 'ingest' : 'administration'} needs a system scope over every resource type (system/*.${permissions.includes('c') ? 'write' : 'read'})`);
  };

  app.post('/hl7v2', { bodyLimit: deps.maxMessageBytes }, async (request, reply) => {
    requireSystem(request, ['c', 'u']);
    if (typeof request.body !== 'string') {
      throw new FhirError('unsupported-media-type', 'send the message as x-application/hl7-v2+er7 or text/plain');
    }
    if (isBatch(request.body)) {
      // An FHS / BHS batch: every message processed, one batch ACK listing each one's ACK.
      const batch = await deps.ingest.receiveBatch(request.body, 'http');
      return reply.code(200).type(ACK_TYPE).header('X-HL7-Batch-Messages', String(batch.results.length)).send(batch.ack);
    }
    const result = await deps.ingest.receive(request.body, 'http');
    return reply.code(200).type(ACK_TYPE).header('X-HL7-Ack-Code', result.code).header('X-HL7-Message-Id', result.messageId).send(result.ack);
  });

  app.get('/hl7v2/messages', async (request, reply) => {
    requireSystem(request, ['r']);
    const query = request.query as Record<string, string | undefined>;
    const status = query.status as Hl7MessageStatus | undefined;
    if (status !== undefined && !STATUSES.includes(status)) throw errors.incorrect(`status must be one of ${STATUSES.join(', ')}`);
    const count = query._count === undefined ? 50 : Number(query._count);
    if (!Number.isInteger(count) || count < 1 || count > 1000) throw errors.incorrect('_count must be an integer from 1 to 1000');
    const list = await deps.messages.list({ status, count });
    return reply.type('application/json').send({ count: list.length, messages: list.map(summary) });
  });

  app.get<{ Params: { id: string } }>('/hl7v2/messages/:id', async (request, reply) => {
    requireSystem(request, ['r']);
    const record = await deps.messages.get(request.params.id);
    if (!record) throw errors.notFound(`no HL7 v2 message ${request.params.id.slice(0, 64)}`);
    return reply.type('application/json').send({ ...summary(record), raw: record.raw, ack: record.ack });
  });

  // The mapping queue: messages acknowledged on receipt and not mapped yet (docs/hl7v2.md).
  app.get('/hl7v2/queue', async (request, reply) => {
    requireSystem(request, ['r']);
    return reply.type('application/json').send(deps.ingest.queueState());
  });
  app.post('/hl7v2/$pause-mapping', async (request, reply) => {
    requireSystem(request, ['c', 'u']);
    deps.ingest.pauseMapping();
    return reply.type('application/json').send(deps.ingest.queueState());
  });
  app.post('/hl7v2/$resume-mapping', async (request, reply) => {
    requireSystem(request, ['c', 'u']);
    deps.ingest.resumeMapping();
    return reply.type('application/json').send(deps.ingest.queueState());
  });

  app.post<{ Params: { id: string } }>('/hl7v2/messages/:id/$reprocess', async (request, reply) => {
    requireSystem(request, ['c', 'u']);
    const result = await deps.ingest.reprocess(request.params.id);
    if (!result) throw errors.notFound(`no HL7 v2 message ${request.params.id.slice(0, 64)}`);
    const record = await deps.messages.get(request.params.id);
    return reply.type('application/json').send({ ...(record ? summary(record) : {}), ackCode: result.code, ack: result.ack });
  });
}
