import { spawn, type ChildProcess } from 'node:child_process';

/** A server process (src/main.ts through tsx, as `npm start` runs it) on a real socket. */
export interface ServerProcess {
  child: ChildProcess;
  port: number;
  base: string;
  output: () => string;
  /** Resolves with the exit code once the process has ended. */
  exited: Promise<number | null>;
}

/** Test client with a system scope over everything; only for processes started by tests. */
export const TEST_CLIENT = { id: 'proc-test-client', secret: 'proc-test-secret-for-tests-only' };

/**
 * Starts `src/main.ts` (or `entry`, relative to `cwd`) with the given environment on `port` and
 * waits until /readyz answers 200. The caller stops it (SIGTERM / SIGKILL).
 */
export async function startServerProcess(port: number, env: NodeJS.ProcessEnv, options: { cwd?: string; entry?: string } = {}): Promise<ServerProcess> {
  const fullEnv: NodeJS.ProcessEnv = {
    ...process.env,
    API_RATE_LIMIT_PER_CLIENT: '0',
    API_RATE_LIMIT_PER_IP: '0',
    PORT: String(port),
    HOST: '127.0.0.1',
    BASE_URL: `http://127.0.0.1:${port}`,
    LOG_LEVEL: 'warn',
    FHIR_BOOTSTRAP_CLIENT_ID: TEST_CLIENT.id,
    FHIR_BOOTSTRAP_CLIENT_SECRET: TEST_CLIENT.secret,
    HL7_MLLP_PORT: '0',
    AUDIT_EVENTS: 'off',
    NOTIFICATIONS: 'off',
    ...env,
  };
  for (const [k, v] of Object.entries(fullEnv)) if (v === undefined) delete fullEnv[k];
  const child = spawn(process.execPath, ['--import', 'tsx', options.entry ?? 'src/main.ts'], { env: fullEnv, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = `http://127.0.0.1:${port}`;
  // Generous: the machine running the tests may be loaded (a start includes the migrations).
  const deadline = Date.now() + 240_000;
  let last = 'not listening';
  for (;;) {
    try {
      const res = await fetch(`${base}/readyz`);
      if (res.ok) break;
      last = `readyz ${res.status}`;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`server exited early:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server did not become ready (${last}):\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, port, base, output: () => output, exited };
}

/** A client_credentials token of TEST_CLIENT. */
export async function processToken(base: string, scope = 'system/*.*'): Promise<string> {
  const res = await fetch(`${base}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}` },
    body: `grant_type=client_credentials&scope=${encodeURIComponent(scope)}`,
  });
  if (res.status !== 200) throw new Error(`token: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { access_token: string }).access_token;
}
