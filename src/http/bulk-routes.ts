import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { scopesAllow } from '../auth/scopes.js';
import { compartmentTypes } from '../search/compartment.js';
import { accessFilterFor, anyConfined, confinedToPatient, type AccessFilter } from '../search/sql/access.js';
import type { SearchService } from '../search/search-service.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { everything, type EverythingCaller, type EverythingDeps } from '../operations/everything.js';
import type { ExportLevel } from '../operations/export-params.js';
import type { Caller, ExportService } from '../operations/export-service.js';
import { sendAccepted, statusRoutes } from './async-operation.js';
import { queryOf } from './fhir-routes.js';
import { PRIVATE_MESSAGE_TYPES } from '../workflows/messaging-policy.js';
import { outputOptions, sendResult } from './respond.js';
import { maskedFields } from '../workflows/patient-masking.js';

export interface BulkRouteDeps {
  tokens: TokenService;
  exports: ExportService;
  everything: EverythingDeps;
  /** public server URL without /fhir: the kick-off URL echoed in the manifest is built on it */
  baseUrl: string;
  fhirBase: string;
  /** Turns a caller's access filter into SQL for $everything (granular scopes compiled). */
  search: Pick<SearchService, 'accessSql'>;
}

/**
 * Granular v2 scopes (`Observation.rs?category=laboratory`) by type, for types no whole-type
 * scope lets the token read: readable, but only where a query matches. `confined`: every such
 * scope of the type is a `patient/` one.
 */
function granularOnly(filter: AccessFilter | undefined, wholeType: (type: string) => boolean): Map<string, { queries: string[]; confined: boolean }> {
  const out = new Map<string, { queries: string[]; confined: boolean }>();
  for (const g of filter?.granular ?? []) {
    if (wholeType(g.type)) continue;
    const entry = out.get(g.type) ?? { queries: [], confined: true };
    entry.queries.push(g.query);
    entry.confined &&= g.confined;
    out.set(g.type, entry);
  }
  return out;
}

/**
 * Types an export cannot hold to a row filter are left out: secure messages for callers who read
 * them per participant only (messaging-policy.ts), and admin-only types (AuditEvent) for users
 * who are not ADMIN.
 */
function withoutRowFilteredTypes(caller: Caller, filter: AccessFilter | undefined): Caller {
  const left = [...(filter?.participants ? PRIVATE_MESSAGE_TYPES : []), ...(filter?.hidden ?? [])];
  if (left.length === 0) return caller;
  return { ...caller, canRead: (type) => !left.includes(type) && caller.canRead(type) };
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
  /** The client, the types its scopes read wholly, and those it reads through granular scopes only. */
  const caller = (request: FastifyRequest): Caller => {
    const auth = request.auth;
    if (!auth) throw errors.unauthorized('an access token is required');
    const wholeType = (type: string) => scopesAllow(auth.scopes, type, 'r');
    const granular = granularOnly(accessFilterFor(auth), wholeType);
    return {
      clientId: auth.clientId,
      canRead: (type) => wholeType(type) || granular.has(type),
      ...(granular.size ? { scopeFilters: Object.fromEntries([...granular].map(([type, g]) => [type, g.queries])) } : {}),
    };
  };

  const kickOff = (level: ExportLevel) => async (request: FastifyRequest<{ Params: { id?: string } }>, reply: FastifyReply) => {
    // SMART patient/ scopes: only the token patient's own compartment (Patient/$export, forced to that patient).
    const filter = request.auth ? accessFilterFor(request.auth) : undefined;
    const granular = granularOnly(filter, (type) => !!request.auth && scopesAllow(request.auth.scopes, type, 'r'));
    const confined = anyConfined(filter) || [...granular.values()].some((g) => g.confined);
    if (confined && !filter?.patient) throw errors.forbidden('patient/ scopes without a patient in context allow no export');
    // Export files are not masked (src/workflows/patient-masking.ts): roles that see Patients masked get no export.
    if (maskedFields(request.auth)) throw errors.forbidden('bulk export is not available to a role that sees patient data masked; use FHIR search');
    const { statusUrl } = await deps.exports.kickOff({
      level,
      groupId: request.params.id,
      query: queryOf(request),
      body: request.method === 'POST' ? request.body : undefined,
      prefer: header(request, 'prefer'),
      accept: header(request, 'accept'),
      requestUrl: `${deps.baseUrl}${request.raw.url ?? ''}`,
      // Secure messages (per participant) and admin-only types have no row filter in an export: left out.
      caller: withoutRowFilteredTypes(caller(request), filter),
      onlyPatient: confined ? filter?.patient : undefined,
    });
    return sendAccepted(reply, statusUrl, 'export started');
  };
  for (const [path, level] of [['/$export', 'system'], ['/Patient/$export', 'patient'], ['/Group/:id/$export', 'group']] as const) {
    app.get(path, kickOff(level));
    app.post(path, kickOff(level));
  }

  statusRoutes(app, '/$export-status/:jobId', {
    status: (request, jobId) => deps.exports.status(jobId, caller(request)),
    cancel: (request, jobId) => deps.exports.cancel(jobId, caller(request)),
    resultType: 'application/json',
    cancelled: 'export cancelled; its files are deleted',
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
      const own = caller(request);
      // patient/ scopes: types confined to the token's patient are seen only in that patient's own
      // $everything (an Encounter's record is not checked against the compartment: refused).
      const filter = request.auth ? accessFilterFor(request.auth) : undefined;
      const ownPatient = ownerType === 'Patient' && filter?.patient !== undefined && request.params.id === filter.patient;
      // Confined types outside the Patient compartment definition (Practitioner, Medication, …) are
      // never in it: not even its own $everything brings them in.
      const members = compartmentTypes('Patient');
      // What the compartment refers to may lie outside it (another patient's Observation named in
      // an AuditEvent): a confined caller gets the compartment members only.
      // Granular scopes make their types readable; every row is then held to the access filter
      // (compartment, granular queries, hidden types) in the statement itself, totals included.
      const granular = granularOnly(filter, (type) => !!request.auth && scopesAllow(request.auth.scopes, type, 'r'));
      const c: Caller & EverythingCaller = {
        ...own,
        canRead: (type) =>
          own.canRead(type) &&
          (!(confinedToPatient(filter, type) || granular.get(type)?.confined) || (ownPatient && members.includes(type))),
        membersOnly: anyConfined(filter) || [...granular.values()].some((g) => g.confined),
        access: deps.search.accessSql(filter, deps.fhirBase, 'r'),
      };
      const bundle = await everything(deps.everything, ownerType, request.params.id, query, c);
      return sendResult(request, reply, { status: 200, body: bundle }, options, deps.fhirBase);
    });
  }
}
