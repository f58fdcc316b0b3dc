import { AsyncLocalStorage } from 'node:async_hooks';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthContext } from '../auth/token-service.js';

/**
 * Who is writing, for the Subscription write hook: the HTTP request being served (its token is
 * verified after this context is entered, so it is read lazily), or a server-side write (status
 * changes by the delivery layer) that must keep the grant the client recorded.
 */
type WriteContext = { request: FastifyRequest } | { system: true };

const context = new AsyncLocalStorage<WriteContext>();

/** Every request runs in its own context (registered at the root, before any route plugin). */
export function registerWriteContext(http: FastifyInstance): void {
  http.addHook('onRequest', (request, _reply, done) => context.run({ request }, done));
}

/** Runs `work` as a server-side write: no client's grant is recorded by what it writes. */
export function asSystem<T>(work: () => Promise<T>): Promise<T> {
  return context.run({ system: true }, work);
}

/** Runs `work` outside any request (background work started from a request must not inherit it). */
export function detached<T>(work: () => T): T {
  return context.exit(work);
}

/** The token of the API request writing right now; undefined for server-side writes and no request. */
export function currentWriter(): AuthContext | undefined {
  const c = context.getStore();
  return c && 'request' in c ? c.request.auth : undefined;
}

/**
 * The two exemptions hospital rules make, named once: most rules judge what API callers write
 * and leave alone what arrives with no caller (`npm run import`, HL7 v2 over MLLP, server work,
 * which are stored as sent); a few (signatures, BMI) apply only to signed-in users, not backend
 * clients either.
 */
export function byApiCaller(): boolean {
  return currentWriter() !== undefined;
}

/** Written by a signed-in user (see `byApiCaller`). */
export function bySignedInUser(): boolean {
  return currentWriter()?.kind === 'user';
}

/** The path of the API request writing right now (without the query); undefined outside a request. */
export function currentRequestPath(): string | undefined {
  const c = context.getStore();
  return c && 'request' in c ? c.request.url.split('?')[0] : undefined;
}

/** Whether the current write was made by the server itself (see `asSystem`). */
export function isSystemWrite(): boolean {
  const c = context.getStore();
  return c !== undefined && 'system' in c;
}
