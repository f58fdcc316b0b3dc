import { readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AuthStore } from '../storage/auth-store.js';
import { redirectUriProblem } from '../auth/redirect-uris.js';

/**
 * The hospital web console (issue 16): a single-page SMART app built by `npm run build`
 * (scripts/build-console.ts: console/ → dist/console) and served here at /console. It signs in
 * through the server's own authorization endpoint as the public client `console` and reads and
 * writes only through the FHIR API.
 */

export const CONSOLE_CLIENT_ID = 'console';
/** What the console may ask for; each user gets the part their role allows (conformance/smart-roles.json). */
export const CONSOLE_SCOPE = 'openid fhirUser launch/patient user/*.cruds patient/*.cruds';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json; charset=utf-8',
};

/** No inline script or style, nothing from elsewhere, never framed (clickjacking of the actions). */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

function secureHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('Content-Security-Policy', CSP)
    .header('X-Content-Type-Options', 'nosniff')
    .header('X-Frame-Options', 'DENY')
    .header('Referrer-Policy', 'no-referrer')
    .header('Cross-Origin-Opener-Policy', 'same-origin');
}

/**
 * Registers (or refreshes) the console as a public SMART client: PKCE S256, no secret,
 * redirect `${baseUrl}/console/`. Returns why the redirect cannot work, if it cannot (plain
 * http on a host that is not loopback: put the server behind https).
 */
export async function registerConsoleClient(store: AuthStore, baseUrl: string): Promise<string | undefined> {
  const redirectUri = `${baseUrl}/console/`;
  await store.putClient({
    clientId: CONSOLE_CLIENT_ID,
    kind: 'public',
    redirectUris: [redirectUri],
    grantTypes: ['authorization_code'],
    scope: CONSOLE_SCOPE,
    name: 'Hospital console',
    metadata: { token_endpoint_auth_method: 'none', builtIn: 'console' },
  });
  return redirectUriProblem(redirectUri);
}

interface BuiltFile {
  body: Buffer;
  type: string;
  /** Names with a content hash never change: cached for a year. */
  immutable: boolean;
}

/** The built files, read once; an unbuilt console answers 503 with how to build it. */
function loadBuilt(dir: string): Map<string, BuiltFile> {
  const files = new Map<string, BuiltFile>();
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return files;
  }
  for (const name of names) {
    const type = CONTENT_TYPES[extname(name)];
    if (!type) continue;
    files.set(name, { body: readFileSync(join(dir, name)), type, immutable: /-[A-Z0-9]{8,}\.(js|css)$/.test(name) });
  }
  return files;
}

export interface ConsoleRouteDeps {
  /** dist/console */
  dir: string;
  baseUrl: string;
  fhirBase: string;
}

export async function consoleRoutes(app: FastifyInstance, deps: ConsoleRouteDeps): Promise<void> {
  let files: Map<string, BuiltFile> | undefined;
  let builtAt = -1;
  // Read once, and again after `npm run build` rewrote index.html (a running server picks up a new build).
  const built = () => {
    let mtime = 0;
    try {
      mtime = statSync(join(deps.dir, 'index.html')).mtimeMs;
    } catch {
      // not built
    }
    if (!files || mtime !== builtAt) {
      files = loadBuilt(deps.dir);
      builtAt = mtime;
    }
    return files;
  };
  const config = Buffer.from(JSON.stringify({ fhirBase: deps.fhirBase, clientId: CONSOLE_CLIENT_ID, scope: CONSOLE_SCOPE, consoleUrl: `${deps.baseUrl}/console/` }));

  const serve = (reply: FastifyReply, name: string) => {
    if (name === 'config.json') return secureHeaders(reply).header('Cache-Control', 'no-cache').type(CONTENT_TYPES['.json']).send(config);
    const file = built().get(name);
    if (!file) {
      if (built().size === 0) return secureHeaders(reply).code(503).type('text/plain; charset=utf-8').send('The console is not built: run `npm run build`.');
      return secureHeaders(reply).code(404).type('text/plain; charset=utf-8').send('Not found');
    }
    return secureHeaders(reply)
      .header('Cache-Control', file.immutable ? 'public, max-age=31536000, immutable' : 'no-cache')
      .type(file.type)
      .send(file.body);
  };

  // The router ignores trailing slashes: /console and /console/ reach one handler; the page's
  // relative asset paths need the slash.
  app.get('/console', async (request, reply) => {
    const [path, query] = (request.url ?? '').split('?');
    if (!path.endsWith('/')) return reply.redirect(`console/${query ? `?${query}` : ''}`, 302);
    return serve(reply, 'index.html');
  });
  app.get<{ Params: { file: string } }>('/console/:file', async (request, reply) => serve(reply, request.params.file));
}
