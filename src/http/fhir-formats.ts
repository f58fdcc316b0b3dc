import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors, FhirError } from '../fhir/errors.js';
import { xmlToResource } from '../fhir/xml/from-xml.js';
import { resourceToXml } from '../fhir/xml/to-xml.js';
import { XML_MEDIA_TYPES, XmlConversionError } from '../fhir/xml/xml-common.js';
import { MAX_JSON_DEPTH } from './fhir-json.js';

/**
 * The FHIR formats and version on the wire (https://hl7.org/fhir/R4/http.html#mime-type,
 * #version-parameter, xml.html). The `fhirVersion` MIME parameter may only name R4 (4.0): a body
 * declared in another version is 415, an Accept naming only other versions 406, and an answer
 * to an Accept that named the version names it too.
 *
 * FHIR XML: the server works on JSON throughout; XML is converted at this edge only:
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

const XML_FORMATS = new Set(['xml', 'application/xml+fhir', ...XML_MEDIA_TYPES]);
const JSON_FORMATS = new Set(['json', 'text/json', 'application/json', 'application/fhir+json']);

/**
 * `_format` values this server answers (http.html#general-parameters): an XML one, or any JSON
 * one (`application/fhir+ndjson` and DSTU2's `application/json+fhir` included, as before XML).
 */
export function formatOf(value: string): 'json' | 'xml' | undefined {
  const type = value.split(';')[0]!.trim().toLowerCase();
  if (XML_FORMATS.has(type)) return 'xml';
  return /json/.test(type) ? 'json' : undefined;
}

/** The FHIR version this server speaks, as the `fhirVersion` MIME parameter names it (http.html#version-parameter). */
export const FHIR_VERSION = '4.0';
const FHIR_XML_VERSIONED = `application/fhir+xml; fhirVersion=${FHIR_VERSION}; charset=utf-8`;
const FHIR_JSON_VERSIONED = `application/fhir+json; fhirVersion=${FHIR_VERSION}; charset=utf-8`;

/** `[base]/$versions` (served by fhir-routes.ts), declared in the CapabilityStatement. */
export const VERSIONS_OPERATION = { name: 'versions', definition: 'http://hl7.org/fhir/OperationDefinition/CapabilityStatement-versions' };

/** `4.0`, `4.0.1`: R4. */
function speaksVersion(version: string): boolean {
  return version === FHIR_VERSION || version.startsWith(`${FHIR_VERSION}.`);
}

