import type { FastifyInstance } from 'fastify';
import type { Bundle, BundleEntry, DiagnosticReport, Specimen } from 'fhir/r4.js';
import type { AuthContext, TokenService } from '../../auth/token-service.js';
import { scopesAllow } from '../../auth/scopes.js';
import { errors } from '../../fhir/errors.js';
import { queryOf } from '../../http/fhir-routes.js';
import { outputOptions, sendResult } from '../../http/respond.js';
import type { Db } from '../../storage/db.js';
import { labWorklist, referencingAny } from '../../storage/lab-store.js';
import type { ResourceStore } from '../../storage/resource-store.js';
import { loadLabCatalog, type LabCatalog } from './catalog.js';
import { specimenLabelPng } from './label.js';
import { labOrderHook, specimenHook } from './orders.js';
import { labOrderTrackingHook } from './order-tracking.js';
import { labReportContent } from './report-content.js';
import { labReportPdf } from './report-pdf.js';
import { labResultHook } from './results.js';
import { labVerificationHook, verifyResult } from './verification.js';

/**
 * The laboratory workflow of issue 14 (§1 orders, §2 results) in one place: the before-commit
 * rules (catalogue orders, accession numbers, result checks and flags, dual verification,
 * immutability) and the operations under /fhir: `ServiceRequest/$worklist`,
 * `Specimen/[id]/$label`, `DiagnosticReport/[id]/$verify`, `Observation/[id]/$verify`,
 * `DiagnosticReport/[id]/$pdf`.
 */

export interface LabDeps {
  store: ResourceStore;
  db: Db;
  tokens: TokenService;
  fhirBase: string;
  terminologyDir: string;
  /** The name printed on reports (NOTIFICATION_HOSPITAL_NAME). */
  hospitalName: string;
}

/** The before-commit rules on the store of every process that writes (server, worker, import CLI). */
export function registerLabRules(store: ResourceStore, deps: { terminologyDir: string }): LabCatalog {
  const catalog = loadLabCatalog(deps.terminologyDir);
  store.onBeforeWrite(labOrderHook(catalog));
  store.onBeforeWrite(specimenHook);
  store.onBeforeWrite(labResultHook(catalog));
  store.onBeforeWrite(labVerificationHook);
  return catalog;
}

/**
 * Order tracking Tasks (src/workflows/lab/order-tracking.ts), registered after the other hospital
 * rules: it tracks the order by what the lab rules made of each write (an analyzer's final stored
 * preliminary, say), and the Task of a new order then joins the order's own flush instead of being
 * written alone before the billing rule's read.
 */
export function registerLabOrderTracking(store: ResourceStore, catalog: LabCatalog): void {
  store.onBeforeWrite(labOrderTrackingHook(catalog));
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;
const MAX_PAGE = 200;

/** Staff (user or system) scopes only: work lists, labels and reports are not patient-app reads. */
function staffMay(auth: AuthContext, type: string, permission: 'r' | 'u'): boolean {
  return scopesAllow(
    auth.scopes.filter((s) => s.context !== 'patient'),
    type,
    permission,
  );
}

async function readLive<T>(store: ResourceStore, type: string, id: string): Promise<T> {
  if (!ID.test(id)) throw errors.incorrect(`not a ${type} id`);
  const stored = await store.read(type, id);
  if (!stored?.json || stored.deleted) throw errors.notFound(`${type}/${id} is not known`);
  return JSON.parse(stored.json) as T;
}

function pageParam(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!/^[0-9]{1,9}$/.test(raw)) throw errors.incorrect(`${name} must be a non-negative integer`);
  return Math.min(Number(raw), max);
}

