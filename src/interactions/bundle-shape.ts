import type { Bundle, BundleEntry } from 'fhir/r4.js';
import { FhirError, type Issue } from '../fhir/errors.js';

/**
 * The shape of a Bundle posted to the base URL, checked before any work is done (and before
 * the route authorises each entry): every JSON value the processing code touches must have the
 * type the R4 Bundle definition gives it, so that no malformed input reaches code that assumes
 * it. Each problem is an issue whose `expression` names the element (`Bundle.entry[3].request.method`);
 * the Bundle is refused with 400 listing them.
 *
 * What is checked here is the Bundle as a carrier: resource content is validated per entry
 * later, and URLs are parsed per entry (a batch answers a bad URL in that entry's response).
 */

/** Methods of Bundle.entry.request.method (R4 value set http-verb). */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']);

/** Bundle types the base URL processes (R4 http.html#transaction). */
const PROCESSED_TYPES = new Set(['batch', 'transaction']);

/** R4 `uuid`: the fullUrl form `urn:uuid:` + a UUID (datatypes.html#uuid). */
const URN_UUID = /^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Enough to fix a request; a Bundle of 100,000 bad entries does not need 100,000 issues. */
const MAX_ISSUES = 50;

const REQUEST_STRINGS = ['ifNoneMatch', 'ifModifiedSince', 'ifMatch', 'ifNoneExist'] as const;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return value === '' ? 'an empty string' : `"${value.slice(0, 40)}"`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value).slice(0, 40)}`;
}

class IssueList {
  readonly issues: Issue[] = [];
  add(expression: string, diagnostics: string, code: Issue['code'] = 'structure'): void {
    if (this.issues.length < MAX_ISSUES) this.issues.push({ severity: 'error', code, diagnostics: `${expression}: ${diagnostics}`, expression: [expression] });
  }
  /** A non-empty string, or an issue. Empty strings are not valid FHIR primitive values. */
  string(value: unknown, expression: string, required: boolean): value is string {
    if (value === undefined && !required) return false;
    if (typeof value === 'string' && value !== '') return true;
    this.add(expression, value === undefined ? 'is required' : `must be a non-empty string, not ${describe(value)}`);
    return false;
  }
}

function checkEntry(entry: unknown, at: string, list: IssueList): void {
  if (!isObject(entry)) {
    list.add(at, `an entry must be an object, not ${describe(entry)}`);
    return;
  }
  if (list.string(entry.fullUrl, `${at}.fullUrl`, false) && entry.fullUrl.startsWith('urn:uuid:') && !URN_UUID.test(entry.fullUrl)) {
    list.add(`${at}.fullUrl`, `"${entry.fullUrl.slice(0, 60)}" is not urn:uuid: followed by a UUID`, 'value');
  }
  const resource = entry.resource;
  if (resource !== undefined) {
    if (!isObject(resource)) list.add(`${at}.resource`, `must be a resource (a JSON object), not ${describe(resource)}`);
    else list.string(resource.resourceType, `${at}.resource.resourceType`, true);
  }
  const request = entry.request;
  if (!isObject(request)) {
    list.add(`${at}.request`, request === undefined ? 'every entry of a batch or transaction needs a request (bdl-3)' : `must be an object, not ${describe(request)}`);
    return;
  }
  if (list.string(request.method, `${at}.request.method`, true) && !METHODS.has(request.method)) {
    list.add(`${at}.request.method`, `${describe(request.method)} is not one of ${[...METHODS].join(', ')}`, 'code-invalid');
  }
  list.string(request.url, `${at}.request.url`, true);
  for (const name of REQUEST_STRINGS) list.string(request[name], `${at}.request.${name}`, false);
  if ((request.method === 'POST' || request.method === 'PUT') && resource === undefined) {
    list.add(`${at}.resource`, `a ${request.method} entry needs a resource`, 'required');
  }
}

/**
 * Checks what POST [base] receives and returns it typed as a Bundle; throws a 400 naming every
 * element in error (up to {@link MAX_ISSUES}).
 */
export function checkBundleShape(body: unknown): Bundle {
  const list = new IssueList();
  if (!isObject(body)) {
    list.add('Bundle', `POST to the base URL needs a Bundle of type batch or transaction, not ${describe(body)}`);
  } else if (body.resourceType !== 'Bundle') {
    list.add('Bundle.resourceType', `POST to the base URL needs a Bundle, not ${describe(body.resourceType)}`, 'invalid');
  } else {
    if (list.string(body.type, 'Bundle.type', true) && !PROCESSED_TYPES.has(body.type)) {
      // R4 http.html#transaction: the base URL takes batch and transaction. Other Bundles are
      // stored with POST [base]/Bundle; messages would go to $process-message (not offered).
      list.add('Bundle.type', `${describe(body.type)} is not processed here: POST [base] takes batch or transaction (store other Bundles with POST [base]/Bundle)`, 'not-supported');
    }
    if (body.entry !== undefined) checkEntryList(body.entry, list);
  }
  if (list.issues.length > 0) throw new FhirError('incorrect', list.issues);
  return body as unknown as Bundle;
}

function checkEntryList(entries: unknown, list: IssueList): void {
  if (!Array.isArray(entries)) {
    list.add('Bundle.entry', `must be an array of entries, not ${describe(entries)}`);
    return;
  }
  for (let i = 0; i < entries.length && list.issues.length < MAX_ISSUES; i++) checkEntry(entries[i], `Bundle.entry[${i}]`, list);
}

/** The same checks for entries that did not come in a Bundle posted to the base (bulk import). */
export function checkEntriesShape(entries: unknown): BundleEntry[] {
  const list = new IssueList();
  checkEntryList(entries, list);
  if (list.issues.length > 0) throw new FhirError('incorrect', list.issues);
  return entries as BundleEntry[];
}