/** A MIME type's parameter (names compare case-insensitively), unquoted. */
function mimeParameter(parameters: readonly string[], name: string): string | undefined {
  for (const p of parameters) {
    const eq = p.indexOf('=');
    if (eq > 0 && p.slice(0, eq).trim().toLowerCase() === name) return p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return undefined;
}

interface AcceptEntry {
  format: 'json' | 'xml';
  q: number;
  order: number;
  fhirVersion?: string;
}

/**
 * The entries of an Accept header the server can answer, as a format: FHIR XML (`application/xml`
 * and `text/xml` too, except in a browser's navigation header, `text/html,…,application/xml;q=0.9`),
 * or JSON (the JSON types and the wildcards: JSON is the default).
 */
function acceptEntries(accept: string): AcceptEntry[] {
  const browser = /(^|[\s,])text\/html/i.test(accept);
  const entries: AcceptEntry[] = [];
  accept.split(',').forEach((part, order) => {
    const [rawType, ...parameters] = part.split(';');
    const type = rawType!.trim().toLowerCase();
    const qText = mimeParameter(parameters, 'q');
    const q = qText === undefined ? 1 : Number(qText);
    if (!(q > 0)) return;
    const fhirVersion = mimeParameter(parameters, 'fhirversion');
    const xml = type === 'application/fhir+xml' || type === 'application/xml+fhir' || (!browser && (type === 'application/xml' || type === 'text/xml'));
    const json = JSON_FORMATS.has(type) || type === '*/*' || type === 'application/*';
    if (xml || json) entries.push({ format: xml ? 'xml' : 'json', q, order, ...(fhirVersion !== undefined ? { fhirVersion } : {}) });
  });
  return entries;
}

/**
 * What an Accept header asks for: the best-ranked format the server can write, or
 * `unacceptable` when every FHIR type it names asks for a FHIR version other than R4 (406).
 * Without one the server can write (or without the header), JSON.
 */
export function negotiate(accept: string | undefined): 'json' | 'xml' | 'unacceptable' {
  if (!accept || !/xml|fhirversion/i.test(accept)) return 'json';
  const entries = acceptEntries(accept);
  const usable = entries.filter((e) => e.fhirVersion === undefined || speaksVersion(e.fhirVersion));
  if (usable.length === 0) return entries.length > 0 ? 'unacceptable' : 'json';
  usable.sort((a, b) => b.q - a.q || a.order - b.order);
  return usable[0]!.format;
}

/** Whether an Accept header prefers FHIR XML to JSON (see `negotiate`). */
export function acceptPrefersXml(accept: string | undefined): boolean {
  return negotiate(accept) === 'xml';
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

/** Adds Accept to the response's Vary header (the answer's form depends on it). */
export function varyOnAccept(reply: FastifyReply): void {
  const vary = reply.getHeader('vary');
  reply.header('vary', typeof vary === 'string' && vary !== '' ? `${vary}, Accept` : 'Accept');
}

/** A reply whose body is FHIR JSON (its Content-Type, parameters aside). */
export function isFhirJson(contentType: unknown): boolean {
  return typeof contentType === 'string' && contentType.startsWith('application/fhir+json');
}

/**
 * Registers, for every route of the app: the FHIR version checks (`fhirVersion` in Accept: 406
 * unless R4 can be answered; in Content-Type: 415 unless R4), the XML body parser and the
 * response conversion.
 */
export function registerFhirFormats(app: FastifyInstance): void {
  app.addHook('onRequest', (request, _reply, done) => {
    if (!request.url.startsWith('/fhir')) {
      done();
      return;
    }
    const contentType = request.headers['content-type'];
    if (typeof contentType === 'string' && /fhirversion/i.test(contentType)) {
      const version = mimeParameter(contentType.split(';').slice(1), 'fhirversion');
      if (version !== undefined && !speaksVersion(version)) {
        done(new FhirError('unsupported-media-type', `this server speaks FHIR ${FHIR_VERSION} (R4); the body is declared fhirVersion=${version.slice(0, 20)}`));
        return;
      }
    }
    const accept = request.headers.accept;
    if (typeof accept === 'string' && formatParameter(request) === undefined && negotiate(accept) === 'unacceptable') {
      done(new FhirError('not-acceptable', `this server speaks FHIR ${FHIR_VERSION} (R4); Accept asks for other FHIR versions only (${accept.slice(0, 120)})`));
      return;
    }
    done();
  });

  app.addContentTypeParser([...XML_MEDIA_TYPES], { parseAs: 'string' }, (_request, body, done) => {
    const text = body as string;
    if (text.trim() === '') {
      done(errors.incorrect('the request body is empty; a FHIR XML resource was expected'), undefined);
      return;
    }
    try {
      done(null, xmlToResource(text, { maxDepth: MAX_JSON_DEPTH }));
    } catch (e) {
      // Anything but a conversion error is a fault of ours: the error handler logs it (500).
      done(e instanceof XmlConversionError ? errors.incorrect(`the request body is not FHIR R4 XML: ${e.message}`) : e instanceof Error ? e : new Error(String(e)), undefined);
    }
  });

  app.addHook('onSend', (request, reply, payload, done) => {
    if (!isFhirJson(reply.getHeader('content-type'))) {
      done(null, payload);
      return;
    }
    // The format follows Accept: a cache must not answer one format for the other.
    varyOnAccept(reply);
    // A client that named the FHIR version is told the version of the answer.
    const versioned = typeof request.headers.accept === 'string' && /fhirversion/i.test(request.headers.accept);
    if (!wantsXml(request)) {
      if (versioned) reply.header('content-type', FHIR_JSON_VERSIONED);
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
      reply.header('content-type', versioned ? FHIR_XML_VERSIONED : FHIR_XML);
      done(null, xml);
    } catch (e) {
      // Stored resources are validated R4, so this is not expected. The answer still leaves, in
      // JSON (its status may be a committed write's): never a lost response or a 500 for it.
      request.log.warn({ reqId: request.id, reason: e instanceof Error ? e.message.slice(0, 200) : 'unknown' }, 'response not expressible as FHIR XML; sent as JSON');
      done(null, payload);
    }
  });
}
