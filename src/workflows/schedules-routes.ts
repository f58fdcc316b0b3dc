import type { FastifyInstance } from 'fastify';
import type { Parameters } from 'fhir/r4.js';
import { scopesAllow } from '../auth/scopes.js';
import type { TokenService } from '../auth/token-service.js';
import { errors } from '../fhir/errors.js';
import { queryOf } from '../http/fhir-routes.js';
import { outputOptions, sendResult } from '../http/respond.js';
import type { ResourceStore } from '../storage/resource-store.js';
import { generateSlots, type SlotGenerationSettings } from './schedules-generate.js';

export interface ScheduleRouteDeps {
  store: ResourceStore;
  tokens: TokenService;
  fhirBase: string;
  settings: SlotGenerationSettings;
}

/** `POST /fhir/Schedule/{id}/$generate-slots`: the slot generation job, now, for one Schedule. */
export async function registerSchedules(http: FastifyInstance, deps: ScheduleRouteDeps): Promise<void> {
  await http.register(
    async (app) => {
      app.addHook('onRequest', async (request) => {
        request.auth = await deps.tokens.verify(request.headers.authorization);
      });
      app.post<{ Params: { id: string } }>('/Schedule/:id/$generate-slots', async (request, reply) => {
        const auth = request.auth!;
        const staff = auth.scopes.filter((s) => s.context !== 'patient');
        if (!scopesAllow(staff, 'Schedule', 'r') || !scopesAllow(staff, 'Slot', 'c')) {
          throw errors.forbidden('generating slots needs read access to Schedule and create access to Slot (user or system scopes)');
        }
        const id = request.params.id;
        if (!/^[A-Za-z0-9\-.]{1,64}$/.test(id)) throw errors.incorrect('not a Schedule id');
        const result = await generateSlots(deps.store, id, deps.settings);
        const body: Parameters = {
          resourceType: 'Parameters',
          parameter: [
            { name: 'planned', valueInteger: result.planned },
            { name: 'created', valueInteger: result.created },
            { name: 'emergency', valueInteger: result.emergency },
            { name: 'horizonDays', valueInteger: deps.settings.horizonDays },
          ],
        };
        return sendResult(request, reply, { status: 200, body }, outputOptions(queryOf(request)), deps.fhirBase);
      });
    },
    { prefix: '/fhir' },
  );
}

export const GENERATE_SLOTS_OPERATION = { name: 'generate-slots', definition: 'https://fhir.hospital.example.org/OperationDefinition/Schedule-generate-slots' };
