import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Binary } from 'fhir/r4.js';
import { FhirError } from '../fhir/errors.js';
import { isFhirJson, varyOnAccept } from './fhir-formats.js';

/**
 * Binary resources in their own format (https://hl7.org/fhir/R4/binary.html#rest): a scanned
 * document, a PDF report, an image is sent and fetched as itself, not wrapped in base64 JSON.
 *   - `POST /fhir/Binary` and `PUT /fhir/Binary/{id}` with a Content-Type that is not FHIR store a
 *     Binary of that `contentType` whose `data` is the body (`X-Security-Context` → its
 *     `securityContext`); everything else about the write (scopes, validation, versions, audit)
 *     is the ordinary create or update.
 *   - A read or vread of a Binary answers the content itself, with its `contentType`, unless the
 *     request asks for FHIR: `_format`, `_summary` or `_elements`, or an Accept header naming a
 *     FHIR or JSON / XML type. (An Accept of `*∕*` or none gets the content, as the page says.)
 * Any other route still refuses a body that is neither FHIR JSON, FHIR XML nor one it parses
 * itself (form, CSV, HL7 v2) with 415.
 */

const RAW = Symbol('raw Binary content');
interface RawContent {
  [RAW]: true;
  content: Buffer;
  contentType: string;
}

/** POST /fhir/Binary, PUT /fhir/Binary/{id} (the query string aside). */
const BINARY_WRITE = /^\/fhir\/Binary(?:\/[^/?#]+)?\/?(?:\?|$)/;
/** GET /fhir/Binary/{id} and /fhir/Binary/{id}/_history/{vid}. */
const BINARY_READ = /^\/fhir\/Binary\/[^/?#]+(?:\/_history\/[^/?#]+)?\/?(?:\?|$)/;
const FHIR_ACCEPT = /fhir\+json|fhir\+xml|json\+fhir|xml\+fhir|application\/json|application\/xml|text\/xml/i;

function isRawContent(body: unknown): body is RawContent {
  return typeof body === 'object' && body !== null && RAW in body;
}

function wantsContent(request: FastifyRequest): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  if (!BINARY_READ.test(request.url)) return false;
  const query = request.query as Record<string, unknown> | undefined;
  if (query && (query._format !== undefined || query._summary !== undefined || query._elements !== undefined)) return false;
  const accept = request.headers.accept;
  return !(typeof accept === 'string' && FHIR_ACCEPT.test(accept));
}

/** The body of a Binary write, kept as it came; undefined for any other request. */
function rawContent(request: FastifyRequest, body: Buffer): RawContent | undefined {
  const type = request.headers['content-type'];
  if ((request.method !== 'POST' && request.method !== 'PUT') || !BINARY_WRITE.test(request.url) || typeof type !== 'string' || type.trim() === '') return undefined;
  return { [RAW]: true, content: body, contentType: type.trim().replace(/\s+/g, ' ') };
}

export function registerBinaryContent(app: FastifyInstance): void {
  // Bodies of types no other parser takes: kept as they are for a Binary write, refused elsewhere.
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
    const raw = rawContent(request, body as Buffer);
    if (raw) {
      done(null, raw);
      return;
    }
    const type = request.headers['content-type'];
    done(new FhirError('unsupported-media-type', `Content-Type ${typeof type === 'string' ? type.slice(0, 80) : '(none)'} is not accepted here: send FHIR JSON or FHIR XML (any type is accepted as the content of a Binary)`), undefined);
  });
  // text/plain keeps fastify's meaning (a string: HL7 v2 over HTTP takes it) except as Binary content.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('text/plain', { parseAs: 'buffer' }, (request, body, done) => {
    done(null, rawContent(request, body as Buffer) ?? (body as Buffer).toString('utf8'));
  });

  // The raw content becomes the Binary resource the create or update route expects.
  app.addHook('preHandler', (request, _reply, done) => {
    if (!isRawContent(request.body)) {
      done();
      return;
    }
    const raw = request.body;
    const binary: Binary = { resourceType: 'Binary', contentType: raw.contentType };
    const id = request.method === 'PUT' ? (request.params as { id?: unknown } | undefined)?.id : undefined;
    if (typeof id === 'string') binary.id = id;
    if (raw.content.length > 0) binary.data = raw.content.toString('base64');
    const context = request.headers['x-security-context'];
    if (typeof context === 'string' && context.trim() !== '') binary.securityContext = { reference: context.trim() };
    request.body = binary;
    done();
  });

  // A Binary read answers its content (before the FHIR format conversion, which then leaves it be).
  app.addHook('onSend', (request, reply, payload, done) => {
    if (reply.statusCode !== 200 || !wantsContent(request) || typeof payload !== 'string' || !isFhirJson(reply.getHeader('content-type'))) {
      done(null, payload);
      return;
    }
    const binary = JSON.parse(payload) as Binary;
    if (binary.resourceType !== 'Binary') {
      done(null, payload);
      return;
    }
    reply.header('content-type', binary.contentType);
    // Whether the bytes or the resource come back depends on Accept: caches must tell them apart.
    varyOnAccept(reply);
    // Content of any type is served from the API's origin: a browser must not run it.
    reply.header('content-security-policy', "sandbox; default-src 'none'");
    if (binary.securityContext?.reference) reply.header('x-security-context', binary.securityContext.reference);
    done(null, binary.data ? Buffer.from(binary.data, 'base64') : Buffer.alloc(0));
  });
}
