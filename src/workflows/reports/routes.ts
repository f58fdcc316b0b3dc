import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { MeasureReport } from 'fhir/r4.js';
import { scopesAllow } from '../../auth/scopes.js';
import type { AuthContext, TokenService } from '../../auth/token-service.js';
import { errors, FhirError } from '../../fhir/errors.js';
import { queryOf } from '../../http/fhir-routes.js';
import { outputOptions, sendResult } from '../../http/respond.js';
import type { Db } from '../../storage/db.js';
import { appointmentStatisticsReport } from './appointment-statistics.js';
import { bedOccupancyReport, labTurnaroundReport } from './clinical.js';
import { measureReportCsv } from './measure-report.js';
import { revenueReport } from './revenue.js';

/**
 * The hospital reports (issue 14 §5) as operations on MeasureReport, each computed in SQL at
 * request time (src/storage/report-queries*.ts) and answered as a MeasureReport, or as CSV with
 * `_format=csv` / `_format=text/csv` / `Accept: text/csv`.
 *
 * Who may run a report: a token with user or system scopes (patient-context scopes never
 * count: a report aggregates everyone's data) that may read MeasureReport and, whole-type
 * (no granular filter, since a filtered scope would make the figures partial), every resource
 * type the report reads. With conformance/smart-roles.json: ADMIN all four; ACCOUNTANT revenue;
 * DOCTOR (user/*.rs) the clinical ones and revenue; backend clients with system scopes.
 */
interface ReportDefinition {
  name: string;
  reads: string[];
  run: (db: Db, query: URLSearchParams) => Promise<MeasureReport>;
}

export const REPORTS: ReportDefinition[] = [
  { name: 'revenue', reads: ['Invoice', 'PaymentReconciliation'], run: revenueReport },
  { name: 'appointment-statistics', reads: ['Appointment'], run: appointmentStatisticsReport },
  { name: 'bed-occupancy', reads: ['Location', 'Encounter'], run: bedOccupancyReport },
  { name: 'lab-turnaround', reads: ['ServiceRequest', 'DiagnosticReport'], run: labTurnaroundReport },
];

function checkAccess(auth: AuthContext, report: ReportDefinition): void {
  const staff = auth.scopes.filter((s) => s.context !== 'patient');
  const missing = ['MeasureReport', ...report.reads].filter((type) => !scopesAllow(staff, type, 'r'));
  if (missing.length) throw errors.forbidden(`the ${report.name} report needs user or system read access to ${missing.join(', ')}`);
}

function wantsCsv(request: FastifyRequest, query: URLSearchParams): boolean {
  const format = query.get('_format');
  if (format !== null) return /^(text\/)?csv$/i.test(format.trim());
  const accept = request.headers.accept ?? '';
  return /\btext\/csv\b/i.test(accept) && !/json/i.test(accept.split(',')[0] ?? '');
}

export interface ReportDeps {
  db: Db;
  tokens: TokenService;
  fhirBase: string;
  /** Progress of the report-facts back-fill after an upgrade (src/storage/backfill.ts); undefined when complete. */
  factsBackfill?: () => { done: number; total: number } | undefined;
}

export async function registerReports(http: FastifyInstance, deps: ReportDeps): Promise<void> {
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      for (const report of REPORTS) {
        app.get(`/MeasureReport/$${report.name}`, async (request, reply) => {
          checkAccess(request.auth!, report);
          const backfill = deps.factsBackfill?.();
          if (backfill) {
            // Figures from half-filled fact tables would be wrong without saying so.
            throw new FhirError('unavailable', `the report tables are being filled after an upgrade: ${backfill.done} of about ${backfill.total} resources done; retry later`, { 'Retry-After': '60' });
          }
          const query = queryOf(request);
          const csv = wantsCsv(request, query);
          if (csv) query.delete('_format');
          const options = outputOptions(query);
          const body = await report.run(deps.db, query);
          if (csv) {
            return reply
              .code(200)
              .header('content-type', 'text/csv; charset=utf-8')
              .header('content-disposition', `attachment; filename="${report.name}-${body.period.start}-${body.period.end}.csv"`)
              .send(measureReportCsv(body));
          }
          return sendResult(request, reply, { status: 200, body }, options, deps.fhirBase);
        });
      }
    },
    { prefix: '/fhir' },
  );
}

/** For the CapabilityStatement (app.ts `typeOperations.MeasureReport`). */
export const REPORT_OPERATIONS = REPORTS.map((r) => ({ name: r.name, definition: `https://fhir.hospital.example.org/OperationDefinition/MeasureReport-${r.name}` }));
