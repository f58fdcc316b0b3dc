import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/**
 * A local HTTP endpoint for rest-hook deliveries. `answer(n)` gives the status of the n-th
 * request (1-based): e.g. fail the first two, or always fail.
 */
export interface Receiver {
  url: string;
  received: ReceivedRequest[];
  /** requests answered 2xx */
  accepted(): ReceivedRequest[];
  waitFor(count: number, timeoutMs?: number, accepted?: boolean): Promise<ReceivedRequest[]>;
  close(): Promise<void>;
}

export async function startReceiver(answer: (n: number) => number = () => 200, delayMs = 0): Promise<Receiver> {
  const received: ReceivedRequest[] = [];
  const statuses: number[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      const status = answer(received.length);
      const reply = () => {
        statuses.push(status);
        res.statusCode = status;
        res.end();
      };
      if (delayMs > 0) setTimeout(reply, delayMs);
      else reply();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const accepted = () => received.filter((_, i) => (statuses[i] ?? 0) >= 200 && (statuses[i] ?? 0) < 300);
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    accepted,
    async waitFor(count, timeoutMs = 15_000, onlyAccepted = false) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const list = onlyAccepted ? accepted() : received;
        if (list.length >= count) return list;
        if (Date.now() > deadline) throw new Error(`receiver got ${list.length} of ${count} requests in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} not reached in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
