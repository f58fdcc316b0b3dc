import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame } from '../../src/hl7v2/mllp/framing.js';
import { startTestApp, type TestApp } from '../support/test-app.js';

/**
 * Issue 17 §7 (seed: TLS 1.3 in transit): with TLS_CERT_FILE / TLS_KEY_FILE the API is HTTPS
 * (TLS 1.3 minimum by default, HSTS) and MLLP runs over TLS; without them both are plain and TLS
 * is the reverse proxy's job (README).
 */
const dir = mkdtempSync(join(tmpdir(), 'fhir-tls-'));
const certFile = join(dir, 'cert.pem');
const keyFile = join(dir, 'key.pem');
let cert: Buffer;
let t: TestApp;
let httpsPort: number;
let mllpPort: number;

beforeAll(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  cert = readFileSync(certFile);
  t = await startTestApp({ TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile });
  await t.server.http.listen({ port: 0, host: '127.0.0.1' });
  httpsPort = (t.server.http.server.address() as { port: number }).port;
  mllpPort = await t.server.hl7v2.listen(0, '127.0.0.1');
});
afterAll(async () => {
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

function get(path: string, options: { maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string; protocol?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: httpsPort, path, ca: cert, servername: 'localhost', maxVersion: options.maxVersion, agent: false, headers: { authorization: `Bearer ${t.token}` } }, (res) => {
      const protocol = (res.socket as { getProtocol?: () => string | null }).getProtocol?.() ?? undefined;
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, protocol }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('TLS (issue 17 §7)', () => {
  it('serves the FHIR API over HTTPS with TLS 1.3 and HSTS', async () => {
    const res = await get('/fhir/metadata');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).resourceType).toBe('CapabilityStatement');
    expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.protocol).toBe('TLSv1.3');
  });

  it('refuses a TLS 1.2 client by default (TLS_MIN_VERSION=TLSv1.3)', async () => {
    await expect(get('/fhir/metadata', { maxVersion: 'TLSv1.2' })).rejects.toThrow();
  });

  it('plain HTTP on the TLS port gets no FHIR answer', async () => {
    const res = await fetch(`http://127.0.0.1:${httpsPort}/fhir/metadata`).then((r) => r.status, () => 'refused');
    expect(res).not.toBe(200);
  });

  it('MLLP over TLS: a framed ORU gets its ACK on the encrypted connection', async () => {
    const message = ['MSH|^~\\&|LAB|HOSP|FHIR|HOSP|20240501101500||ORU^R01|TLS-1|P|2.5', 'PID|1||TLS123^^^HOSP^MR||Secure^Sam||19800101|M', 'OBR|1||ACC-TLS|2345-7^Glucose^LN', 'OBX|1|NM|2345-7^Glucose^LN||95|mg/dL|70-99|N|||F'].join('\r');
    const ack = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: mllpPort, ca: cert, servername: 'localhost' }, () => socket.write(encodeFrame(message)));
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString('utf8');
        if (text.includes('\u001c\r')) {
          socket.end();
          resolve(text);
        }
      });
      socket.on('error', reject);
      setTimeout(() => reject(new Error(`no ACK: ${text}`)), 20_000).unref();
    });
    expect(ack).toMatch(/MSA\|AA\|TLS-1/);
  });
});
