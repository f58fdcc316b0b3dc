import type { FastifyInstance } from 'fastify';

/** The first phase of a graceful shutdown, before the listener closes. */
export interface Drain {
  readonly draining: boolean;
  /** From now on: not ready, and every response closes its keep-alive connection. */
  start(): void;
}

/**
 * Zero-downtime restarts behind a load balancer (issue 17 §7). A stopping process first drains:
 * it keeps serving, but `/readyz` answers 503 so the balancer's health check takes it out of
 * rotation, and every response carries `Connection: close`, so a client holding a keep-alive
 * connection opens its next one elsewhere. Only then does the listener close (main.ts). Closing
 * idle keep-alive connections at once instead races with a request the client is sending on one
 * at that moment: that request is lost after it was sent, and a balancer may not resend a POST.
 */
export function registerDrain(http: FastifyInstance): Drain {
  let draining = false;
  // Callback style: it runs on every response, and an async hook costs a promise each time.
  http.addHook('onSend', (request, reply, payload, done) => {
    // HTTP/1.1 only: HTTP/2 has no Connection header (GOAWAY instead).
    if (draining && request.raw.httpVersionMajor === 1) reply.header('connection', 'close');
    done(null, payload);
  });
  return {
    get draining() {
      return draining;
    },
    start() {
      draining = true;
    },
  };
}
