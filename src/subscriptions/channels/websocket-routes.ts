import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Parameters } from 'fhir/r4.js';
import type { RawData, WebSocket } from 'ws';
import type { AuthContext, TokenService } from '../../auth/token-service.js';
import { errors, FhirError } from '../../fhir/errors.js';
import type { BindingMode, WebSocketHub } from './websocket-hub.js';
import { BINDING_TOKEN_TTL_SECONDS, grantOf, type BindingGrant, type BindingTokens } from './websocket-token.js';

/** For the CapabilityStatement (Subscription). */
export const WEBSOCKET_OPERATIONS = [
  { name: 'get-ws-binding-token', definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token' },
];

/** Where clients connect (the `websocket-url` of `$get-ws-binding-token`). */
export const WEBSOCKET_PATH = '/ws/subscriptions';

/** Largest client message: a bind command with a binding token. */
const MAX_MESSAGE_BYTES = 16 * 1024;
/** Sockets that answer no ping frame within this long are dropped (proxies, dead peers). */
const KEEPALIVE_MS = 30_000;
/** A socket sending more commands than this in one window is closed (each bind costs searches). */
const MAX_COMMANDS_PER_WINDOW = 100;
const COMMAND_WINDOW_MS = 10_000;

export interface WebsocketRouteDeps {
  hub: WebSocketHub;
  tokens: TokenService;
  bindingTokens: BindingTokens;
  /** Public base URL without /fhir (BASE_URL): the socket URL handed out is derived from it. */
  baseUrl: string;
  log: (message: string, error?: unknown) => void;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The bearer token of a websocket upgrade request, when it sent one. */
    socketAuth?: AuthContext;
  }
}

export function websocketUrl(baseUrl: string): string {
  return `${baseUrl.replace(/^http/, 'ws')}${WEBSOCKET_PATH}`;
}

/**
 * The websocket endpoint and `Subscription/[id]/$get-ws-binding-token`, registered on the root
 * instance (`$get-ws-binding-token` under /fhir: a static segment, preferred by fastify's router
 * over the REST plugin's `/:type/:id/:target`).
 */
export async function websocketRoutes(app: FastifyInstance, deps: WebsocketRouteDeps): Promise<void> {
  await app.register(websocket, { options: { maxPayload: MAX_MESSAGE_BYTES } });

  app.get(
    WEBSOCKET_PATH,
    {
      websocket: true,
      // The upgrade may carry a bearer token (R4 `bind <id>`); a bad one is refused before the upgrade.
      preValidation: async (request) => {
        if (request.headers.authorization) request.socketAuth = await deps.tokens.verify(request.headers.authorization);
      },
    },
    (socket, request) => serveSocket(socket, request.socketAuth, deps),
  );

  const getToken = async (request: FastifyRequest, reply: FastifyReply, ids: string[]) => {
    const auth = await deps.tokens.verify(request.headers.authorization);
    if (ids.length === 0) throw errors.incorrect('name at least one Subscription (id parameter)', ['id']);
    if (ids.length > 64) throw errors.incorrect('at most 64 Subscriptions per binding token', ['id']);
    const grant = grantOf(auth);
    for (const id of ids) {
      const result = await deps.hub.bindable(grant, id);
      if ('problem' in result) {
        const message = `Subscription/${id.slice(0, 64)}: ${result.problem}`;
        throw result.category === 'forbidden' ? errors.forbidden(message) : result.category === 'not-found' ? errors.notFound(message) : errors.incorrect(message, ['id']);
      }
    }
    const expiresAt = Math.min(Math.floor(Date.now() / 1000) + BINDING_TOKEN_TTL_SECONDS, Math.floor(auth.expiresAt));
    const token = deps.bindingTokens.issue({ subscriptions: [...new Set(ids)], expiresAt, grant });
    const body: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'token', valueString: token },
        { name: 'expiration', valueDateTime: new Date(expiresAt * 1000).toISOString() },
        ...[...new Set(ids)].map((id) => ({ name: 'subscription', valueString: id })),
        { name: 'websocket-url', valueUrl: websocketUrl(deps.baseUrl) },
      ],
    };
    return reply.type('application/fhir+json; charset=utf-8').header('Cache-Control', 'no-store').send(JSON.stringify(body));
  };
  const instance = (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => getToken(request, reply, [request.params.id]);
  app.get('/fhir/Subscription/:id/$get-ws-binding-token', instance);
  app.post('/fhir/Subscription/:id/$get-ws-binding-token', instance);
  // Type level: ids as `id` query parameters or Parameters.parameter `id`.
  const type = (request: FastifyRequest, reply: FastifyReply) => getToken(request, reply, idsOf(request));
  app.get('/fhir/Subscription/$get-ws-binding-token', type);
  app.post('/fhir/Subscription/$get-ws-binding-token', type);
}

