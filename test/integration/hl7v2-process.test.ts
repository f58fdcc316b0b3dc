import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ackCode, ackControlId, MllpClient, sample } from './hl7v2-helpers.js';
import { freePort } from '../support/ports.js';
import { startServerProcess } from '../support/server-process.js';

const dataDir = mkdtempSync(join(tmpdir(), 'hl7v2-process-'));
let child: ChildProcess | undefined;

afterAll(() => {
  child?.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('server process: the MLLP listener on HL7_MLLP_PORT (contract)', () => {
  it('answers over MLLP beside HTTP and closes connections on SIGTERM', async () => {
    const [port, mllpPort] = [await freePort(), await freePort()];
    const server = await startServerProcess(port, {
      DATA_DIR: dataDir,
      LOG_LEVEL: 'silent',
      HL7_MLLP_PORT: String(mllpPort),
      FHIR_BOOTSTRAP_CLIENT_ID: 'hl7-process',
      FHIR_BOOTSTRAP_CLIENT_SECRET: randomBytes(12).toString('hex'),
      // The embedded database, no Redis; audit and notifications as configured.
      BASE_URL: undefined,
      DATABASE_URL: undefined,
      REDIS_URL: undefined,
      AUDIT_EVENTS: process.env.AUDIT_EVENTS,
      NOTIFICATIONS: process.env.NOTIFICATIONS,
    }, { readyPort: mllpPort });
    child = server.child;
    const client = await MllpClient.open(mllpPort);
    const message = sample('ms-LAB-ORU-2.hl7');
    const ack = await client.exchange(message);
    expect(ackCode(ack)).toBe('AA');
    expect(ackControlId(ack)).toBe('ControlID');
    child.kill('SIGTERM');
    expect(await client.waitClosed(30_000)).toBe(true);
    expect(await server.exited).toBe(0);
  }, 180_000);
});
