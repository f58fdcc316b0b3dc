import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Resource } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import { scopesAllow as typeScopesAllow, type Permission, type ResourceScope } from '../auth/scopes.js';
import type { AuthContext, TokenService } from '../auth/token-service.js';
import type { Bundle, Composition, Parameters } from 'fhir/r4.js';
import { entryError, processBundle } from '../interactions/bundle.js';
import { checkBundleShape } from '../interactions/bundle-shape.js';
import { create } from '../interactions/create.js';
import { conditionalRemove, remove } from '../interactions/delete.js';
import { history, versionVisibleTo, type HistoryAccess } from '../interactions/history.js';
import { changeMeta, metaOf, metaParameters, type MetaChange } from '../interactions/meta.js';
import { conditionalPatch, patch, patchDocumentFrom } from '../interactions/patch.js';
import { read, vread } from '../interactions/read.js';
import type { InteractionDeps, InteractionResult } from '../interactions/types.js';
import { conditionalUpdate, update } from '../interactions/update.js';
import { checkId, parseStored } from '../interactions/versions.js';
import { composeDocument, documentRequest } from '../operations/document.js';
import { validateOperation } from '../operations/validate.js';
import { compartmentTypes } from '../search/compartment.js';
import { accessFilterFor, confinedToPatient, rowRestricted, type AccessFilter } from '../search/sql/access.js';
import { historyAccessSql } from '../search/sql/history-access.js';
import type { StoredVersion } from '../storage/types.js';

/**
 * The token's scopes allow `permission` on `type`: a whole-type scope, or for reads and searches
 * also a granular v2 scope (`Observation.rs?category=laboratory`), whose filter the search side
 * applies to every resource (src/search/sql/access.ts).
 */
function scopesAllow(scopes: readonly ResourceScope[], type: string, permission: Permission): boolean {
  if (typeScopesAllow(scopes, type, permission)) return true;
  return (permission === 'r' || permission === 's') && scopes.some((s) => s.filter !== undefined && s.resourceType === type && s.permissions.has(permission));
}
import { FHIR_VERSION } from './fhir-formats.js';
import { notModified, outputOptions, preferReturn, preferStrict, sendResult, FHIR_JSON } from './respond.js';

declare module 'fastify' {
  interface FastifyRequest {
    auth?: AuthContext;
  }
  interface FastifyContextConfig {
    /** Routes reachable without an access token (metadata, SMART discovery). */
    public?: boolean;
  }
}

export interface FhirRouteDeps extends InteractionDeps {
  tokens: TokenService;
  capabilityStatement: () => Resource;
  /** Progress of run-time SearchParameter reindexing (this process). */
  reindexStatus: () => Array<{ url: string; state: string; resourcesDone: number; error?: string }>;
}

type TypeParams = { type: string };
type InstanceParams = { type: string; id: string };

/** The query string of a request as ordered pairs (search keeps order and repeats). */
export function queryOf(request: FastifyRequest): URLSearchParams {
  const url = request.raw.url ?? '';
  const q = url.indexOf('?');
  return new URLSearchParams(q >= 0 ? url.slice(q + 1) : '');
}

