import { Agent, request as httpRequest } from 'node:http';

/** The outcome of one request as the balancer's client sees it. */
export interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  port: number;
}

/**
 * A test stand-in for a load balancer in front of several server processes: it sends each
 * request to the next instance in rotation, keeps keep-alive connections, checks `/readyz` of
 * every instance every `healthIntervalMs` (an instance answering 503 or not answering is out of
 * rotation until it answers 200 again), and resends a request to another instance only when the
 * connection was refused — the request was never sent then. Any other failure after sending
 * (reset, hang-up, timeout) is the caller's to count: a balancer cannot safely resend a POST.
 */
export class TestBalancer {
  private readonly live = new Map<number, boolean>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 8 });
  private next = 0;
  private timer?: NodeJS.Timeout;
  refusedRetries = 0;

  constructor(
    private readonly ports: number[],
    private readonly healthIntervalMs = 100,
  ) {
    for (const p of ports) this.live.set(p, true);
  }

  start(): void {
    const check = () =>
      void Promise.all(this.ports.map(async (port) => this.live.set(port, await this.ready(port)))).finally(() => {
        if (this.timer) this.timer = setTimeout(check, this.healthIntervalMs);
      });
    this.timer = setTimeout(check, 0);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.agent.destroy();
  }

  /** Sends to a live instance; waits (up to `waitMs`) while none is live. */
  async send(method: string, path: string, headers: Record<string, string>, body?: string, waitMs = 30_000): Promise<Answer> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const port = this.pick();
      if (port === undefined) {
        if (Date.now() > deadline) throw new Error('no live instance');
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      try {
        return await this.once(port, method, path, headers, body);
      } catch (e) {
        // Refused: nothing was sent. Out of rotation until its health check passes again.
        if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw e;
        this.live.set(port, false);
        this.refusedRetries++;
      }
    }
  }

  private pick(): number | undefined {
    for (let i = 0; i < this.ports.length; i++) {
      const port = this.ports[this.next++ % this.ports.length];
      if (this.live.get(port)) return port;
    }
    return undefined;
  }

  private once(port: number, method: string, path: string, headers: Record<string, string>, body?: string, agent: Agent | false = this.agent, timeoutMs = 30_000): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent, timeout: timeoutMs }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers, port }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** A health check on a connection of its own, as a balancer's checker does. */
  private async ready(port: number): Promise<boolean> {
    try {
      return (await this.once(port, 'GET', '/readyz', {}, undefined, false, 1_000)).status === 200;
    } catch {
      return false;
    }
  }

  /** One request on the balancer's keep-alive connections to a given instance (for checks of one instance). */
  direct(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
    return this.once(port, method, path, headers);
  }
}
