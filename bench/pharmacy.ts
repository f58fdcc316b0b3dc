import type { Bundle, Medication } from 'fhir/r4.js';
import type { ServerApp } from '../src/app.js';
import { compare, measure, type Comparison } from './harness.js';

/**
 * Dispensing under contention (issue 13 §4, seed 004 FR-PH-002): `pharmacists` callers (each
 * with a PHARMACIST user token) dispense 1 unit at a time of the same product, from the same two
 * batches, each against a prescription of its own — every dispense checks the prescription,
 * locks the product and its batches, takes stock FIFO and rewrites the Medication's stock. At
 * the end the stock must be exactly initial − dispensed (asserted). Compared with plain
 * MedicationDispense creates of the same size without stock (a coded medication, no
 * prescription: no stock rule runs), through fastify inject in the same run.
 */
export interface PharmacyBenchReport {
  dispenses: number;
  pharmacists: number;
  /** Dispenses per second with stock rules, `pharmacists` at once on the same batches. */
  dispensesPerSecond: number;
  initialStock: number;
  finalStock: number;
  comparisons: Comparison[];
}

const SD = 'https://fhir.hospital.example.org/StructureDefinition';
const CHUNK = 100;

export async function benchPharmacy(o: { app: ServerApp; token: string; dispenses: number; pharmacists: number }): Promise<PharmacyBenchReport> {
  const system = { authorization: `Bearer ${o.token}` };
  const post = (type: string, body: unknown, headers: Record<string, string> = system) =>
    o.app.http.inject({ method: 'POST', url: type ? `/fhir/${type}` : '/fhir', headers: { ...headers, 'content-type': 'application/fhir+json' }, payload: JSON.stringify(body) });
  const created = async (type: string, body: unknown) => {
    const res = await post(type, body);
    if (res.statusCode !== 201) throw new Error(`${type} not created: ${res.statusCode} ${res.body.slice(0, 300)}`);
    return (res.json() as { id: string }).id;
  };
  const medication = await created('Medication', { resourceType: 'Medication', status: 'active', code: { text: 'Bench paracetamol 500 mg' } });
  const expiry = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
  // Two batches, the nearer expiry smaller: dispenses empty it, then go on to the second (FIFO).
  const initialStock = o.dispenses + 10;
  const first = Math.floor(o.dispenses / 3);
  for (const [lot, days, quantity] of [['BENCH-A', 200, first], ['BENCH-B', 400, initialStock - first]] as const) {
    await created('SupplyDelivery', {
      resourceType: 'SupplyDelivery',
      status: 'completed',
      suppliedItem: { itemReference: { reference: `Medication/${medication}` }, quantity: { value: quantity, unit: 'tablet' } },
      extension: [{ url: `${SD}/pharmacy-batch`, extension: [{ url: 'lotNumber', valueString: lot }, { url: 'expirationDate', valueDate: expiry(days) }] }],
    });
  }
  // One patient and prescription per dispense (a patient's own prescriptions are checked against each other).
  const patients: string[] = [];
  const prescriptions: string[] = [];
  for (let at = 0; at < o.dispenses; at += CHUNK) {
    const n = Math.min(CHUNK, o.dispenses - at);
    const entry = Array.from({ length: n }, (_, i) => [
      { fullUrl: `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, resource: { resourceType: 'Patient', name: [{ family: `Bench${at + i}` }] }, request: { method: 'POST', url: 'Patient' } },
      {
        resource: {
          resourceType: 'MedicationRequest',
          status: 'active',
          intent: 'order',
          subject: { reference: `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}` },
          medicationReference: { reference: `Medication/${medication}` },
          dispenseRequest: { quantity: { value: 1, unit: 'tablet' } },
        },
        request: { method: 'POST', url: 'MedicationRequest' },
      },
    ]).flat();
    const res = await post('', { resourceType: 'Bundle', type: 'transaction', entry });
    if (res.statusCode !== 200) throw new Error(`prescriptions not created: ${res.statusCode} ${res.body.slice(0, 300)}`);
    const locations = ((res.json() as Bundle).entry ?? []).map((e) => e.response!.location!.split('/'));
    for (const [type, id] of locations) (type === 'Patient' ? patients : prescriptions).push(id!);
  }
  const pharmacists = await Promise.all(
    Array.from({ length: o.pharmacists }, async (_, i) => {
      const practitioner = await created('Practitioner', { resourceType: 'Practitioner', name: [{ family: `Pharmacist${i}` }] });
      const token = await o.app.tokens.issue({ sub: `bench-pharmacist-${i}`, clientId: 'bench-pharmacy', scope: 'openid fhirUser user/*.cruds', fhirUser: `Practitioner/${practitioner}`, role: 'PHARMACIST' });
      return { authorization: `Bearer ${token}` };
    }),
  );
  let dispensed = 0;
  const withStock = await measure('dispense with stock rules, 8 pharmacists on the same batches', o.dispenses, o.pharmacists, async (i) => {
    const res = await post(
      'MedicationDispense',
      {
        resourceType: 'MedicationDispense',
        status: 'completed',
        subject: { reference: `Patient/${patients[i]}` },
        medicationReference: { reference: `Medication/${medication}` },
        authorizingPrescription: [{ reference: `MedicationRequest/${prescriptions[i]}` }],
        quantity: { value: 1, unit: 'tablet' },
      },
      pharmacists[i % o.pharmacists],
    );
    if (res.statusCode !== 201) throw new Error(`dispense failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
    dispensed++;
  });
  const stored = await o.app.http.inject({ method: 'GET', url: `/fhir/Medication/${medication}`, headers: system });
  const finalStock = (stored.json() as Medication).extension?.find((e) => e.url === `${SD}/medication-stock-quantity`)?.valueQuantity?.value;
  if (finalStock !== initialStock - dispensed) throw new Error(`stock ${finalStock} after ${dispensed} dispenses from ${initialStock}: stock lost or double-counted`);
  const plain = await measure('MedicationDispense create without stock rules', o.dispenses, o.pharmacists, async (i) => {
    const res = await post(
      'MedicationDispense',
      { resourceType: 'MedicationDispense', status: 'completed', subject: { reference: `Patient/${patients[i]}` }, medicationCodeableConcept: { text: 'Bench paracetamol 500 mg' }, quantity: { value: 1, unit: 'tablet' } },
      pharmacists[i % o.pharmacists],
    );
    if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body.slice(0, 200)}`);
  });
  return {
    dispenses: o.dispenses,
    pharmacists: o.pharmacists,
    dispensesPerSecond: withStock.perSecond,
    initialStock,
    finalStock,
    comparisons: [
      // All dispenses of one product queue on its Medication row (the stock total lives there):
      // the figure is the serial rate of BEGIN, locks, prescription and stock reads, writes, COMMIT.
      compare('dispenses with stock rules (8 pharmacists, same batches) vs plain MedicationDispense create', withStock, plain, { text: 'throughput ≥ 0.2 × plain create', met: (c) => c.throughputRatio >= 0.2 }),
    ],
  };
}
