import type { FastifyInstance } from 'fastify';

export interface HealthDeps {
  /** Throws when a dependency (database, queue) is unreachable. */
  ready: () => Promise<void>;
}

/** Liveness and readiness for load balancers and orchestrators. */
export function registerHealthRoutes(app: FastifyInstance, deps: HealthDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (request, reply) => {
    try {
      await deps.ready();
      return { status: 'ready' };
    } catch (e) {
      request.log.warn({ err: e }, 'not ready');
      return reply.code(503).send({ status: 'unavailable' });
    }
  });
}
