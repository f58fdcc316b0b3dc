import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import type { ImportService } from '../operations/import-service.js';
import { sendAccepted, statusRoutes } from './async-operation.js';
import { FHIR_JSON } from './respond.js';

export interface ImportRouteDeps {
  tokens: TokenService;
  imports: ImportService;
  /** public server URL without /fhir, to record the kick-off URL */
  baseUrl: string;
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
    return sendAccepted(reply, statusUrl, 'import started');
  });

  statusRoutes(app, '/$import-status/:jobId', {
    status: (request, jobId) => deps.imports.status(jobId, admin(request)),
    cancel: (request, jobId) => deps.imports.cancel(jobId, admin(request)),
    resultType: FHIR_JSON,
    cancelled: 'import cancelled; what it had committed stays',
  });
}
