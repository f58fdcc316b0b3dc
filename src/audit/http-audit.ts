import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../fhir/errors.js';
import type { AuthContext } from '../auth/token-service.js';
import { callerOf, type AuditSource, type RestAuditRecord, type RestInteraction } from './audit-event.js';
import type { AuditLog } from './audit-log.js';
import { authServerEndpointOf, type AuthServerEndpoint } from './auth-server-audit.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** How this request's route is audited (set by the first audit hook; null before). */
    auditRoute: AuditedRoute | null;
    /** The patient a read's response is about (found in the body on its way out). */
    auditPatient: string | null;
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
  return patientOfParams(new URLSearchParams(query));
}

function patientOfParams(params: URLSearchParams): string | undefined {
  for (const [name, value] of params) {
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
    const options = request.routeOptions;
    const pattern = options.url;
    return pattern !== undefined && (pattern === '/fhir' || pattern.startsWith('/fhir/')) && !options.config?.public ? pattern : undefined;
  };

  // Read access to the audit trail: ADMIN users and backend clients (their scopes still apply).
  // Callback style (no promise per request): it runs on every request with auth on.
  http.addHook('preHandler', (request, _reply, done) => {
    const auth = request.auth;
    if (!auth || auth.kind === 'client' || auth.role === 'ADMIN' || !fhirRoute(request)) return done();
    if (readsAuditEvents(request)) return done(errors.forbidden('AuditEvents are available to ADMIN users and backend clients only'));
    done();
  });

  if (!deps.audit.enabled) return;
  http.decorateRequest('auditRoute', null);
  http.decorateRequest('auditPatient', null);

  // Back-pressure (AuditLog): while the audit writer is far behind, new audited requests wait
  // for it, and are answered 503 if it does not catch up. Requests that leave no event pass.
  // The hooks below run on every request: callback style, so the common path allocates no
  // promise, and the route's audit kind is decided once per route (auditedRoute).
  http.addHook('onRequest', (request, _reply, done) => {
    const route = auditedRoute(request);
    request.auditRoute = route;
    if (!route.admitted) return done();
    const wait = deps.audit.admit();
    if (!wait) return done();
    wait.then(() => done(), (e: Error) => done(e));
  });

  // The patient of a single-resource read: the first Patient reference in the body.
  http.addHook('onSend', (request, reply, payload, done) => {
    if (reply.statusCode !== 200 || typeof payload !== 'string' || payload.length > 1_000_000 || request.method !== 'GET') return done(null, payload);
    const params = request.params as Record<string, string | undefined> | undefined;
    if (!params?.type || !params.id || params.type === 'Patient' || !(request.auditRoute ?? auditedRoute(request)).fhir) return done(null, payload);
    request.auditPatient = /"reference"\s*:\s*"Patient\/([A-Za-z0-9\-.]{1,64})"/.exec(payload)?.[1] ?? null;
    done(null, payload);
  });

  http.addHook('onResponse', (request, reply, done) => {
    try {
      recordRequest(request, reply);
    } catch (e) {
      // As an async hook's rejection would be: logged, the response is already sent.
      request.log.error(e, 'audit: the AuditEvent of this request could not be recorded');
    }
    done();
  });

  // The request path keeps references to what the request had anyway (one small object, no
  // strings built): the AuditEvent is made of it by the writer (restRecordOf, audit-render.ts).
  const recordRequest = (request: FastifyRequest, reply: FastifyReply) => {
    // A request refused by an earlier onRequest hook did not pass ours: decided here then.
    const pattern = (request.auditRoute ?? auditedRoute(request)).fhir;
    if (!pattern) return;
    const method = request.method;
    // A POST's body is not kept (Bundles may be large): what the event needs of it is taken now.
    const post = method === 'POST' ? postDetails(pattern, request) : undefined;
    const location = reply.getHeader('location') ?? reply.getHeader('content-location');
    deps.audit.record(
      new RestAuditTuple(
        pattern,
        method,
        (request.params ?? EMPTY) as Record<string, string | undefined>,
        request.raw.url ?? '',
        reply.statusCode,
        request.auth,
        request.ip,
        typeof location === 'string' ? location : undefined,
        request.auditPatient ?? undefined,
        request.id,
        Date.now(),
        post,
      ),
    );
  };
}

/** How requests of one route are audited. */
export interface AuditedRoute {
  /** A FHIR route's pattern: one AuditEvent per request (http-audit). */
  fhir?: string;
  /** An authorization-server endpoint (auth-server-audit). */
  authServer?: AuthServerEndpoint;
  /** Requests that wait for room in the audit queue: those that leave an event, and the sign-in pages. */
  admitted: boolean;
}

const NOT_AUDITED: AuditedRoute = { admitted: false };
/** Per route (its config object) and method: fastify builds `request.routeOptions` anew on every access. */
const routeCache = new WeakMap<object, Map<string, AuditedRoute>>();

