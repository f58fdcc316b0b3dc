import type { MedicationRequest, Observation, ObservationComponent, Resource } from 'fhir/r4.js';

/**
 * Vital signs the client left unflagged get `interpretation` and `referenceRange` from the server
 * (issue 13 §2, src/workflows/vital-signs.ts): tests that read examples back compare without
 * them where the example has none (key order kept); likewise `MedicationRequest.detectedIssue`
 * (the prescribing rule's findings, src/workflows/prescribing.ts).
 */
export function withoutServerFlags(stored: Resource, example: Resource): Resource {
  // The prescribing rule lists its findings (DetectedIssues it wrote) on the MedicationRequest.
  if (stored.resourceType === 'MedicationRequest' && example.resourceType === 'MedicationRequest') {
    const copy = { ...(stored as MedicationRequest) };
    if ((example as MedicationRequest).detectedIssue === undefined) delete copy.detectedIssue;
    return copy;
  }
  if (stored.resourceType !== 'Observation' || example.resourceType !== 'Observation') return stored;
  const sent = example as Observation;
  const strip = <T extends Observation | ObservationComponent>(s: T, e: Observation | ObservationComponent | undefined): T => {
    const copy = { ...s };
    if (e?.interpretation === undefined) delete copy.interpretation;
    if (e?.referenceRange === undefined) delete copy.referenceRange;
    return copy;
  };
  const out = strip(stored as Observation, sent);
  if (out.component) out.component = out.component.map((c, i) => strip(c, sent.component?.[i]));
  return out;
}
