import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4.js';

/**
 * Error categories, after Blaze's anomaly categories. The HTTP status of an error is decided
 * in exactly one place: `statusForCategory`.
 */
export type ErrorCategory =
  | 'incorrect' // 400: bad syntax, bad parameter
  | 'unauthorized' // 401
  | 'forbidden' // 403
  | 'not-found' // 404
  | 'unsupported' // 405 / not implemented for this type
  | 'not-acceptable' // 406
  | 'conflict' // 409: version conflict, duplicate
  | 'gone' // 410: deleted
  | 'precondition-failed' // 412: If-Match mismatch, ambiguous conditional
  | 'too-large' // 413
  | 'unsupported-media-type' // 415
  | 'invalid' // 422: resource fails validation / business rules
  | 'too-costly' // 400: stopped to protect the server (statement time limit); narrow the request, do not retry as is
  | 'busy' // 429
  | 'fault' // 500: a real server fault
  | 'unavailable'; // 503

const statusByCategory: Record<ErrorCategory, number> = {
  incorrect: 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  unsupported: 405,
  'not-acceptable': 406,
  conflict: 409,
  gone: 410,
  'precondition-failed': 412,
  'too-large': 413,
  'unsupported-media-type': 415,
  invalid: 422,
  'too-costly': 400,
  busy: 429,
  fault: 500,
  unavailable: 503,
};

const issueCodeByCategory: Record<ErrorCategory, OperationOutcomeIssue['code']> = {
  incorrect: 'invalid',
  unauthorized: 'login',
  forbidden: 'forbidden',
  'not-found': 'not-found',
  unsupported: 'not-supported',
  'not-acceptable': 'not-supported',
  conflict: 'conflict',
  gone: 'deleted',
  'precondition-failed': 'conflict',
  'too-large': 'too-costly',
  'unsupported-media-type': 'not-supported',
  invalid: 'invalid',
  'too-costly': 'too-costly',
  busy: 'throttled',
  fault: 'exception',
  unavailable: 'transient',
};

export function statusForCategory(category: ErrorCategory): number {
  return statusByCategory[category];
}

export type Issue = OperationOutcomeIssue;

/** The one error type of the server: a category plus the issues that explain it. */
export class FhirError extends Error {
  readonly category: ErrorCategory;
  readonly issues: Issue[];
  /** Extra HTTP headers to send with the error (e.g. WWW-Authenticate). */
  readonly headers: Record<string, string>;

  constructor(category: ErrorCategory, issues: Issue[] | string, headers: Record<string, string> = {}) {
    const list: Issue[] =
      typeof issues === 'string'
        ? [{ severity: 'error', code: issueCodeByCategory[category], diagnostics: issues }]
        : issues;
    super(list.map((i) => i.diagnostics ?? i.details?.text ?? i.code).join('; '));
    this.name = 'FhirError';
    this.category = category;
    this.issues = list;
    this.headers = headers;
  }

  get status(): number {
    return statusByCategory[this.category];
  }

  toOutcome(): OperationOutcome {
    return { resourceType: 'OperationOutcome', issue: this.issues };
  }
}

export function isFhirError(e: unknown): e is FhirError {
  return e instanceof FhirError;
}

export function outcome(issues: Issue[]): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: issues };
}

/** Shorthands for the common cases; `expression` is a FHIRPath location. */
export const errors = {
  incorrect: (msg: string, expression?: string[]) =>
    new FhirError('incorrect', [{ severity: 'error', code: 'invalid', diagnostics: msg, expression }]),
  notFound: (msg: string) => new FhirError('not-found', msg),
  gone: (msg: string) => new FhirError('gone', msg),
  conflict: (msg: string) => new FhirError('conflict', msg),
  preconditionFailed: (msg: string) => new FhirError('precondition-failed', msg),
  invalid: (issues: Issue[]) => new FhirError('invalid', issues),
  forbidden: (msg: string) => new FhirError('forbidden', msg),
  unsupported: (msg: string) => new FhirError('unsupported', msg),
  unauthorized: (msg: string) =>
    new FhirError('unauthorized', msg, { 'WWW-Authenticate': 'Bearer realm="fhir"' }),
};
