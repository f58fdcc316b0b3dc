import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../fhir/errors.js';
import { callerOf, restAuditEvent, type AuditSource, type RestAuditRecord, type RestInteraction } from './audit-event.js';
import type { AuditLog } from './audit-log.js';
import { authServerEndpoint } from './auth-server-audit.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The patient a read's response is about (found in the body on its way out). */
    auditPatient?: string;
  }
}

type Action = RestAuditRecord['action'];
type Classified = Pick<RestAuditRecord, 'interaction' | 'action' | 'operation'> & { search?: boolean };

const WRITE_ACTION: Record<string, Action> = { POST: 'C', PUT: 'U', PATCH: 'U', DELETE: 'D' };
const ID = /^[A-Za-z0-9\-.]{1,64}$/;
/** Most entities one Bundle's event lists. */
const MAX_BUNDLE_ENTITIES = 50;

/** What a FHIR route did, from its pattern (`/fhir/:type/:id`) and method. */
function classify(pattern: string, method: string, body: unknown): Classified {
  const path = pattern.replace(/^\/fhir/, '').replace(/\/+$/, '') || '/';
  const operation = /\$[A-Za-z-]+/.exec(path)?.[0];
  if (operation) {
    // $everything returns records; $export kick-off, status and downloads are data leaving too.
    return { interaction: 'operation', action: 'E', operation };
  }
  switch (path) {
    case '/':
      if (method === 'POST') return { interaction: isBatch(body) ? 'batch' : 'transaction', action: 'E' };
      return { interaction: 'search-system', action: 'R', search: true };
    case '/_search':
      return { interaction: 'search-system', action: 'R', search: true };
    case '/_history':
      return { interaction: 'history-system', action: 'R' };
    case '/:type/_history':
      return { interaction: 'history-type', action: 'R' };
    case '/:type/:id/_history':
      return { interaction: 'history-instance', action: 'R' };
    case '/:type/:id/_history/:vid':
      return { interaction: 'vread', action: 'R' };
    case '/:type/_search':
    case '/:type/:id/:target':
      return { interaction: 'search-type', action: 'R', search: true };
    case '/:type':
    case '/:type/:id': {
      if (method === 'GET' || method === 'HEAD') return path === '/:type' ? { interaction: 'search-type', action: 'R', search: true } : { interaction: 'read', action: 'R' };
      const interaction: RestInteraction = method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'PATCH' ? 'patch' : 'delete';
      return { interaction, action: WRITE_ACTION[method] ?? 'E' };
    }
    default:
      return { interaction: 'operation', action: 'E', operation: path };
  }
}

function isBatch(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as { type?: unknown }).type === 'batch';
}

function rawQuery(request: FastifyRequest): string {
  const url = request.raw.url ?? '';
  const q = url.indexOf('?');
  return q >= 0 ? url.slice(q + 1) : '';
}

/** A POST _search's form body, appended to the URL's query (as the search itself reads them). */
function searchQuery(request: FastifyRequest): string {
  const query = new URLSearchParams(rawQuery(request));
  if (request.method === 'POST' && request.body && typeof request.body === 'object') {
    for (const [name, value] of Object.entries(request.body as Record<string, unknown>)) {
      for (const v of Array.isArray(value) ? value : [value]) query.append(name, String(v));
    }
  }
  return query.toString();
}

