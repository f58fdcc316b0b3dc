import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';

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

export interface StartOptions {
  cwd?: string;
  /** The entry file, relative to `cwd`: `src/main.ts` unless given (`src/worker.ts` for the worker). */
  entry?: string;
  /**
   * Ready when the process has printed this text (stdout or stderr) — for a process without
   * HTTP: the worker prints "worker started". Unset: ready when /readyz answers 200.
   */
  readyOutput?: string;
  /** Also wait until this TCP port on 127.0.0.1 accepts connections (the MLLP listener opens after HTTP). */
  readyPort?: number;
  /** How long to wait for readiness (ms); generous by default: the machine may be loaded and a start includes the migrations. */
  timeoutMs?: number;
}

/**
 * Starts `src/main.ts` (or `entry`, relative to `cwd`) with the given environment on `port` and
 * waits until it is ready (see StartOptions). A variable given as undefined in `env` is removed
 * from the process's environment (e.g. `DATABASE_URL: undefined` for the embedded database).
 * The caller stops it (SIGTERM / SIGKILL); on a failed start it is killed here.
 */
export async function startServerProcess(port: number, env: NodeJS.ProcessEnv, options: StartOptions = {}): Promise<ServerProcess> {
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
  const deadline = Date.now() + (options.timeoutMs ?? 240_000);
  const what = options.readyOutput !== undefined ? 'process' : 'server';
  let last = options.readyOutput !== undefined ? `no "${options.readyOutput}" printed` : 'not listening';
  const ready = async (): Promise<boolean> => {
    if (options.readyOutput !== undefined) {
      if (!output.includes(options.readyOutput)) return false;
    } else {
      try {
        // Bounded: a server that accepts but never answers must still hit the deadline.
        const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(10_000) });
        if (!res.ok) {
          last = `readyz ${res.status}`;
          return false;
        }
      } catch {
        return false; // not listening yet (or no answer in time)
      }
    }
    if (options.readyPort !== undefined && !(await accepts(options.readyPort))) {
      last = `port ${options.readyPort} not listening`;
      return false;
    }
    return true;
  };
  while (!(await ready())) {
    if (child.exitCode !== null) throw new Error(`${what} exited early:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${what} did not become ready (${last}):\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, port, base, output: () => output, exited };
}

/** Whether a TCP connection to 127.0.0.1:port is accepted (then closed at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
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
