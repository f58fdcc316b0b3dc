import type { Resource } from 'fhir/r4.js';
import type { Measurement } from './harness.js';
import { benchQueries, type BenchQuery } from './search-queries.js';

/**
 * The requests of the HTTP benchmark, shared by the load generator (over a socket) and the
 * inject measurement in the server process, so both sides send exactly the same sequence.
 * Request n of an operation is a pure function of n.
 */
export type HttpOperation = 'create' | 'read' | 'search';
export const HTTP_OPERATIONS: HttpOperation[] = ['create', 'read', 'search'];

/** Synthea resources created (and read) by the HTTP benchmark, by default. */
export const SAMPLE_COUNT = 400;
export const SAMPLE_TYPES = ['Patient', 'Observation'];

/** Messages between bench/http.ts and its server process (bench/http-server.ts). */
export type ToServer = { kind: 'inject'; op: HttpOperation; concurrency: number; seconds: number; token: string } | { kind: 'close' };
export type FromServer =
  | { kind: 'ready'; fhirUrl: string; rawUrl: string; stored: Array<[string, string, string]>; observations: number; setupSeconds: number }
  | { kind: 'measurement'; measurement: Measurement; non2xx: number }
  | { kind: 'error'; message: string };

export interface BenchRequest {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
}

export interface HttpOpsInput {
  /** Synthea Patient/Observation bodies without id/meta */
  bodies: Resource[];
  /** resources created before the run, as [type, FHIR id, raw id] */
  stored: Array<[string, string, string]>;
  /** patients of the search population (bench/search-data.ts) */
  patients: number;
}

/** Longest request path sent: a URL far above Node's 16 KB header limit measures the 431 path. */
const MAX_PATH = 8000;

/** The search mix queries an HTTP client can send as a GET (no compartment, URL within limits). */
export function httpSearchQueries(patients: number): BenchQuery[] {
  return benchQueries(patients).filter((q) => q.mix && !q.compartment && q.resourceType && searchPath(q, 0).length <= MAX_PATH);
}

function searchPath(q: BenchQuery, i: number): string {
  return `/fhir/${q.resourceType}?${new URLSearchParams(q.params(i)).toString()}`;
}

export interface HttpOps {
  fhir: Record<HttpOperation, (n: number) => BenchRequest>;
  raw: Record<HttpOperation, (n: number) => BenchRequest>;
  searchNames: string[];
}

export function httpOps(input: HttpOpsInput): HttpOps {
  const texts = input.bodies.map((b) => JSON.stringify(b));
  const queries = httpSearchQueries(input.patients);
  const at = <T>(list: T[], n: number) => list[n % list.length]!;
  return {
    fhir: {
      create: (n) => ({ method: 'POST', path: `/fhir/${at(input.bodies, n).resourceType}`, body: at(texts, n) }),
      read: (n) => {
        const [type, id] = at(input.stored, n);
        return { method: 'GET', path: `/fhir/${type}/${id}` };
      },
      search: (n) => ({ method: 'GET', path: searchPath(at(queries, n), Math.floor(n / queries.length)) }),
    },
    raw: {
      create: (n) => ({ method: 'POST', path: `/raw/${at(input.bodies, n).resourceType}`, body: at(texts, n) }),
      read: (n) => {
        const [type, , rawId] = at(input.stored, n);
        return { method: 'GET', path: `/raw/${type}/${rawId}` };
      },
      search: (n) => ({ method: 'GET', path: `/raw/search/${n % queries.length}/${Math.floor(n / queries.length)}` }),
    },
    searchNames: queries.map((q) => q.name),
  };
}
