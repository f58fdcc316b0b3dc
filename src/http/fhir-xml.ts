import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../fhir/errors.js';
import { xmlToResource } from '../fhir/xml/from-xml.js';
import { resourceToXml } from '../fhir/xml/to-xml.js';
import { XML_MEDIA_TYPES, XmlConversionError } from '../fhir/xml/xml-common.js';
import { MAX_JSON_DEPTH } from './fhir-json.js';

/**
 * FHIR XML on the wire (https://hl7.org/fhir/R4/http.html#mime-type, xml.html). The server works
 * on JSON throughout; XML is converted at this edge only:
 *   - request bodies in `application/fhir+xml` (or `application/xml`, `text/xml`) become the JSON
 *     object a JSON body would have been, so validation, hospital rules, storage and every
 *     interaction are the same for both formats;
 *   - a response whose body is FHIR JSON (resources, Bundles, OperationOutcomes, errors
 *     included) is written as XML when `_format` asks for it or, without `_format`, when the
 *     Accept header ranks an XML type above JSON.
 * Other bodies (Bulk Data NDJSON, the export manifest, CSV, HL7 v2, metrics) are not FHIR
 * resources and stay as they are.
 */

export const FHIR_XML = 'application/fhir+xml; charset=utf-8';

const XML_FORMATS = new Set(['xml', 'text/xml', 'application/xml', 'application/fhir+xml']);
const JSON_FORMATS = new Set(['json', 'text/json', 'application/json', 'application/fhir+json']);

/**
 * `_format` values this server answers (http.html#general-parameters): an XML one, or any JSON
 * one (`application/fhir+ndjson` and DSTU2's `application/json+fhir` included, as before XML).
 */
export function formatOf(value: string): 'json' | 'xml' | undefined {
  const type = value.split(';')[0]!.trim().toLowerCase();
  if (XML_FORMATS.has(type) || type === 'application/xml+fhir') return 'xml';
  return /json/.test(type) ? 'json' : undefined;
}

interface Ranked {
  type: string;
  q: number;
  order: number;
}

/**
 * Whether an Accept header prefers XML: the best-ranked media type the server can write is an
 * XML one. Wildcards count for JSON (the default). A browser's navigation header
 * (`text/html,…,application/xml;q=0.9,*∕*;q=0.8`) keeps JSON unless it names FHIR XML itself.
 */
export function acceptPrefersXml(accept: string | undefined): boolean {
  if (!accept || !accept.includes('xml')) return false;
  const browser = /(^|[\s,])text\/html/i.test(accept);
  const ranked: Ranked[] = [];
  accept.split(',').forEach((part, order) => {
    const [rawType, ...params] = part.split(';');
    const type = rawType!.trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) q = Number(m[1]);
    }
    if (!(q > 0)) return;
    const xml = type === 'application/fhir+xml' || type === 'application/xml+fhir' || (!browser && (type === 'application/xml' || type === 'text/xml'));
    const json = JSON_FORMATS.has(type) || type === '*/*' || type === 'application/*';
    if (xml) ranked.push({ type: 'xml', q, order });
    else if (json) ranked.push({ type: 'json', q, order });
  });
  ranked.sort((a, b) => b.q - a.q || a.order - b.order);
  return ranked[0]?.type === 'xml';
}

/** `_format` from the query string, or from the form body of a `POST …/_search`. */
function formatParameter(request: FastifyRequest): string | undefined {
  const fromQuery = (request.query as Record<string, unknown> | undefined)?._format;
  if (typeof fromQuery === 'string' && fromQuery !== '') return fromQuery;
  if (String(request.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
    const fromForm = (request.body as Record<string, unknown> | undefined)?._format;
    if (typeof fromForm === 'string' && fromForm !== '') return fromForm;
  }
  return undefined;
}

/** The response format a request asked for: `_format` wins over Accept. */
export function wantsXml(request: FastifyRequest): boolean {
  const format = formatParameter(request);
  if (format !== undefined) return formatOf(format) === 'xml';
  const accept = request.headers.accept;
  return acceptPrefersXml(typeof accept === 'string' ? accept : undefined);
}

function isFhirJson(contentType: unknown): boolean {
  return typeof contentType === 'string' && contentType.startsWith('application/fhir+json');
}

/** Registers the XML body parser and the response conversion, for every route of the app. */
export function registerFhirXml(app: FastifyInstance): void {
  app.addContentTypeParser([...XML_MEDIA_TYPES], { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string;
    if (text.trim() === '') {
      done(errors.incorrect('the request body is empty; a FHIR XML resource was expected'), undefined);
      return;
    }
    try {
      done(null, xmlToResource(text, { maxDepth: MAX_JSON_DEPTH }));
    } catch (e) {
      if (!(e instanceof XmlConversionError)) throw e;
      done(errors.incorrect(`the request body is not FHIR R4 XML: ${e.message}`), undefined);
    }
  });

  app.addHook('onSend', (request, reply, payload, done) => {
    if (!isFhirJson(reply.getHeader('content-type'))) {
      done(null, payload);
      return;
    }
    // The format follows Accept: a cache must not answer one format for the other.
    const vary = reply.getHeader('vary');
    reply.header('vary', typeof vary === 'string' && vary !== '' ? `${vary}, Accept` : 'Accept');
    if (!wantsXml(request)) {
      done(null, payload);
      return;
    }
    const text = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : undefined;
    if (text === undefined || text === '') {
      done(null, payload);
      return;
    }
    try {
      const pretty = (request.query as Record<string, unknown> | undefined)?._pretty === 'true';
      const xml = resourceToXml(JSON.parse(text) as Record<string, unknown>, { pretty });
      reply.header('content-type', FHIR_XML);
      done(null, xml);
    } catch (e) {
      // Stored resources are validated R4, so this is not expected. The answer still leaves, in
      // JSON (its status may be a committed write's): never a lost response or a 500 for it.
      request.log.warn({ reqId: request.id, reason: e instanceof Error ? e.message.slice(0, 200) : 'unknown' }, 'response not expressible as FHIR XML; sent as JSON');
      done(null, payload);
    }
  });
}