/** `Type/id` of the resource a Location / Content-Location header names. */
function referenceFromLocation(location: unknown): string | undefined {
  if (typeof location !== 'string') return undefined;
  const match = /\/([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(location);
  return match ? `${match[1]}/${match[2]}` : undefined;
}

/** The patient a search names in `patient=` / `subject=` (a bare id or `Patient/id`). */
function patientOfQuery(query: string): string | undefined {
  for (const [name, value] of new URLSearchParams(query)) {
    const base = name.split(':')[0];
    if (base !== 'patient' && base !== 'subject') continue;
    const match = /^(?:Patient\/)?([A-Za-z0-9\-.]{1,64})$/.exec(value);
    if (match && (base === 'patient' || value.startsWith('Patient/'))) return match[1];
  }
  return undefined;
}

function bundleEntities(body: unknown): string[] {
  const entries = typeof body === 'object' && body !== null ? (body as { entry?: unknown }).entry : undefined;
  if (!Array.isArray(entries)) return [];
  const out: string[] = [];
  for (const entry of entries) {
    const url = (entry as { request?: { url?: unknown } } | null)?.request?.url;
    if (typeof url !== 'string') continue;
    const match = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/|\?|$)/.exec(url.split('?')[0]!);
    if (match) out.push(`${match[1]}/${match[2]}`);
    if (out.length >= MAX_BUNDLE_ENTITIES) break;
  }
  return out;
}

/** Whether a request reads AuditEvents directly: its type, compartment target, `_type` or a Bundle entry. */
function readsAuditEvents(request: FastifyRequest): boolean {
  const params = (request.params ?? {}) as Record<string, string | undefined>;
  if (params.type === 'AuditEvent' || params.target === 'AuditEvent') return true;
  // The query, and a POST _search's form (parsed only when they can name _type, also
  // percent-encoded: this runs on every request of a user who is not ADMIN).
  const url = request.raw.url ?? '';
  const mayNameType = request.method === 'POST' || url.includes('type') || url.includes('%');
  if (mayNameType) {
    for (const [name, value] of new URLSearchParams(searchQuery(request))) {
      if (name === '_type' && value.split(',').includes('AuditEvent')) return true;
    }
  }
  if (request.method === 'POST' && (request.routeOptions.url ?? '').replace(/\/+$/, '') === '/fhir') {
    const entries = typeof request.body === 'object' && request.body !== null ? (request.body as { entry?: unknown }).entry : undefined;
    if (!Array.isArray(entries)) return false;
    return entries.some((entry) => {
      const url = (entry as { request?: { url?: unknown } } | null)?.request?.url;
      return typeof url === 'string' && /(?:^|\/)AuditEvent(?:[/?]|$)/.test(url);
    });
  }
  return false;
}

/**
 * Audits every FHIR request that touches resources (not /metadata or discovery): one
 * AuditEvent per request, built after the response is sent and queued (no I/O on the
 * request path). Also keeps AuditEvents to ADMIN users and backend (system) clients.
 */
export function registerHttpAudit(http: FastifyInstance, deps: { audit: AuditLog; source: AuditSource }): void {
  const fhirRoute = (request: FastifyRequest) => {
    const pattern = request.routeOptions.url;
    return pattern !== undefined && (pattern === '/fhir' || pattern.startsWith('/fhir/')) && !request.routeOptions.config?.public ? pattern : undefined;
  };

  // Read access to the audit trail: ADMIN users and backend clients (their scopes still apply).
  http.addHook('preHandler', async (request) => {
    const auth = request.auth;
    if (!auth || auth.kind === 'client' || auth.role === 'ADMIN' || !fhirRoute(request)) return;
    if (readsAuditEvents(request)) throw errors.forbidden('AuditEvents are available to ADMIN users and backend clients only');
  });

  if (!deps.audit.enabled) return;

  // Back-pressure (AuditLog): while the audit writer is far behind, new audited requests wait
  // for it, and are answered 503 if it does not catch up. Requests that leave no event pass.
  // The three hooks below run on every request: callback style, so the common path allocates
  // no promise (profiled: the audit hooks were the larger part of the audit's request cost).
  http.addHook('onRequest', (request, _reply, done) => {
    const pattern = request.routeOptions.url;
    if (!fhirRoute(request) && !authServerEndpoint(request) && !pattern?.startsWith('/auth/authorize')) return done();
    const wait = deps.audit.admit();
    if (!wait) return done();
    wait.then(() => done(), (e: Error) => done(e));
  });

  // The patient of a single-resource read: the first Patient reference in the body.
  http.addHook('onSend', (request, reply, payload, done) => {
    if (reply.statusCode !== 200 || typeof payload !== 'string' || payload.length > 1_000_000) return done(null, payload);
    const params = (request.params ?? {}) as Record<string, string | undefined>;
    if (!params.type || !params.id || params.type === 'Patient' || request.method !== 'GET' || !fhirRoute(request)) return done(null, payload);
    request.auditPatient = /"reference"\s*:\s*"Patient\/([A-Za-z0-9\-.]{1,64})"/.exec(payload)?.[1];
    done(null, payload);
  });

  http.addHook('onResponse', (request, reply, done) => {
    try {
      recordRequest(request, reply);
    } catch (e) {
      // As an async hook's rejection would be: logged, the response is already sent.
      request.log.error(e, 'audit: the AuditEvent of this request could not be built');
    }
    done();
  });

  const recordRequest = (request: FastifyRequest, reply: FastifyReply) => {
    const pattern = fhirRoute(request);
    if (!pattern) return;
    const classified = classify(pattern, request.method, request.body);
    // Routes of one type name it in the pattern (`/fhir/Patient/:id/$everything`), not in a parameter.
    const params: Record<string, string | undefined> = { type: /^\/fhir\/([A-Z][A-Za-z]+)\//.exec(pattern)?.[1], ...(request.params as Record<string, string | undefined>) };
    const resources: string[] = [];
    const instance = params.type && params.id && ID.test(params.id) ? `${params.type}/${params.id}` : undefined;
    if (instance) resources.push(instance);
    const located = referenceFromLocation(reply.getHeader('location')) ?? referenceFromLocation(reply.getHeader('content-location'));
    if (located && located !== instance) resources.push(located);
    if (classified.interaction === 'transaction' || classified.interaction === 'batch') resources.push(...bundleEntities(request.body));
    const query = classified.search ? searchQuery(request) : undefined;
    let patient = request.auth?.patient;
    if (params.type === 'Patient' && params.id && ID.test(params.id)) patient = params.id;
    else if (located?.startsWith('Patient/')) patient = located.slice('Patient/'.length);
    patient ??= request.auditPatient ?? (query ? patientOfQuery(query) : undefined);
    const record: RestAuditRecord = {
      ...classified,
      status: reply.statusCode,
      caller: callerOf(request.auth),
      address: request.ip,
      resources,
      query,
      queryType: classified.search ? (params.target ?? params.type) : undefined,
      patient,
      requestId: request.id,
      recorded: new Date().toISOString(),
    };
    deps.audit.record(restAuditEvent(record, deps.source));
  };
}
