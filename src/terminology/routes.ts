import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Parameters, ValueSet } from 'fhir/r4.js';
import { scopesAllow } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { queryOf } from '../http/fhir-routes.js';
import { outputOptions, sendResult } from '../http/respond.js';
import { expand, lookup, subsumes, translate, validateInCodeSystem, validateInValueSet, type Subject } from './operations.js';
import { OperationInput } from './params.js';
import type { TerminologyService } from './service.js';

export interface TerminologyRouteDeps {
  tokens: TokenService;
  terminology: TerminologyService;
  fhirBase: string;
}

type Operation = (t: TerminologyService, subject: Subject, input: OperationInput) => Promise<Parameters | ValueSet>;

const ROUTES: Array<[type: string, name: string, run: Operation]> = [
  ['CodeSystem', 'lookup', lookup],
  ['CodeSystem', 'validate-code', validateInCodeSystem],
  ['CodeSystem', 'subsumes', subsumes],
  ['ValueSet', 'expand', expand],
  ['ValueSet', 'validate-code', validateInValueSet],
  ['ConceptMap', 'translate', translate],
];

/**
 * The terminology operations, type level (`/CodeSystem/$lookup?system=…`) and instance level
 * (`/CodeSystem/{id}/$lookup`), by GET with query parameters or POST with a Parameters body.
 * They need read access to the definition's type.
 */
export async function terminologyRoutes(app: FastifyInstance, deps: TerminologyRouteDeps): Promise<void> {
  app.addHook('onRequest', async (request) => {
    request.auth = await deps.tokens.verify(request.headers.authorization);
  });
  const input = (request: FastifyRequest) => (request.method === 'POST' ? OperationInput.fromBody(request.body) : OperationInput.fromQuery(queryOf(request)));
  const guard = (request: FastifyRequest, type: string) => {
    if (!scopesAllow(request.auth!.scopes, type, 'r')) throw errors.forbidden(`the access token's scopes do not allow reading ${type}`);
  };
  for (const [type, name, run] of ROUTES) {
    const handler = (id: string | undefined) => async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
      guard(request, type);
      if (id !== undefined && !/^[A-Za-z0-9\-.]{1,64}$/.test(id)) throw errors.incorrect(`not a ${type} id`);
      const body = await run(deps.terminology, id === undefined ? {} : { id }, input(request));
      return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
    };
    app.get(`/${type}/$${name}`, (request, reply) => handler(undefined)(request, reply));
    app.post(`/${type}/$${name}`, (request, reply) => handler(undefined)(request, reply));
    app.get<{ Params: { id: string } }>(`/${type}/:id/$${name}`, (request, reply) => handler(request.params.id)(request, reply));
    app.post<{ Params: { id: string } }>(`/${type}/:id/$${name}`, (request, reply) => handler(request.params.id)(request, reply));
  }
}
