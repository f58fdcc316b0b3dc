import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { OperationOutcome } from 'fhir/r4.js';
import { scopesAllow } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { everything, type EverythingDeps } from '../operations/everything.js';
import type { ExportLevel } from '../operations/export-params.js';
import { STATUS_RETRY_AFTER_SECONDS, type Caller, type ExportService } from '../operations/export-service.js';
import { queryOf } from './fhir-routes.js';
import { FHIR_JSON, outputOptions, sendResult } from './respond.js';

export interface BulkRouteDeps {
  tokens: TokenService;
  exports: ExportService;
  everything: EverythingDeps;
  /** public server URL without /fhir: the kick-off URL echoed in the manifest is built on it */
  baseUrl: string;
  fhirBase: string;
}

/** The Bulk Data file media type, exactly (the test kit compares the header verbatim). */
const NDJSON = 'application/fhir+ndjson';

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Accept-Encoding lists gzip (or *) with a non-zero quality. */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  return (acceptEncoding ?? '').split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return !q || Number(q.slice(2)) > 0;
  });
}

function information(text: string): string {
  const oo: OperationOutcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: text }] };
  return JSON.stringify(oo);
}

/**
 * Bulk Data export (kick-off, status, cancel, download) and $everything, mounted under /fhir.
 * Static segments (`$export`, `Patient/$export`, `…/$everything`) take precedence over the
 * REST plugin's `/:type/:id/:target` in fastify's router, which falls back to the parametric
 * routes for every other path.
 */
export async function bulkRoutes(app: FastifyInstance, deps: BulkRouteDeps): Promise<void> {
  // Own hook: the REST plugin's token check is encapsulated in that plugin.
  app.addHook('onRequest', async (request) => {
    request.auth = await deps.tokens.verify(request.headers.authorization);
  });
  const caller = (request: FastifyRequest): Caller => {
    const auth = request.auth;
    if (!auth) throw errors.unauthorized('an access token is required');
    return { clientId: auth.clientId, canRead: (type) => scopesAllow(auth.scopes, type, 'r') };
  };

  const kickOff = (level: ExportLevel) => async (request: FastifyRequest<{ Params: { id?: string } }>, reply: FastifyReply) => {
    const { statusUrl } = await deps.exports.kickOff({
      level,
      groupId: request.params.id,
      query: queryOf(request),
      body: request.method === 'POST' ? request.body : undefined,
      prefer: header(request, 'prefer'),
      accept: header(request, 'accept'),
      requestUrl: `${deps.baseUrl}${request.raw.url ?? ''}`,
      caller: caller(request),
    });
    return reply.code(202).header('Content-Location', statusUrl).type(FHIR_JSON).send(information(`export started; poll ${statusUrl}`));
  };
  for (const [path, level] of [['/$export', 'system'], ['/Patient/$export', 'patient'], ['/Group/:id/$export', 'group']] as const) {
    app.get(path, kickOff(level));
    app.post(path, kickOff(level));
  }

  app.get<{ Params: { jobId: string } }>('/$export-status/:jobId', async (request, reply) => {
    const status = await deps.exports.status(request.params.jobId, caller(request));
    if (status.state === 'running') {
      return reply.code(202).header('X-Progress', status.progress.slice(0, 200)).header('Retry-After', String(STATUS_RETRY_AFTER_SECONDS)).send();
    }
    if (status.state === 'failed') return reply.code(500).type(FHIR_JSON).send(JSON.stringify(status.outcome));
    if (status.expires) reply.header('Expires', new Date(status.expires).toUTCString());
    return reply.code(200).type('application/json').send(JSON.stringify(status.manifest));
  });

  app.delete<{ Params: { jobId: string } }>('/$export-status/:jobId', async (request, reply) => {
    await deps.exports.cancel(request.params.jobId, caller(request));
    return reply.code(202).type(FHIR_JSON).send(information('export cancelled; its files are deleted'));
  });

  app.get<{ Params: { jobId: string; file: string } }>('/$export-output/:jobId/:file', async (request, reply) => {
    const chunks = await deps.exports.file(request.params.jobId, request.params.file, caller(request));
    // Streamed chunk by chunk from the database: a file is never held in memory whole. The
    // chunks are gzip already: passed through to clients that accept gzip, inflated otherwise.
    reply.code(200).header('Content-Type', NDJSON).header('Vary', 'Accept-Encoding');
    const stream = Readable.from(chunks);
    if (acceptsGzip(header(request, 'accept-encoding'))) return reply.header('Content-Encoding', 'gzip').send(stream);
    return reply.send(stream.pipe(createGunzip()));
  });

  for (const ownerType of ['Patient', 'Encounter']) {
    app.get<{ Params: { id: string } }>(`/${ownerType}/:id/$everything`, async (request, reply) => {
      const query = queryOf(request);
      const options = outputOptions(new URLSearchParams([...query].filter(([k]) => k === '_pretty' || k === '_format')));
      const c = caller(request);
      const bundle = await everything(deps.everything, ownerType, request.params.id, query, c);
      return sendResult(request, reply, { status: 200, body: bundle }, options, deps.fhirBase);
    });
  }
}
