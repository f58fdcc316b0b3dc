import type { Bundle, FhirResource, OperationOutcome, Resource } from 'fhir/r4.js';

/** An API call that failed: status and the OperationOutcome's message, shown as is. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

declare global {
  interface Window {
    /** API requests made by the console since the page loaded (tests and the bench count them per view). */
    __consoleRequests?: number;
  }
}

/** The FHIR API with the signed-in user's token: every read and write of the console goes here. */
export class Fhir {
  constructor(
    readonly base: string,
    private readonly token: string,
    private readonly onUnauthorized: () => void,
  ) {}

  async request<T>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T> {
    window.__consoleRequests = (window.__consoleRequests ?? 0) + 1;
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/fhir+json' };
    if (body !== undefined) headers['content-type'] = 'application/fhir+json';
    const res = await fetch(`${this.base}/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 401) this.onUnauthorized();
    const text = await res.text();
    const json = text ? (JSON.parse(text) as unknown) : undefined;
    if (!res.ok) {
      const outcome = json as OperationOutcome | undefined;
      const message = outcome?.issue?.map((i) => i.diagnostics ?? i.details?.text ?? i.code).join('; ') || `${res.status} ${res.statusText}`;
      throw new ApiError(res.status, message);
    }
    return json as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  search(path: string): Promise<Bundle> {
    return this.get<Bundle>(path);
  }

  /** `_summary=count` total of a search. */
  async count(path: string): Promise<number> {
    const bundle = await this.search(`${path}${path.includes('?') ? '&' : '?'}_summary=count`);
    return bundle.total ?? 0;
  }

  put<T extends Resource>(resource: T): Promise<T> {
    return this.request<T>('PUT', `${resource.resourceType}/${resource.id}`, resource);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }
}

/** The resources of a searchset by type (matches and includes alike). */
export function resourcesOf<T extends FhirResource['resourceType']>(bundle: Bundle | undefined, type: T): Array<Extract<FhirResource, { resourceType: T }>> {
  const out: Array<Extract<FhirResource, { resourceType: T }>> = [];
  for (const entry of bundle?.entry ?? []) {
    const r = entry.resource as FhirResource | undefined;
    if (r?.resourceType === type) out.push(r as Extract<FhirResource, { resourceType: T }>);
  }
  return out;
}

/** Included resources by `Type/id`, to resolve references without a request per row. */
export function byReference(bundle: Bundle | undefined): Map<string, FhirResource> {
  const map = new Map<string, FhirResource>();
  for (const entry of bundle?.entry ?? []) {
    const r = entry.resource as FhirResource | undefined;
    if (r?.id) map.set(`${r.resourceType}/${r.id}`, r);
  }
  return map;
}

/** `Type/id` of a reference, whether written relative or absolute. */
export function refKey(reference: string | undefined): string | undefined {
  if (!reference) return undefined;
  const match = /([A-Za-z]+\/[A-Za-z0-9\-.]{1,64})(\/_history\/[^/]+)?$/.exec(reference);
  return match?.[1];
}