function rawQuery(request: FastifyRequest): string {
  const url = request.raw.url ?? '';
  const q = url.indexOf('?');
  return q >= 0 ? url.slice(q + 1) : '';
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * The access filter of a token's context, built once per context: the token service keeps one
 * AuthContext per verified token (never changed once built), and a read asks for the filter
 * twice, a Bundle once per entry.
 */
const accessFilters = new WeakMap<AuthContext, AccessFilter | null>();
function accessFilterOf(auth: AuthContext): AccessFilter | undefined {
  let filter = accessFilters.get(auth);
  if (filter === undefined) accessFilters.set(auth, (filter = accessFilterFor(auth) ?? null));
  return filter ?? undefined;
}

/** Registers the FHIR REST API under the prefix this plugin is mounted at (`/fhir`). */
export async function fhirRoutes(app: FastifyInstance, deps: FhirRouteDeps): Promise<void> {
  const knownType = (type: string) => {
    if (!deps.validator.isResourceType(type)) throw errors.notFound(`unknown resource type "${type.slice(0, 64)}"`);
  };
  const authorize = (request: FastifyRequest, resourceType: string, permission: Permission) => {
    const auth = request.auth;
    if (!auth || !scopesAllow(auth.scopes, resourceType, permission)) {
      throw errors.forbidden(`the access token's scopes do not allow '${permission}' on ${resourceType}`);
    }
  };
  /** Every type-level route: the type must exist and the token's scopes must allow the action. */
  const guard = (request: FastifyRequest, resourceType: string, permission: Permission) => {
    knownType(resourceType);
    authorize(request, resourceType, permission);
  };
  /** What the caller may see (types, Patient compartment of `patient/` scopes); undefined: all. */
  const accessOf = (request: FastifyRequest): AccessFilter | undefined => (request.auth ? accessFilterOf(request.auth) : undefined);
  /**
   * A type the token sees only partly (`patient/` compartment, granular scope): the resource must
   * be visible, else 403 (SMART: denials are 403; the id may exist but is not the caller's to see).
   */
  const ensureVisible = async (request: FastifyRequest, type: string, id: string) => {
    const filter = accessOf(request);
    if (!rowRestricted(filter, type)) return;
    const found = await deps.search.search({ resourceType: type, params: [['_id', id], ['_summary', 'count']], baseUrl: deps.fhirBase, accessFilter: filter });
    if ((found.total ?? 0) > 0) return;
    throw errors.forbidden(`${type}/${id.slice(0, 64)} is outside what the access token may see (patient compartment or granular scope)`);
  };
  /**
   * Writes of a `patient/`-confined type: the new body must be in the token patient's compartment
   * (checked in memory), and conditional writes are refused (their match would not be confined).
   */
  const checkConfinedWrite = (request: FastifyRequest, type: string, write: { conditional: boolean; body?: unknown }) => {
    const filter = accessOf(request);
    if (!confinedToPatient(filter, type)) return;
    if (write.conditional) throw errors.forbidden(`conditional writes of ${type} are not available to a token confined to one patient's compartment`);
    const body = write.body;
    // A PATCH body (Parameters, JSON Patch) is not the resource: its target was checked by id.
    if (typeof body !== 'object' || body === null || (body as Resource).resourceType !== type) return;
    if (!filter?.patient || !deps.search.inCompartment(body as Resource, { type: 'Patient', id: filter.patient })) {
      throw errors.forbidden(`the ${type} written is not in the patient compartment the access token is confined to`);
    }
  };
  /**
   * History shows only the versions the caller may see, each judged on its own content (the
   * search index knows only current versions): undefined when the caller sees everything.
   */
  const historyAccessOf = (request: FastifyRequest): HistoryAccess | undefined => {
    const filter = accessOf(request);
    if (!filter) return undefined;
    return { sql: historyAccessSql(filter), restricted: (type) => rowRestricted(filter, type), visible: deps.search.versionJudge(filter, deps.fhirBase) };
  };
  /**
   * vread: the requested version is judged on its own content (it may have been in the
   * compartment when written and moved out later, or the reverse); the current version also
   * passes when the search (as for read) sees it.
   */
  const ensureVersionVisible = async (request: FastifyRequest, version: StoredVersion) => {
    const access = historyAccessOf(request);
    if (!access || !access.restricted(version.resourceType)) return;
    if (await versionVisibleTo(deps, access, version)) return;
    const current = version.deleted ? undefined : await deps.store.read(version.resourceType, version.id);
    if (current?.versionId === version.versionId) return ensureVisible(request, version.resourceType, version.id);
    throw errors.forbidden(`${version.resourceType}/${version.id.slice(0, 64)} version ${version.versionId} is outside what the access token may see (patient compartment or granular scope)`);
  };
  /**
   * A deleted resource (read) or a deletion version (vread) answers 410 only to a caller who
   * could see what was deleted; to others it is the 403 of any resource outside their access.
   */
  const ensureDeletionVisible = async (request: FastifyRequest, type: string, id: string, versionId?: string) => {
    if (!rowRestricted(accessOf(request), type)) return;
    checkId(id);
    const version = versionId === undefined ? await deps.store.read(type, id) : await deps.store.vread(type, id, versionId);
    if (version?.deleted) await ensureVersionVisible(request, version);
  };
  /** read (no `vid`) or vread with every check a read makes: scopes, a deletion's visibility, compartment or granular access. */
  const readVisible = async (request: FastifyRequest, type: string, id: string, vid?: string): Promise<InteractionResult> => {
    guard(request, type, 'r');
    await ensureDeletionVisible(request, type, id, vid);
    if (vid === undefined) {
      const result = await read(deps, type, id);
      await ensureVisible(request, type, id);
      return result;
    }
    const result = await vread(deps, type, id, vid);
    if (result.version) await ensureVersionVisible(request, result.version);
    return result;
  };
  const send = (request: FastifyRequest, reply: FastifyReply, result: InteractionResult) =>
    sendResult(request, reply, result, outputOptions(queryOf(request)), deps.fhirBase);

  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config?.public) return;
    request.auth = await deps.tokens.verify(request.headers.authorization);
  });

  app.get('/metadata', { config: { public: true } }, async (request, reply) => {
    const options = outputOptions(queryOf(request));
    return reply.type(FHIR_JSON).send(JSON.stringify(deps.capabilityStatement(), null, options.pretty ? 2 : undefined));
  });

  // $versions (CapabilityStatement-versions): the FHIR versions of this endpoint. Besides the
  // Parameters resource, the plain forms the operation defines for Accept application/json and
  // application/xml.
  app.get('/$versions', { config: { public: true } }, async (request, reply) => {
    const first = (header(request, 'accept') ?? '').split(',')[0]!.split(';')[0]!.trim().toLowerCase();
    const query = queryOf(request);
    if (!query.has('_format')) {
      if (first === 'application/json') return reply.type('application/json; charset=utf-8').send(JSON.stringify({ versions: [FHIR_VERSION], default: FHIR_VERSION }));
      if (first === 'application/xml' || first === 'text/xml') return reply.type('application/xml; charset=utf-8').send(`<versions><version>${FHIR_VERSION}</version><default>${FHIR_VERSION}</default></versions>`);
    }
    const options = outputOptions(query);
    const parameters: Parameters = { resourceType: 'Parameters', parameter: [{ name: 'version', valueCode: FHIR_VERSION }, { name: 'default', valueCode: FHIR_VERSION }] };
    return reply.type(FHIR_JSON).send(JSON.stringify(parameters, null, options.pretty ? 2 : undefined));
  });

  // batch / transaction at the base URL
  const permissionByMethod: Record<string, Permission> = { GET: 'r', HEAD: 'r', POST: 'c', PUT: 'u', PATCH: 'u', DELETE: 'd' };
  /** One Bundle entry as the route of its own request would check it (type, action, compartment, version). */
  const checkEntry = async (request: FastifyRequest, entry: NonNullable<Bundle['entry']>[number]) => {
    const path = (entry.request?.url ?? '').replace(`${deps.fhirBase}/`, '');
    const [type, id, historyWord, versionId] = path.split('?')[0]!.split('/');
    const permission = permissionByMethod[entry.request?.method ?? ''];
    if (!type || !permission || !deps.validator.isResourceType(type)) return;
    authorize(request, type, permission);
    // Entries naming one resource of a partly visible type: it (or the version named) must be visible.
    if (id && !id.startsWith('$') && !id.startsWith('_')) {
      const version = historyWord === '_history' && versionId && permission === 'r' ? await deps.store.vread(type, id, versionId) : undefined;
      if (version) await ensureVersionVisible(request, version);
      else await ensureVisible(request, type, id);
    }
    if (permission !== 'r') checkConfinedWrite(request, type, { conditional: path.includes('?') || !!entry.request?.ifNoneExist, body: entry.resource });
  };
  app.post('/', async (request, reply) => {
    // Shape first: the scope check below reads every entry's request.
    const bundle: Bundle = checkBundleShape(request.body);
    // Each entry the token may not perform is refused: in a batch that entry alone (its own
    // 403 entry response, the others go on), in a transaction the whole Bundle.
    const denied = new Map<number, FhirError>();
    for (const [index, entry] of (bundle.entry ?? []).entries()) {
      try {
        await checkEntry(request, entry);
      } catch (e) {
        if (!(e instanceof FhirError)) throw e;
        if (bundle.type !== 'batch') throw entryError(index, e);
        denied.set(index, entryError(index, e));
      }
    }
    // Searches inside the Bundle see what the caller may see (types, includes, compartment).
    const accessFilter = accessOf(request);
    const port = deps.search;
    const scoped: InteractionDeps = accessFilter
      ? {
          ...deps,
          search: {
            findIds: port.findIds.bind(port),
            inCompartment: port.inCompartment.bind(port),
            versionJudge: port.versionJudge.bind(port),
            metaSummary: port.metaSummary.bind(port),
            search: (input) => port.search({ ...input, accessFilter }),
          },
        }
      : deps;
    return send(request, reply, await processBundle(scoped, request.body, preferReturn(request), denied));
  });

  // Reindex progress of SearchParameters created at run time: a Parameters resource.
  app.get('/SearchParameter/$reindex-status', async (request, reply) => {
    authorize(request, 'SearchParameter', 'r');
    const body = {
      resourceType: 'Parameters',
      parameter: deps.reindexStatus().map((s) => ({
        name: 'searchParameter',
        part: [
          { name: 'url', valueUri: s.url },
          { name: 'state', valueCode: s.state },
          { name: 'resourcesDone', valueInteger: s.resourcesDone },
          ...(s.error ? [{ name: 'error', valueString: s.error }] : []),
        ],
      })),
    };
    return reply.type(FHIR_JSON).send(JSON.stringify(body));
  });

  // history: system, type, instance
  // Every level shows only the versions the token may read (types in scope, compartment, granular).
  app.get('/_history', async (request, reply) => {
    if (!request.auth?.scopes.some((s) => s.permissions.has('r'))) throw errors.forbidden("the access token's scopes allow reading no resource type");
    return send(request, reply, await history(deps, {}, queryOf(request), historyAccessOf(request)));
  });
  app.get<{ Params: TypeParams }>('/:type/_history', async (request, reply) => {
    const { type } = request.params;
    guard(request, type, 'r');
    return send(request, reply, await history(deps, { resourceType: type }, queryOf(request), historyAccessOf(request)));
  });
  app.get<{ Params: InstanceParams }>('/:type/:id/_history', async (request, reply) => {
    const { type, id } = request.params;
    guard(request, type, 'r');
    return send(request, reply, await history(deps, { resourceType: type, id }, queryOf(request), historyAccessOf(request)));
  });

  // search
  const search = async (request: FastifyRequest, reply: FastifyReply, type: string, params: [string, string][], compartment?: { type: string; id: string }) => {
    guard(request, type, 's');
    const bundle = await deps.search.search({ resourceType: type, params, baseUrl: deps.fhirBase, strict: preferStrict(request), compartment, accessFilter: accessOf(request) });
    return send(request, reply, { status: 200, body: bundle });
  };
  app.get<{ Params: TypeParams }>('/:type', async (request, reply) =>
    search(request, reply, request.params.type, [...queryOf(request)]),
  );
  app.post<{ Params: TypeParams }>('/:type/_search', async (request, reply) => {
    const form = request.body && typeof request.body === 'object' ? (request.body as Record<string, string | string[]>) : {};
    const params: [string, string][] = [...queryOf(request)];
    for (const [name, value] of Object.entries(form)) {
      for (const v of Array.isArray(value) ? value : [value]) params.push([name, String(v)]);
    }
    return search(request, reply, request.params.type, params);
  });
  // Whole-system search: every type the token may search, or those named in `_type`.
  const systemSearch = async (request: FastifyRequest, reply: FastifyReply, params: [string, string][]) => {
    const scopes = request.auth?.scopes ?? [];
    const requested = params.filter(([name]) => name === '_type').flatMap(([, v]) => v.split(','));
    // Unknown types are the search's 400; known ones the token may not search are a 403.
    const refused = requested.filter((t) => deps.validator.isResourceType(t) && !scopesAllow(scopes, t, 's'));
    if (refused.length > 0) throw errors.forbidden(`the access token's scopes do not allow searching ${refused.join(', ').slice(0, 200)}`);
    if (requested.length === 0 && !scopesAllow(scopes, '*', 's')) {
      const named = new Set(scopes.map((s) => s.resourceType));
      const allowed = [...named].filter((t) => deps.validator.isResourceType(t) && scopesAllow(scopes, t, 's'));
      if (allowed.length === 0) throw errors.forbidden("the access token's scopes allow searching no resource type");
      params.push(['_type', allowed.sort().join(',')]);
    }
    const bundle = await deps.search.search({ params, baseUrl: deps.fhirBase, strict: preferStrict(request), accessFilter: accessOf(request) });
    return send(request, reply, { status: 200, body: bundle });
  };
  app.get('/', async (request, reply) => systemSearch(request, reply, [...queryOf(request)]));
  app.post('/_search', async (request, reply) => {
    const form = request.body && typeof request.body === 'object' ? (request.body as Record<string, string | string[]>) : {};
    const params: [string, string][] = [...queryOf(request)];
    for (const [name, value] of Object.entries(form)) {
      for (const v of Array.isArray(value) ? value : [value]) params.push([name, String(v)]);
    }
    return systemSearch(request, reply, params);
  });
  app.get<{ Params: InstanceParams & { target: string } }>('/:type/:id/:target', async (request, reply) => {
    const { type, id, target } = request.params;
    knownType(type);
    if (target !== '*') return search(request, reply, target, [...queryOf(request)], { type, id });
    // Everything in the compartment, limited to the types the token may search.
    const params: [string, string][] = [...queryOf(request)];
    const members = [...new Set([type, ...compartmentTypes(type)])];
    const allowed = members.filter((t) => request.auth && scopesAllow(request.auth.scopes, t, 's'));
    if (allowed.length === 0) throw errors.forbidden(`the access token's scopes allow searching none of the ${type} compartment types`);
    const requested = params.filter(([name]) => name === '_type').flatMap(([, v]) => v.split(','));
    const refused = requested.filter((t) => !allowed.includes(t));
    if (refused.length > 0) throw errors.forbidden(`the access token's scopes do not allow searching ${refused.join(', ').slice(0, 200)}`);
    if (requested.length === 0 && allowed.length < members.length) params.push(['_type', allowed.join(',')]);
    const bundle = await deps.search.search({ resourceType: '*', params, baseUrl: deps.fhirBase, strict: preferStrict(request), compartment: { type, id }, accessFilter: accessOf(request) });
    return send(request, reply, { status: 200, body: bundle });
  });

  // create, conditional update / delete / patch at type level
  app.post<{ Params: TypeParams }>('/:type', async (request, reply) => {
    const { type } = request.params;
    guard(request, type, 'c');
    checkConfinedWrite(request, type, { conditional: header(request, 'if-none-exist') !== undefined, body: request.body });
    return send(request, reply, await create(deps, type, request.body, { ifNoneExist: header(request, 'if-none-exist') }));
  });
  app.put<{ Params: TypeParams }>('/:type', async (request, reply) => {
    const { type } = request.params;
    guard(request, type, 'u');
    checkConfinedWrite(request, type, { conditional: true });
    const query = rawQuery(request);
    if (!query) throw errors.incorrect('PUT on a type needs search parameters (conditional update) or an id in the URL');
    return send(request, reply, await conditionalUpdate(deps, type, query, request.body, header(request, 'if-match')));
  });
  app.delete<{ Params: TypeParams }>('/:type', async (request, reply) => {
    const { type } = request.params;
    guard(request, type, 'd');
    checkConfinedWrite(request, type, { conditional: true });
    const query = rawQuery(request);
    if (!query) throw errors.incorrect('DELETE on a type needs search parameters (conditional delete) or an id in the URL');
    return send(request, reply, await conditionalRemove(deps, type, query));
  });
  app.patch<{ Params: TypeParams }>('/:type', async (request, reply) => {
    const { type } = request.params;
    guard(request, type, 'u');
    checkConfinedWrite(request, type, { conditional: true });
    const query = rawQuery(request);
    if (!query) throw errors.incorrect('PATCH on a type needs search parameters (conditional patch) or an id in the URL');
    const document = patchDocumentFrom(header(request, 'content-type'), request.body);
    return send(request, reply, await conditionalPatch(deps, type, query, document, header(request, 'if-match')));
  });

  // $validate
  app.post<{ Params: TypeParams }>('/:type/$validate', async (request, reply) => {
    const { type } = request.params;
    guard(request, type, 'r');
    return send(request, reply, await validateOperation(deps, type, undefined, request.body, queryOf(request)));
  });
  app.post<{ Params: InstanceParams }>('/:type/:id/$validate', async (request, reply) => {
    const { type, id } = request.params;
    guard(request, type, 'r');
    await ensureVisible(request, type, id);
    return send(request, reply, await validateOperation(deps, type, id, request.body, queryOf(request)));
  });
  app.get<{ Params: InstanceParams }>('/:type/:id/$validate', async (request, reply) => {
    const { type, id } = request.params;
    guard(request, type, 'r');
    await ensureVisible(request, type, id);
    return send(request, reply, await validateOperation(deps, type, id, undefined, queryOf(request)));
  });

  // $meta, $meta-add, $meta-delete (src/interactions/meta.ts). The summaries over a type or the
  // whole system list what is in use on resources the token sees whole: a token seeing part of a
  // type (patient compartment, granular scope) gets a 403 for it, as a summary cannot be filtered
  // row by row; at system level such types are left out, as a system search leaves them out.
  const systemMeta = async (request: FastifyRequest, reply: FastifyReply) => {
    const filter = accessOf(request);
    const scopes = request.auth?.scopes ?? [];
    const types = deps.validator.resourceTypes().filter((t) => scopesAllow(scopes, t, 'r') && !rowRestricted(filter, t));
    if (types.length === 0) throw errors.forbidden("the access token's scopes allow reading no resource type whole");
    return send(request, reply, { status: 200, body: metaParameters(await deps.search.metaSummary(types)) });
  };
  app.get('/$meta', systemMeta);
  app.post('/$meta', systemMeta);
  const typeMeta = async (request: FastifyRequest<{ Params: TypeParams }>, reply: FastifyReply) => {
    const { type } = request.params;
    guard(request, type, 'r');
    if (rowRestricted(accessOf(request), type)) throw errors.forbidden(`the access token sees part of ${type} only (patient compartment or granular scope): $meta over the type is not available to it`);
    return send(request, reply, { status: 200, body: metaParameters(await deps.search.metaSummary([type])) });
  };
  app.get<{ Params: TypeParams }>('/:type/$meta', typeMeta);
  app.post<{ Params: TypeParams }>('/:type/$meta', typeMeta);
  const instanceMeta = async (request: FastifyRequest<{ Params: InstanceParams & { vid?: string } }>, reply: FastifyReply) => {
    const { type, id, vid } = request.params;
    return send(request, reply, metaOf((await readVisible(request, type, id, vid)).version!));
  };
  app.get<{ Params: InstanceParams }>('/:type/:id/$meta', instanceMeta);
  app.post<{ Params: InstanceParams }>('/:type/:id/$meta', instanceMeta);
  app.get<{ Params: InstanceParams & { vid: string } }>('/:type/:id/_history/:vid/$meta', instanceMeta);
  app.post<{ Params: InstanceParams & { vid: string } }>('/:type/:id/_history/:vid/$meta', instanceMeta);
  const metaChange = (change: MetaChange) => async (request: FastifyRequest<{ Params: InstanceParams & { vid?: string } }>, reply: FastifyReply) => {
    const { type, id, vid } = request.params;
    guard(request, type, 'u');
    await ensureVisible(request, type, id);
    return send(request, reply, await changeMeta(deps, type, id, request.body, change, vid));
  };
  app.post<{ Params: InstanceParams }>('/:type/:id/$meta-add', metaChange('add'));
  app.post<{ Params: InstanceParams }>('/:type/:id/$meta-delete', metaChange('delete'));
  app.post<{ Params: InstanceParams & { vid: string } }>('/:type/:id/_history/:vid/$meta-add', metaChange('add'));
  app.post<{ Params: InstanceParams & { vid: string } }>('/:type/:id/_history/:vid/$meta-delete', metaChange('delete'));

  // Composition/$document (src/operations/document.ts): the Composition must be visible; what it
  // references is included as far as the caller may read it; persisting needs create on Bundle.
  const documentOperation = async (request: FastifyRequest<{ Params: { id?: string } }>, reply: FastifyReply) => {
    guard(request, 'Composition', 'r');
    const wanted = documentRequest(queryOf(request), request.method === 'POST' ? request.body : undefined, request.params.id, deps.fhirBase);
    checkId(wanted.id);
    if (wanted.persist) authorize(request, 'Bundle', 'c');
    const composition = parseStored((await readVisible(request, 'Composition', wanted.id)).version!) as Composition;
    return send(request, reply, await composeDocument(deps, composition, { persist: wanted.persist, accessFilter: accessOf(request) }));
  };
  app.get('/Composition/$document', documentOperation);
  app.post('/Composition/$document', documentOperation);
  app.get<{ Params: { id: string } }>('/Composition/:id/$document', documentOperation);
  app.post<{ Params: { id: string } }>('/Composition/:id/$document', documentOperation);

  // instance level
  app.get<{ Params: InstanceParams }>('/:type/:id', async (request, reply) => {
    const { type, id } = request.params;
    const result = await readVisible(request, type, id);
    const v = result.version;
    if (v && notModified(request, v.versionId, v.lastUpdated)) {
      return reply.code(304).header('ETag', `W/"${v.versionId}"`).send();
    }
    return send(request, reply, result);
  });
  app.get<{ Params: InstanceParams & { vid: string } }>('/:type/:id/_history/:vid', async (request, reply) => {
    const { type, id, vid } = request.params;
    const result = await readVisible(request, type, id, vid);
    const v = result.version;
    if (v && notModified(request, v.versionId, v.lastUpdated)) {
      return reply.code(304).header('ETag', `W/"${v.versionId}"`).send();
    }
    return send(request, reply, result);
  });
  app.put<{ Params: InstanceParams }>('/:type/:id', async (request, reply) => {
    const { type, id } = request.params;
    guard(request, type, 'u');
    await ensureVisible(request, type, id);
    checkConfinedWrite(request, type, { conditional: false, body: request.body });
    return send(request, reply, await update(deps, type, id, request.body, header(request, 'if-match')));
  });
  app.patch<{ Params: InstanceParams }>('/:type/:id', async (request, reply) => {
    const { type, id } = request.params;
    guard(request, type, 'u');
    await ensureVisible(request, type, id);
    const document = patchDocumentFrom(header(request, 'content-type'), request.body);
    return send(request, reply, await patch(deps, type, id, document, header(request, 'if-match')));
  });
  app.delete<{ Params: InstanceParams }>('/:type/:id', async (request, reply) => {
    const { type, id } = request.params;
    guard(request, type, 'd');
    await ensureVisible(request, type, id);
    return send(request, reply, await remove(deps, type, id, header(request, 'if-match')));
  });
}
