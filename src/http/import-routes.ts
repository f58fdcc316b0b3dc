import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { OperationOutcome } from 'fhir/r4.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { IMPORT_RETRY_AFTER_SECONDS, type ImportService } from '../operations/import-service.js';
import { FHIR_JSON } from './respond.js';

export interface ImportRouteDeps {
  tokens: TokenService;
  imports: ImportService;
  /** public server URL without /fhir, to record the kick-off URL */
  baseUrl: string;
}

function information(text: string): string {
  const oo: OperationOutcome = { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: text }] };
  return JSON.stringify(oo);
}

/**
 * $import (asynchronous, Bulk Data style): POST /fhir/$import → 202 + Content-Location of a
 * status URL; GET the status URL → 202 with X-Progress while running, 200 with the report
 * (an OperationOutcome) when done; DELETE it → cancel. An import writes anything, so it needs
 * a system scope granting create and update on every type (system/*.write, system/*.cu…,
 * system/*.*); a job and its report belong to the client that started it.
 */
export async function importRoutes(app: FastifyInstance, deps: ImportRouteDeps): Promise<void> {
  // Own hook: the REST plugin's token check is encapsulated in that plugin.
  app.addHook('onRequest', async (request) => {
    request.auth = await deps.tokens.verify(request.headers.authorization);
  });
  const admin = (request: FastifyRequest): string => {
    const auth = request.auth;
    if (!auth) throw errors.unauthorized('an access token is required');
    const allowed = auth.scopes.some((s) => s.context === 'system' && s.resourceType === '*' && s.permissions.has('c') && s.permissions.has('u'));
    if (!allowed) throw errors.forbidden('$import needs a system scope that allows create and update on every resource type (system/*.write)');
    return auth.clientId;
  };

  app.post('/$import', async (request, reply) => {
    const owner = admin(request);
    const { statusUrl } = await deps.imports.kickOff(request.body, owner, `${deps.baseUrl}${request.raw.url ?? ''}`);
    return reply.code(202).header('Content-Location', statusUrl).type(FHIR_JSON).send(information(`import started; poll ${statusUrl}`));
  });

  app.get<{ Params: { jobId: string } }>('/$import-status/:jobId', async (request, reply) => {
    const status = await deps.imports.status(request.params.jobId, admin(request));
    if (status.state === 'running') {
      return reply.code(202).header('X-Progress', status.progress.slice(0, 200)).header('Retry-After', String(IMPORT_RETRY_AFTER_SECONDS)).send();
    }
    if (status.state === 'failed') return reply.code(500).type(FHIR_JSON).send(JSON.stringify(status.outcome));
    if (status.expires) reply.header('Expires', new Date(status.expires).toUTCString());
    return reply.code(200).type(FHIR_JSON).send(JSON.stringify(status.report));
  });

  app.delete<{ Params: { jobId: string } }>('/$import-status/:jobId', async (request, reply) => {
    await deps.imports.cancel(request.params.jobId, admin(request));
    return reply.code(202).type(FHIR_JSON).send(information('import cancelled; what it had committed stays'));
  });
}
