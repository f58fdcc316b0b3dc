import type { FastifyInstance } from 'fastify';
import type { TokenService } from '../auth/token-service.js';
import type { Db } from '../storage/db.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { encounterLinksHook } from './clinical-encounter-links.js';
import { clinicalRecordsHook } from './clinical-records.js';
import { CLINICAL_RECORD_OPERATIONS, registerClinicalOperations } from './clinical-operations.js';
import { vitalSignsHook } from './vital-signs.js';
import { loadVitalRanges } from './vital-signs-ranges.js';
import { registerVitalTrends, VITAL_TREND_OPERATIONS } from './vital-signs-trends.js';

/**
 * Clinical records of issue 13 §1–2 in one place: signed encounters and notes (signature,
 * immutability, amendments, drafts), encounter links to appointment and admission, and vital signs (units, flags, BMI) as before-commit rules,
 * and the operations $sign, $amend, $diff, Observation/$lastn and Observation/$stats.
 */
export interface ClinicalRuleOptions {
  terminologyDir: string;
  /** CLINICAL_AMENDMENT_WINDOW_HOURS (seed: 24). */
  amendmentWindowHours: number;
}

/** The before-commit rules, on the store of every process that writes (server, worker, import CLI). */
export function registerClinicalRules(store: ResourceStore, options: ClinicalRuleOptions): void {
  store.onBeforeWrite(vitalSignsHook(loadVitalRanges(options.terminologyDir)));
  store.onBeforeWrite(clinicalRecordsHook({ amendmentWindowHours: options.amendmentWindowHours }));
  // After the bed rules (registered earlier): an admission's EpisodeOfCare is linked by then.
  store.onBeforeWrite(encounterLinksHook);
}

export async function registerClinical(http: FastifyInstance, deps: { store: ResourceStore; db: Db; tokens: TokenService; fhirBase: string }): Promise<void> {
  await registerClinicalOperations(http, { store: deps.store, tokens: deps.tokens, fhirBase: deps.fhirBase });
  await registerVitalTrends(http, { db: deps.db, tokens: deps.tokens, fhirBase: deps.fhirBase });
}

/** Operations to declare in the CapabilityStatement (app.ts `typeOperations`). */
export const CLINICAL_OPERATIONS = { ...CLINICAL_RECORD_OPERATIONS, ...VITAL_TREND_OPERATIONS };
