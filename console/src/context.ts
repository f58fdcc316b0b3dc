import type { Bundle, FhirResource, MeasureReport, Parameters } from 'fhir/r4.js';
import type { Fhir } from './fhir.js';
import type { Session } from './oauth.js';

/** What every view gets: the API with the user's token, who the user is, and navigation. */
export interface ViewContext {
  fhir: Fhir;
  session: Session;
  /** Opens the patient chart (the patient's id stays in memory, never in the URL). */
  openChart: (patientId: string) => void;
}

/** The first MeasureReport of an operation's answer (a MeasureReport, a Parameters or a Bundle). */
export function measureReportOf(answer: FhirResource | undefined): MeasureReport | undefined {
  if (!answer) return undefined;
  if (answer.resourceType === 'MeasureReport') return answer;
  if (answer.resourceType === 'Parameters') {
    const found = (answer as Parameters).parameter?.find((p) => p.resource?.resourceType === 'MeasureReport')?.resource;
    return found as MeasureReport | undefined;
  }
  if (answer.resourceType === 'Bundle') return (answer as Bundle).entry?.find((e) => e.resource?.resourceType === 'MeasureReport')?.resource as MeasureReport | undefined;
  return undefined;
}

/** `MeasureReport/$name?periodStart&periodEnd` (the hospital reports); throws when unavailable. */
export async function hospitalReport(fhir: Fhir, name: string, periodStart: string, periodEnd: string): Promise<MeasureReport> {
  const answer = await fhir.get<FhirResource>(`MeasureReport/$${name}?periodStart=${periodStart}&periodEnd=${periodEnd}`);
  const report = measureReportOf(answer);
  if (!report) throw new Error('the server answered without a MeasureReport');
  return report;
}