function idsOf(request: FastifyRequest): string[] {
  const url = request.raw.url ?? '';
  const q = url.indexOf('?');
  const ids = q >= 0 ? new URLSearchParams(url.slice(q + 1)).getAll('id') : [];
  const body = request.body as Partial<Parameters> | undefined;
  if (body && typeof body === 'object') {
    if (body.resourceType !== 'Parameters') throw errors.incorrect('the body of $get-ws-binding-token must be a Parameters resource');
    for (const p of body.parameter ?? []) {
      if (p.name !== 'id') continue;
      const value = p.valueId ?? p.valueString;
      if (typeof value !== 'string') throw errors.incorrect('parameter id needs valueId or valueString', ['Parameters.parameter']);
      ids.push(value);
    }
  }
  return ids.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
}

/** One client socket: commands in, `bound` / `ping` / Bundles / `error` out. */
function serveSocket(socket: WebSocket, upgradeAuth: AuthContext | undefined, deps: WebsocketRouteDeps): void {
  let chain = Promise.resolve();
  let alive = true;
  const keepalive = setInterval(() => {
    if (!alive) return socket.terminate();
    alive = false;
    socket.ping();
  }, KEEPALIVE_MS);
  keepalive.unref();
  socket.on('pong', () => {
    alive = true;
  });
  // Listeners attached at once (before any await) so no early message is lost; commands run in order.
  let windowStart = Date.now();
  let commands = 0;
  socket.on('message', (data: RawData, isBinary: boolean) => {
    if (Date.now() - windowStart > COMMAND_WINDOW_MS) {
      windowStart = Date.now();
      commands = 0;
    }
    if (++commands > MAX_COMMANDS_PER_WINDOW) {
      // 1008: policy violation.
      if (commands === MAX_COMMANDS_PER_WINDOW + 1) socket.close(1008, 'too many commands');
      return;
    }
    chain = chain
      .then(() => handleCommand(socket, isBinary ? '' : rawText(data), upgradeAuth, deps))
      .catch((e: unknown) => {
        deps.log('websocket command failed', e);
        sendIfOpen(socket, `error ${e instanceof FhirError ? e.message : 'the command failed'}`);
      });
  });
  socket.on('close', () => {
    clearInterval(keepalive);
    deps.hub.dropSocket(socket);
  });
  socket.on('error', () => socket.terminate());
}

function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data as ArrayBuffer).toString('utf8');
}

function sendIfOpen(socket: WebSocket, text: string): void {
  if (socket.readyState === socket.OPEN) socket.send(text);
}

async function handleCommand(socket: WebSocket, text: string, upgradeAuth: AuthContext | undefined, deps: WebsocketRouteDeps): Promise<void> {
  const [command = '', argument = '', ...rest] = text.trim().split(/\s+/);
  if (rest.length > 0 || !argument) return sendIfOpen(socket, 'error expected "bind <id>", "bind-with-token <token>" or "unbind <id>"');
  if (command === 'bind-with-token') {
    const claims = deps.bindingTokens.verify(argument);
    if (!claims) return sendIfOpen(socket, 'error the binding token is invalid or expired');
    for (const id of claims.subscriptions) await bindOne(socket, id, claims.grant, 'bundle', deps);
    return;
  }
  if (command === 'bind') {
    if (!upgradeAuth) return sendIfOpen(socket, `error ${argument.slice(0, 64)} bind needs the upgrade request to carry an access token (Authorization: Bearer); or use bind-with-token`);
    if (upgradeAuth.expiresAt <= Date.now() / 1000) return sendIfOpen(socket, `error ${argument.slice(0, 64)} access token expired`);
    return bindOne(socket, argument, grantOf(upgradeAuth), 'ping', deps);
  }
  if (command === 'unbind') {
    deps.hub.unbind(socket, argument);
    return sendIfOpen(socket, `unbound ${argument.slice(0, 64)}`);
  }
  sendIfOpen(socket, `error unknown command "${command.slice(0, 32)}"`);
}

async function bindOne(socket: WebSocket, id: string, grant: BindingGrant, mode: BindingMode, deps: WebsocketRouteDeps): Promise<void> {
  const result = await deps.hub.bindable(grant, id);
  if ('problem' in result) return sendIfOpen(socket, `error ${id.slice(0, 64)} ${result.problem}`);
  const bound = deps.hub.bind(socket, id, grant, mode);
  if (bound.problem) return sendIfOpen(socket, `error ${id} ${bound.problem}`);
  sendIfOpen(socket, `bound ${id}`);
}