export async function registerLab(http: FastifyInstance, deps: LabDeps): Promise<void> {
  const catalog = loadLabCatalog(deps.terminologyDir);
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });

      app.get('/ServiceRequest/$worklist', async (request, reply) => {
        const auth = request.auth!;
        if (!staffMay(auth, 'ServiceRequest', 'r')) throw errors.forbidden('the work list needs read access to ServiceRequest (user or system scopes)');
        const query = queryOf(request);
        const count = pageParam(query, '_count', 50, MAX_PAGE);
        const offset = pageParam(query, '_offset', 0, 1_000_000);
        const page = await labWorklist(deps.db, catalog.system, count, offset);
        const entry: BundleEntry[] = page.rows.map((r) => ({ fullUrl: `${deps.fhirBase}/ServiceRequest/${r.id}`, resource: JSON.parse(r.json), search: { mode: 'match' } }));
        if (staffMay(auth, 'Specimen', 'r')) {
          // The collection status of each order: its Specimens (Specimen.request).
          const specimens = await referencingAny(deps.db, 'Specimen', 'request', page.rows.map((r) => `ServiceRequest/${r.id}`));
          for (const s of specimens) entry.push({ fullUrl: `${deps.fhirBase}/Specimen/${s.id}`, resource: JSON.parse(s.json) as Specimen, search: { mode: 'include' } });
        }
        const self = `${deps.fhirBase}/ServiceRequest/$worklist?_count=${count}&_offset=${offset}`;
        const link: Bundle['link'] = [{ relation: 'self', url: self }];
        if (offset + count < page.total) link.push({ relation: 'next', url: `${deps.fhirBase}/ServiceRequest/$worklist?_count=${count}&_offset=${offset + count}` });
        if (offset > 0) link.push({ relation: 'previous', url: `${deps.fhirBase}/ServiceRequest/$worklist?_count=${count}&_offset=${Math.max(0, offset - count)}` });
        const body: Bundle = { resourceType: 'Bundle', type: 'searchset', total: page.total, link, entry };
        return sendResult(request, reply, { status: 200, body }, outputOptions(query), deps.fhirBase);
      });

      app.get<{ Params: { id: string } }>('/Specimen/:id/$label', async (request, reply) => {
        const auth = request.auth!;
        if (!staffMay(auth, 'Specimen', 'r')) throw errors.forbidden('specimen labels need read access to Specimen (user or system scopes)');
        const specimen = await readLive<Specimen>(deps.store, 'Specimen', request.params.id);
        const accession = specimen.accessionIdentifier?.value;
        if (!accession) throw errors.conflict(`Specimen/${request.params.id} has no accession number`);
        const png = await specimenLabelPng(accession);
        return reply.header('content-type', 'image/png').header('cache-control', 'no-store').send(png);
      });

      for (const type of ['DiagnosticReport', 'Observation'] as const) {
        app.post<{ Params: { id: string } }>(`/${type}/:id/$verify`, async (request, reply) => {
          if (!ID.test(request.params.id)) throw errors.incorrect(`not a ${type} id`);
          const body = await verifyResult(deps.store, type, request.params.id, request.auth!);
          return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
        });
      }

      app.get<{ Params: { id: string } }>('/DiagnosticReport/:id/$pdf', async (request, reply) => {
        const auth = request.auth!;
        if (!staffMay(auth, 'DiagnosticReport', 'r') || !staffMay(auth, 'Observation', 'r')) {
          throw errors.forbidden('the report PDF needs read access to DiagnosticReport and Observation (user or system scopes)');
        }
        const report = await readLive<DiagnosticReport>(deps.store, 'DiagnosticReport', request.params.id);
        const content = await labReportContent(deps, report);
        // compress=false keeps the text readable in the file (tests, archiving tools that index PDFs).
        const pdf = await labReportPdf(content, { compress: queryOf(request).get('compress') !== 'false' });
        return reply
          .header('content-type', 'application/pdf')
          .header('content-disposition', `inline; filename="lab-report-${report.id ?? 'report'}.pdf"`)
          .header('cache-control', 'no-store')
          .send(pdf);
      });
    },
    { prefix: '/fhir' },
  );
}

/** Operations to declare in the CapabilityStatement (app.ts `typeOperations`). */
export const LAB_OPERATIONS = {
  ServiceRequest: [{ name: 'worklist', definition: 'https://fhir.hospital.example.org/OperationDefinition/lab-worklist' }],
  Specimen: [{ name: 'label', definition: 'https://fhir.hospital.example.org/OperationDefinition/specimen-label' }],
  DiagnosticReport: [
    { name: 'verify', definition: 'https://fhir.hospital.example.org/OperationDefinition/lab-verify' },
    { name: 'pdf', definition: 'https://fhir.hospital.example.org/OperationDefinition/lab-report-pdf' },
  ],
  Observation: [{ name: 'verify', definition: 'https://fhir.hospital.example.org/OperationDefinition/lab-verify' }],
};
