import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics at /metrics: request durations by route pattern (never the raw URL:
 * ids and search values stay out of labels) plus the process defaults. One registry per
 * app, so several apps in one process (tests) do not collide.
 */
export function registerMetrics(app: FastifyInstance, poolStats?: () => { total: number; idle: number; waiting: number }): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method, route pattern and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  if (poolStats) {
    // Pool exhaustion shows as waiting > 0 long before requests time out with 503.
    new Gauge({
      name: 'db_pool_connections',
      help: 'Database pool connections by state (total, idle, waiting requests)',
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const s = poolStats();
        this.set({ state: 'total' }, s.total);
        this.set({ state: 'idle' }, s.idle);
        this.set({ state: 'waiting' }, s.waiting);
      },
    });
  }
  // The labelled series of each (method, route, status), looked up once: observe() with a labels
  // object sorts and joins the labels into a key on every call, and this runs on every response.
  type Series = ReturnType<typeof duration.labels>;
  const series = new Map<string, Map<string, Series>>();
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const key = `${request.method} ${reply.statusCode}`;
    let byKey = series.get(route);
    if (byKey === undefined) series.set(route, (byKey = new Map()));
    let s = byKey.get(key);
    if (s === undefined) byKey.set(key, (s = duration.labels({ method: request.method, route, status: String(reply.statusCode) })));
    s.observe(reply.elapsedTime / 1000);
    done();
  });
  app.get('/metrics', async (_request, reply) => {
    reply.type(registry.contentType);
    return registry.metrics();
  });
  return registry;
}

/** Jobs per queue and state (exports, imports, deliveries, notifications, HL7 v2, …). */
export function registerQueueMetrics(registry: Registry, depths: () => Promise<Array<{ queue: string; waiting: number; active: number; delayed: number; failed: number }>>): void {
  new Gauge({
    name: 'job_queue_jobs',
    help: 'Background jobs per queue by state',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const d of await depths().catch(() => [])) {
        for (const state of ['waiting', 'active', 'delayed', 'failed'] as const) this.set({ queue: d.queue, state }, d[state]);
      }
    },
  });
}

/** The MLLP listener: open connections, frames received, oversized frames, ACKs sent by code. */
export function registerMllpMetrics(registry: Registry, mllp: { connections: number; counters: { frames: number; oversized: number; acks: Map<string, number> } }): void {
  new Gauge({ name: 'hl7v2_mllp_connections', help: 'Open MLLP connections', registers: [registry], collect() { this.set(mllp.connections); } });
  new Counter({ name: 'hl7v2_mllp_frames_total', help: 'MLLP frames received', registers: [registry], collect() { this.reset(); this.inc(mllp.counters.frames); } });
  new Counter({ name: 'hl7v2_mllp_oversized_frames_total', help: 'MLLP frames refused for their size', registers: [registry], collect() { this.reset(); this.inc(mllp.counters.oversized); } });
  new Counter({
    name: 'hl7v2_mllp_acks_total',
    help: 'Acknowledgements sent over MLLP by MSA-1 code (AA, AE, AR, CA, CE, CR; batch)',
    labelNames: ['code'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [code, n] of mllp.counters.acks) this.inc({ code }, n);
    },
  });
}
