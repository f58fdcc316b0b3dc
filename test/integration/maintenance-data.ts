import type { Bundle, BundleEntry, Observation, Patient } from 'fhir/r4.js';
import type { TestApp } from '../support/test-app.js';

/**
 * Generated patients with body-height (LOINC 8302-2) and heart-rate (8867-4) Observations,
 * shaped like the search mix. Every value is a function of (patient, observation)
 * numbers, so the expected answer of each search is computed here, not hard-coded.
 */
export const PATIENTS_PER_BUNDLE = 50;
export const OBSERVATIONS_PER_PATIENT = 10;

export function heightCm(patient: number, k: number): number {
  return 150 + ((patient * 7 + k) % 40);
}
export function observationYear(k: number): number {
  return 2008 + k;
}
export function isHeight(k: number): boolean {
  return k % 2 === 0;
}

export function generatedBundle(bundleNumber: number): Bundle {
  const entry: BundleEntry[] = [];
  for (let i = bundleNumber * PATIENTS_PER_BUNDLE; i < (bundleNumber + 1) * PATIENTS_PER_BUNDLE; i++) {
    const fullUrl = `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    const patient: Patient = { resourceType: 'Patient', name: [{ family: `Nguyen${i}`, given: ['Ann'] }], gender: i % 2 ? 'male' : 'female', birthDate: '1970-01-01' };
    entry.push({ fullUrl, resource: patient, request: { method: 'POST', url: 'Patient' } });
    for (let k = 0; k < OBSERVATIONS_PER_PATIENT; k++) {
      const height = isHeight(k);
      const observation: Observation = {
        resourceType: 'Observation',
        status: 'final',
        subject: { reference: fullUrl },
        code: { coding: [{ system: 'http://loinc.org', code: height ? '8302-2' : '8867-4' }] },
        effectiveDateTime: `${observationYear(k)}-03-01T10:00:00Z`,
        valueQuantity: height
          ? { value: heightCm(i, k), unit: 'cm', system: 'http://unitsofmeasure.org', code: 'cm' }
          : { value: 60 + (k % 40), unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
      };
      entry.push({ resource: observation, request: { method: 'POST', url: 'Observation' } });
    }
  }
  return { resourceType: 'Bundle', type: 'transaction', entry };
}

/** Posts `bundles` generated transaction Bundles (550 resources each) through POST /fhir. */
export async function loadGenerated(app: TestApp, bundles: number): Promise<void> {
  for (let b = 0; b < bundles; b++) {
    const response = await app.request({ method: 'POST', url: '/fhir', payload: generatedBundle(b) });
    if (response.statusCode !== 200) throw new Error(`bundle ${b}: ${response.statusCode} ${response.body.slice(0, 300)}`);
  }
}

/** The search mix of the issue, with the number of matches each must find in `bundles` bundles. */
export function searchMix(bundles: number): Array<{ type: string; query: string; expected: number }> {
  const patients = bundles * PATIENTS_PER_BUNDLE;
  let tallHeights = 0;
  let recentHeartRates = 0;
  let nguyen1Males = 0;
  for (let i = 0; i < patients; i++) {
    if (`Nguyen${i}`.toLowerCase().startsWith('nguyen1') && i % 2 === 1) nguyen1Males++;
    for (let k = 0; k < OBSERVATIONS_PER_PATIENT; k++) {
      if (isHeight(k) && heightCm(i, k) > 180) tallHeights++;
      if (!isHeight(k) && observationYear(k) >= 2015) recentHeartRates++;
    }
  }
  return [
    { type: 'Observation', query: 'code=8302-2&value-quantity=gt180', expected: tallHeights },
    { type: 'Observation', query: 'code=http://loinc.org|8867-4&date=ge2015', expected: recentHeartRates },
    { type: 'Patient', query: 'family=Nguyen1&gender=male', expected: nguyen1Males },
  ];
}
