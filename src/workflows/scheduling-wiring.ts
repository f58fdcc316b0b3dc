import type { FastifyInstance } from 'fastify';
import { scopesAllow } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { outputOptions, sendResult } from '../http/respond.js';
import { queryOf } from '../http/fhir-routes.js';
import { accessFilterFor } from '../search/sql/access.js';
import type { SearchService } from '../search/search-service.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { inpatientHook } from './inpatient.js';
import { wardOccupancy } from './inpatient-occupancy.js';
import { inpatientStayHook } from './inpatient-discharge.js';
import { loadRegistrationSystems, registrationHook } from './patient-registration.js';
import { matchPatients } from './patient-registration-match.js';
import { refuseMaskedPatientWrites } from './patient-masking.js';
import { leaveHook } from './schedules-leave.js';
import { schedulingHook } from './scheduling.js';
import { prescribingHook } from './prescribing.js';
import { PrescribingKnowledge } from './prescribing-knowledge.js';
import { refillHook } from './prescribing-refill.js';

/**
 * The front-desk rules of issue 12 in one place: the before-commit hooks (registration,
 * booking, beds) and the operations `Patient/$match` and `Location/[ward]/$occupancy` under /fhir.
 */
export interface FrontDeskDeps {
  store: ResourceStore;
  search: SearchService;
  tokens: TokenService;
  fhirBase: string;
  terminologyDir: string;
  /** APPOINTMENT_CHANGE_WINDOW_HOURS (seed: 24). */
  appointmentChangeWindowHours: number;
  /** SLOT_EMERGENCY_RELEASE_HOURS (default 2): reserved slots open to anyone this close to their start. */
  emergencyReleaseHours?: number;
  /** DISCHARGE_FOLLOW_UP_DAYS (default 14): the follow-up proposed at discharge. */
  dischargeFollowUpDays?: number;
}

/**
 * The before-commit rules, on the store of every process that writes (HTTP server, `npm run
 * worker` running `$import`, `npm run import`), so that no write path skips them.
 */
export function registerFrontDeskRules(store: ResourceStore, deps: Pick<FrontDeskDeps, 'terminologyDir' | 'appointmentChangeWindowHours' | 'emergencyReleaseHours' | 'dischargeFollowUpDays'>): void {
  // Before validation: a registration claiming the hospital Patient profile (patient number
  // required) is valid only once the number is assigned.
  store.onBeforeWrite(registrationHook(loadRegistrationSystems(deps.terminologyDir)), 'first');
  store.onBeforeWrite(schedulingHook({ changeWindowHours: deps.appointmentChangeWindowHours, emergencyReleaseHours: deps.emergencyReleaseHours ?? 2 }));
  store.onBeforeWrite(inpatientHook);
  store.onBeforeWrite(inpatientStayHook({ followUpDays: deps.dischargeFollowUpDays ?? 14 }));
  // Prescribing safety and refills (issue 13 §3): src/workflows/prescribing.ts, prescribing-refill.ts.
  store.onBeforeWrite(prescribingHook(new PrescribingKnowledge(deps.terminologyDir)));
  store.onBeforeWrite(refillHook);
  store.onBeforeWrite(refuseMaskedPatientWrites);
  // Leave blocks slots (issue 12 §2): src/workflows/schedules-leave.ts.
  store.onBeforeWrite(leaveHook);
}

/** The operations `Patient/$match` and `Location/[ward]/$occupancy` (the rules: registerFrontDeskRules). */
export async function registerFrontDesk(http: FastifyInstance, deps: FrontDeskDeps): Promise<void> {
  const systems = loadRegistrationSystems(deps.terminologyDir);
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      app.post('/Patient/$match', async (request, reply) => {
        const auth = request.auth!;
        if (!scopesAllow(auth.scopes, 'Patient', 'r')) throw errors.forbidden("the access token's scopes do not allow reading Patient");
        const bundle = await matchPatients({ search: deps.search, fhirBase: deps.fhirBase, systems }, request.body, accessFilterFor(auth));
        return sendResult(request, reply, { status: 200, body: bundle }, outputOptions(queryOf(request)), deps.fhirBase);
      });
      app.get<{ Params: { id: string } }>('/Location/:id/$occupancy', async (request, reply) => {
        const auth = request.auth!;
        // Who lies in which bed is patient data: staff and system scopes, not patient-context ones.
        const allowed = (type: string) => scopesAllow(auth.scopes.filter((s) => s.context !== 'patient'), type, 'r');
        if (!allowed('Location') || !allowed('Encounter')) throw errors.forbidden('ward occupancy needs read access to Location and Encounter (user or system scopes)');
        const id = request.params.id;
        if (!/^[A-Za-z0-9\-.]{1,64}$/.test(id)) throw errors.incorrect('not a Location id');
        const body = await wardOccupancy(deps.store, id);
        return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
      });
    },
    { prefix: '/fhir' },
  );
}

/** Operations to declare in the CapabilityStatement (app.ts `typeOperations`; Patient merges with the bulk ones). */
export const FRONT_DESK_OPERATIONS = {
  Patient: [{ name: 'match', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-match' }],
  Location: [{ name: 'occupancy', definition: 'https://fhir.hospital.example.org/OperationDefinition/occupancy' }],
};
