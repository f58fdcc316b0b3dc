import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ackCode, ackControlId, MllpClient, sample } from './hl7v2-helpers.js';
import { freePort } from '../support/ports.js';

const dataDir = mkdtempSync(join(tmpdir(), 'hl7v2-process-'));
let child: ChildProcess | undefined;

afterAll(() => {
  child?.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('server process: the MLLP listener on HL7_MLLP_PORT (contract)', () => {
  it('answers over MLLP beside HTTP and closes connections on SIGTERM', async () => {
    const [port, mllpPort] = [await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      API_RATE_LIMIT_PER_CLIENT: '0',
      API_RATE_LIMIT_PER_IP: '0',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      HL7_MLLP_PORT: String(mllpPort),
      FHIR_BOOTSTRAP_CLIENT_ID: 'hl7-process',
      FHIR_BOOTSTRAP_CLIENT_SECRET: randomBytes(12).toString('hex'),
    };
    delete env.DATABASE_URL;
    delete env.REDIS_URL;
    child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child?.on('exit', (code) => resolve(code)));
    let client: MllpClient | undefined;
    const deadline = Date.now() + 90_000;
    while (!client) {
      try {
        client = await MllpClient.open(mllpPort);
      } catch {
        if (child.exitCode !== null) throw new Error('server exited early');
        if (Date.now() > deadline) throw new Error('MLLP listener did not start');
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const message = sample('ms-LAB-ORU-2.hl7');
    const ack = await client.exchange(message);
    expect(ackCode(ack)).toBe('AA');
    expect(ackControlId(ack)).toBe('ControlID');
    child.kill('SIGTERM');
    expect(await client.waitClosed(30_000)).toBe(true);
    expect(await exited).toBe(0);
  }, 180_000);
});
