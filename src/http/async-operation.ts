import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { OperationOutcome } from 'fhir/r4.js';
import { STATUS_RETRY_AFTER_SECONDS, type AsyncJobStatus } from '../operations/async-jobs.js';
import { FHIR_JSON } from './respond.js';

/**
 * The HTTP side of asynchronous operations, Bulk Data style (shared by $export and $import):
 * kick-off → 202 with Content-Location of a status URL; GET the status URL → 202 with
 * X-Progress and Retry-After while running, 200 with the result when done, 500 with the
 * OperationOutcome when failed; DELETE it → 202.
 */

function information(text: string): string {
  const oo: OperationOutcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: text }] };
  return JSON.stringify(oo);
}

/** The kick-off answer: 202, Content-Location = the status URL, a short OperationOutcome. */
export function sendAccepted(reply: FastifyReply, statusUrl: string, message: string): FastifyReply {
  return reply.code(202).header('Content-Location', statusUrl).type(FHIR_JSON).send(information(`${message}; poll ${statusUrl}`));
}

export interface StatusRouteOptions<T> {
  status(request: FastifyRequest, jobId: string): Promise<AsyncJobStatus<T>>;
  cancel(request: FastifyRequest, jobId: string): Promise<void>;
  /** media type of the completed result (the Bulk Data manifest is plain JSON, not a FHIR resource) */
  resultType: string;
  /** told to the client that cancelled */
  cancelled: string;
}

/** GET (poll) and DELETE (cancel) on `path`, which has a `:jobId` parameter. */
export function statusRoutes<T>(app: FastifyInstance, path: string, options: StatusRouteOptions<T>): void {
  app.get<{ Params: { jobId: string } }>(path, async (request, reply) => {
    const status = await options.status(request, request.params.jobId);
    if (status.state === 'running') {
      return reply.code(202).header('X-Progress', status.progress.slice(0, 200)).header('Retry-After', String(STATUS_RETRY_AFTER_SECONDS)).send();
    }
    if (status.state === 'failed') return reply.code(500).type(FHIR_JSON).send(JSON.stringify(status.outcome));
    if (status.expires) reply.header('Expires', new Date(status.expires).toUTCString());
    return reply.code(200).type(options.resultType).send(JSON.stringify(status.result));
  });

  app.delete<{ Params: { jobId: string } }>(path, async (request, reply) => {
    await options.cancel(request, request.params.jobId);
    return reply.code(202).type(FHIR_JSON).send(information(options.cancelled));
  });
}
