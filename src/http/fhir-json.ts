import type { FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import secureJson from 'secure-json-parse';
import { errors } from '../fhir/errors.js';
import { activeWriteProfile, stageStart } from '../storage/write-profile.js';

/** JSON media types the FHIR API accepts (https://hl7.org/fhir/R4/http.html#mime-type). */
const JSON_TYPES = ['application/fhir+json', 'application/json', 'application/json-patch+json'];

/** Real FHIR resources nest far less deep; deeper input is refused before anything recurses over it. */
export const MAX_JSON_DEPTH = 128;

/** What one scan of a JSON body found: nothing wrong, a NUL character, or too deep a nesting. */
export type JsonTextProblem = 'nul' | 'too-deep' | undefined;

/**
 * Checks a JSON text before it is parsed: nesting depth (brackets outside strings) and NUL
 * characters, raw or as a `\u0000` escape inside a string (PostgreSQL text and jsonb cannot hold
 * U+0000). A Synthea Bundle body is megabytes, checked on every write, so the common case is one
 * pass that jumps over string contents with native `indexOf` (most of a FHIR body is strings);
 * only a text that contains `\u0000` somewhere gets the exact character-by-character scan.
 */
export function scanJsonText(text: string, depthLimit: number): JsonTextProblem {
  if (text.indexOf('\0') >= 0) return 'nul';
  if (text.indexOf('\\u0000') >= 0) return exactScan(text, depthLimit);
  let depth = 0;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // to the closing quote: one not preceded by an odd run of backslashes
      let end = text.indexOf('"', i + 1);
      while (end > 0) {
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === 92) backslashes++;
        if ((backslashes & 1) === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (end < 0) return undefined; // unterminated string: JSON.parse reports it
      i = end;
    } else if (c === 123 || c === 91 /* { [ */) {
      if (++depth > depthLimit) return 'too-deep';
    } else if (c === 125 || c === 93) depth--;
  }
  return undefined;
}

/** `scanJsonText` one character at a time, telling a `\u0000` escape from an escaped backslash before `u0000`. */
function exactScan(text: string, depthLimit: number): JsonTextProblem {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* backslash */) {
        if (text.charCodeAt(i + 1) === 117 /* u */ && text.startsWith('0000', i + 2)) return 'nul';
        i++;
      } else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > depthLimit) return 'too-deep';
    } else if (c === 125 || c === 93) depth--;
  }
  return undefined;
}

/**
 * Body parsing for the whole server: FHIR JSON with prototype-poisoning protection (a body
 * carrying `__proto__` or `constructor.prototype` is refused, not silently stripped) and
 * form bodies for `_search` and OAuth.
 */
export async function registerBodyParsers(app: FastifyInstance): Promise<void> {
  app.removeContentTypeParser(['application/json']);
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string;
    if (text.trim() === '') {
      done(errors.incorrect('the request body is empty; a JSON resource was expected'), undefined);
      return;
    }
    const t = activeWriteProfile ? stageStart() : 0;
    const problem = scanJsonText(text, MAX_JSON_DEPTH);
    if (problem === 'nul') {
      // PostgreSQL text and jsonb cannot hold U+0000; FHIR strings never need it.
      done(errors.incorrect('the request body contains a NUL character (\\u0000), which FHIR strings may not hold'), undefined);
      return;
    }
    if (problem === 'too-deep') {
      done(errors.incorrect(`the request body nests deeper than ${MAX_JSON_DEPTH} levels`), undefined);
      return;
    }
    try {
      const parsed: unknown = secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
      activeWriteProfile?.add('parse', t);
      done(null, parsed);
    } catch (e) {
      const reason = e instanceof SyntaxError ? e.message : 'the body carries a forbidden key (__proto__ or constructor.prototype)';
      done(errors.incorrect(`the request body is not valid JSON: ${reason.slice(0, 200)}`), undefined);
    }
  });
  await app.register(formbody);
}
