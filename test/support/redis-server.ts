import { spawn, type ChildProcess } from 'node:child_process';

/** Whether this machine has `redis-server` (tests that run their own skip without it). */
export const redisServerAvailable = (() => {
  try {
    return spawn('redis-server', ['--version']).pid !== undefined;
  } catch {
    return false;
  }
})();

/**
 * A redis-server of the test's own on `port` (the machine's shared Redis is never touched),
 * without persistence: a restart loses every queue, the worst case. Killed by `stopRedis`.
 */
export async function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  const deadline = Date.now() + 10_000;
  while (!output.includes('Ready to accept connections')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

export async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}
