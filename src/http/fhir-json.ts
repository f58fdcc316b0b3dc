import type { FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import secureJson from 'secure-json-parse';
import { errors } from '../fhir/errors.js';

/** JSON media types the FHIR API accepts (https://hl7.org/fhir/R4/http.html#mime-type). */
const JSON_TYPES = ['application/fhir+json', 'application/json', 'application/json-patch+json'];

/** A JSON `\u0000` escape not itself escaped (an odd run of backslashes before it), or a raw NUL. */
const ESCAPED_NUL = /(?:^|[^\\])(?:\\\\)*\\u0000|\u0000/;

/** Real FHIR resources nest far less deep; deeper input is refused before anything recurses over it. */
export const MAX_JSON_DEPTH = 128;

/** Nesting depth of a JSON text, counting brackets outside strings (one linear pass). */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \\ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91 /* { [ */) {
      if (++depth > limit) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
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
    if (ESCAPED_NUL.test(text)) {
      // PostgreSQL text and jsonb cannot hold U+0000; FHIR strings never need it.
      done(errors.incorrect('the request body contains a NUL character (\\u0000), which FHIR strings may not hold'), undefined);
      return;
    }
    if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) {
      done(errors.incorrect(`the request body nests deeper than ${MAX_JSON_DEPTH} levels`), undefined);
      return;
    }
    try {
      done(null, secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' }));
    } catch (e) {
      const reason = e instanceof SyntaxError ? e.message : 'the body carries a forbidden key (__proto__ or constructor.prototype)';
      done(errors.incorrect(`the request body is not valid JSON: ${reason.slice(0, 200)}`), undefined);
    }
  });
  await app.register(formbody);
}
