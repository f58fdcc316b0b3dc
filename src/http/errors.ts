import type { FastifyError, FastifyInstance } from 'fastify';
import { FhirError, outcome, statusForCategory, type ErrorCategory } from '../fhir/errors.js';
import { mapDatabaseError } from '../storage/pg-errors.js';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';

/** Fastify's own client errors, mapped to FHIR categories. */
const fastifyCodes: Record<string, ErrorCategory> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'too-large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported-media-type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'incorrect',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'incorrect',
  FST_ERR_CTP_INVALID_TYPE: 'incorrect',
  FST_ERR_BAD_URL: 'incorrect',
  FST_ERR_ASYNC_CONSTRAINT: 'incorrect',
};

function toFhirError(error: FastifyError | Error): FhirError {
  if (error instanceof FhirError) return error;
  const mapped = mapDatabaseError(error);
  if (mapped instanceof FhirError) return mapped;
  const code = (error as FastifyError).code;
  const category = code ? fastifyCodes[code] : undefined;
  if (category) return new FhirError(category, error.message);
  const status = (error as FastifyError).statusCode;
  if (status && status >= 400 && status < 500) {
    const byStatus: ErrorCategory =
      status === 413 ? 'too-large' : status === 415 ? 'unsupported-media-type' : status === 404 ? 'not-found' : 'incorrect';
    return new FhirError(byStatus, error.message);
  }
  return new FhirError('fault', 'internal server error');
}

/** Every error leaves the server as an OperationOutcome with the status of its category. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | Error, request, reply) => {
    const fhirError = toFhirError(error);
    if (fhirError.category === 'fault') {
      // Only the error itself and the request id: never the request body (PHI).
      request.log.error({ err: error, reqId: request.id }, 'request failed');
      fhirError.issues[0].diagnostics = `internal server error (request id ${request.id})`;
    }
    for (const [name, value] of Object.entries(fhirError.headers)) reply.header(name, value);
    return reply.code(statusForCategory(fhirError.category)).type(FHIR_JSON).send(fhirError.toOutcome());
  });
  app.setNotFoundHandler((request, reply) => {
    reply
      .code(404)
      .type(FHIR_JSON)
      .send(outcome([{ severity: 'error', code: 'not-found', diagnostics: `no route for ${request.method} ${request.url.split('?')[0].slice(0, 200)}` }]));
  });
}