/** How the request's route is audited (decided once per route and method). */
export function auditedRoute(request: FastifyRequest): AuditedRoute {
  const options = request.routeOptions;
  const config = options.config as object | undefined;
  let byMethod = config ? routeCache.get(config) : undefined;
  let route = byMethod?.get(request.method);
  if (route) return route;
  const pattern = options.url;
  if (pattern === undefined) return NOT_AUDITED;
  const fhir = (pattern === '/fhir' || pattern.startsWith('/fhir/')) && !options.config?.public ? pattern : undefined;
  const authServer = authServerEndpointOf(request.method, pattern);
  route = { fhir, authServer, admitted: Boolean(fhir || authServer || pattern.startsWith('/auth/authorize')) };
  if (config) {
    if (!byMethod) routeCache.set(config, (byMethod = new Map()));
    byMethod.set(request.method, route);
  }
  return route;
}

const EMPTY: Record<string, string | undefined> = Object.freeze({});

/** What an audited POST's event needs of its body. */
interface PostDetails {
  /** A search's query with its form fields appended. */
  query?: string;
  /** A Bundle's: batch or transaction, and the entities its entries name. */
  bundle?: { batch: boolean; entities: string[] };
}

function postDetails(pattern: string, request: FastifyRequest): PostDetails | undefined {
  if (pattern.replace(/\/+$/, '') === '/fhir') return { bundle: { batch: isBatch(request.body), entities: bundleEntities(request.body) } };
  return classify(pattern, 'POST', undefined).search ? { query: searchQuery(request) } : undefined;
}

/**
 * What the request path keeps of an audited FHIR request until the writer makes its
 * AuditEvent (restRecordOf): references to values the request had anyway, and the time.
 */
export class RestAuditTuple {
  constructor(
    readonly pattern: string,
    readonly method: string,
    readonly params: Readonly<Record<string, string | undefined>>,
    /** The request URL as sent (its query is the search's). */
    readonly url: string,
    readonly status: number,
    readonly auth: AuthContext | undefined,
    readonly address: string | undefined,
    /** The Location (else Content-Location) header of the response. */
    readonly location: string | undefined,
    /** The patient a read's response body referred to (onSend hook). */
    readonly bodyPatient: string | undefined,
    readonly requestId: string,
    /** When the response was sent (ms since the epoch): AuditEvent.recorded. */
    readonly at: number,
    readonly post: PostDetails | undefined,
  ) {}
}

/** A route's classification, and the type its pattern names (`/fhir/Patient/:id/$everything`). */
type RouteClass = Classified & { patternType: string | undefined };
const routeClasses = new Map<string, RouteClass>();

function routeClass(pattern: string, method: string): RouteClass {
  const key = `${method} ${pattern}`;
  let c = routeClasses.get(key);
  if (!c) {
    // The body only matters for POST /fhir (batch or transaction), which the caller handles.
    c = { ...classify(pattern, method, undefined), patternType: /^\/fhir\/([A-Z][A-Za-z]+)\//.exec(pattern)?.[1] };
    // Patterns are the server's routes: a bounded set.
    if (routeClasses.size < 1000) routeClasses.set(key, c);
  }
  return c;
}

/** The query of a request URL as the search read it (normalized as URLSearchParams writes it), and the patient it names. */
function searchOfUrl(url: string): { query: string; patient: string | undefined } {
  const q = url.indexOf('?');
  const params = new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
  return { query: params.toString(), patient: patientOfParams(params) };
}

/** The audit record of a FHIR request, from what the request path kept (run by the writer, off the request path). */
export function restRecordOf(t: RestAuditTuple): RestAuditRecord {
  const classified: Classified = t.post?.bundle ? { interaction: t.post.bundle.batch ? 'batch' : 'transaction', action: 'E' } : routeClass(t.pattern, t.method);
  // Routes of one type name it in the pattern (`/fhir/Patient/:id/$everything`), not in a parameter.
  const type = 'type' in t.params ? t.params.type : routeClass(t.pattern, t.method).patternType;
  const id = t.params.id;
  const resources: string[] = [];
  const instance = type && id && ID.test(id) ? `${type}/${id}` : undefined;
  if (instance) resources.push(instance);
  const located = referenceFromLocation(t.location);
  if (located && located !== instance) resources.push(located);
  if (t.post?.bundle) resources.push(...t.post.bundle.entities);
  let query: string | undefined;
  let queryPatient: string | undefined;
  if (classified.search) {
    if (t.post?.query !== undefined) {
      query = t.post.query;
      queryPatient = query ? patientOfQuery(query) : undefined;
    } else {
      ({ query, patient: queryPatient } = searchOfUrl(t.url));
    }
  }
  let patient = t.auth?.patient;
  if (type === 'Patient' && id && ID.test(id)) patient = id;
  else if (located?.startsWith('Patient/')) patient = located.slice('Patient/'.length);
  patient ??= t.bodyPatient ?? queryPatient;
  return {
    interaction: classified.interaction,
    action: classified.action,
    ...(classified.operation ? { operation: classified.operation } : {}),
    status: t.status,
    caller: callerOf(t.auth),
    address: t.address,
    resources,
    query,
    queryType: classified.search ? (t.params.target ?? type) : undefined,
    patient,
    requestId: t.requestId,
    recorded: new Date(t.at).toISOString(),
  };
}
