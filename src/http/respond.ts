import type { FastifyReply, FastifyRequest } from 'fastify';
import type { OperationOutcome, Resource } from 'fhir/r4.js';
import { errors, FhirError } from '../fhir/errors.js';
import { applyElements, applySummary, type SummaryMode } from '../fhir/summary/index.js';
import type { InteractionResult } from '../interactions/types.js';
import { etagOf } from '../interactions/versions.js';
import { maskBody, maskedFields, maskPatientJson } from '../workflows/patient-masking.js';
import { inDefinitionOrder } from './element-order.js';
import { reorderResourceText } from './element-order-text.js';
import { formatOf } from './fhir-formats.js';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';

type PreferReturn = 'minimal' | 'representation' | 'OperationOutcome';

/** `Prefer: return=…` (https://hl7.org/fhir/R4/http.html#ops). */
export function preferReturn(request: FastifyRequest): PreferReturn {
  const prefer = request.headers.prefer;
  const match = /return\s*=\s*"?(minimal|representation|OperationOutcome)"?/i.exec(typeof prefer === 'string' ? prefer : '');
  if (!match) return 'representation';
  const value = match[1].toLowerCase();
  return value === 'minimal' ? 'minimal' : value === 'operationoutcome' ? 'OperationOutcome' : 'representation';
}

/** `Prefer: handling=strict` asks for unknown search parameters to be refused. */
export function preferStrict(request: FastifyRequest): boolean {
  const prefer = request.headers.prefer;
  return typeof prefer === 'string' && /handling\s*=\s*strict/i.test(prefer);
}

export interface OutputOptions {
  pretty: boolean;
  summary?: SummaryMode;
  elements?: string[];
}

const SUMMARY_MODES = new Set(['true', 'false', 'text', 'data', 'count']);

/** `_pretty`, `_summary`, `_elements` and `_format` of a request (http.html#general-parameters). */
export function outputOptions(query: URLSearchParams): OutputOptions {
  const format = query.get('_format');
  if (format && !formatOf(format)) {
    throw new FhirError('not-acceptable', `_format ${format.slice(0, 40)} is not supported: this server speaks FHIR JSON and FHIR XML (json, xml, application/fhir+json, application/fhir+xml)`);
  }
  const summary = query.get('_summary') ?? undefined;
  if (summary !== undefined && !SUMMARY_MODES.has(summary)) {
    throw errors.incorrect(`_summary must be one of true, false, text, data, count; got "${summary.slice(0, 40)}"`, ['_summary']);
  }
  const elementsRaw = query.get('_elements');
  return {
    pretty: query.get('_pretty') === 'true',
    summary: summary as SummaryMode | undefined,
    elements: elementsRaw ? elementsRaw.split(',').map((e) => e.trim()).filter(Boolean) : undefined,
  };
}

/**
 * Serialises a stored resource honouring `_summary`, `_elements` and `_pretty`, in FHIR element
 * order (`resourceType` first; see element-order.ts for why the stored text cannot pass through).
 * A plain read reorders the stored text in one scan (element-order-text.ts), about half the
 * cost of parsing, reordering and serialising again.
 */
export function renderResource(json: string, options: OutputOptions, resourceType?: string): string {
  const reshape = (options.summary && options.summary !== 'false') || options.elements;
  if (!reshape && !options.pretty) {
    try {
      return reorderResourceText(json, resourceType);
    } catch {
      // Not text as PostgreSQL writes it: the parsing path below gives the same answer.
    }
  }
  let resource = JSON.parse(json) as Resource;
  if (options.summary && options.summary !== 'false' && options.summary !== 'count') resource = applySummary(resource, options.summary);
  if (options.elements) resource = applyElements(resource, options.elements);
  return JSON.stringify(inDefinitionOrder(resource), null, options.pretty ? 2 : undefined);
}

/** Writes an interaction result with the headers the spec asks for: ETag, Last-Modified, Location. */
export function sendResult(
  request: FastifyRequest,
  reply: FastifyReply,
  result: InteractionResult,
  options: OutputOptions,
  fhirBase: string,
): FastifyReply {
  reply.type(FHIR_JSON);
  const version = result.version;
  if (version) {
    reply.header('ETag', etagOf(version.versionId));
    reply.header('Last-Modified', new Date(version.lastUpdated).toUTCString());
    if (result.location) {
      reply.header('Location', `${fhirBase}/${version.resourceType}/${version.id}/_history/${version.versionId}`);
    }
  }
  if (result.status === 204) return reply.code(204).send();
  // Role-based masking of Patient data (src/workflows/patient-masking.ts): every body leaves here.
  const masked = maskedFields(request.auth);
  if (result.body) {
    const body = masked ? maskBody(result.body, masked) : result.body;
    return reply.code(result.status).send(JSON.stringify(inDefinitionOrder(body), null, options.pretty ? 2 : undefined));
  }
  const isWrite = request.method !== 'GET' && request.method !== 'HEAD';
  const prefer = isWrite ? preferReturn(request) : 'representation';
  if (prefer === 'minimal') return reply.code(result.status).send();
  if (prefer === 'OperationOutcome') {
    const oo: OperationOutcome = {
      resourceType: 'OperationOutcome',
      issue: result.issues?.length
        ? result.issues
        : [{ severity: 'information', code: 'informational', diagnostics: `${request.method} succeeded with status ${result.status}` }],
    };
    return reply.code(result.status).send(JSON.stringify(oo, null, options.pretty ? 2 : undefined));
  }
  if (!version?.json) return reply.code(result.status).send();
  const json = masked && version.resourceType === 'Patient' ? maskPatientJson(version.json, masked) : version.json;
  return reply.code(result.status).send(renderResource(json, options, version.resourceType));
}

/**
 * Conditional read (https://hl7.org/fhir/R4/http.html#cread): 304 when the client's copy
 * is current by If-None-Match or If-Modified-Since.
 */
export function notModified(request: FastifyRequest, versionId: string, lastUpdated: string): boolean {
  const ifNoneMatch = request.headers['if-none-match'];
  if (typeof ifNoneMatch === 'string') {
    const tags = ifNoneMatch.split(',').map((t) => t.trim().replace(/^W\//, ''));
    return tags.includes(`"${versionId}"`) || tags.includes('*');
  }
  const ifModifiedSince = request.headers['if-modified-since'];
  if (typeof ifModifiedSince === 'string') {
    const since = Date.parse(ifModifiedSince);
    // HTTP dates have whole seconds; compare at that precision.
    return !Number.isNaN(since) && Math.floor(Date.parse(lastUpdated) / 1000) * 1000 <= since;
  }
  return false;
}
