/**
 * What authentication and the audit trail cost on the request path: reads and searches per
 * second on three servers built alike and loaded alike, in one process, rounds interleaved
 * (A B C, then C B A, …) so drift (JIT, caches, other load) hits all of them:
 *   - "auth off":        no token check and no scope filter (the token check is replaced by
 *                        a context that may see everything), AUDIT_EVENTS=off;
 *   - "auth on, audit off": a DOCTOR user's token (`user/*.rs`, as the authorize flow issues
 *                        it): token verification, scope checks and the filter that keeps
 *                        AuditEvents from non-ADMIN users, on every request;
 *   - "auth on, audit on":  the same with AUDIT_EVENTS=on (one AuditEvent per request).
 * The audited rounds include draining the audit backlog: a round's time ends when every
 * event of its requests is written, so the writer's work is paid inside the figure.
 * Aim (issue 9): auth and audit on ≥ 0.8 × auth off, for reads and for searches.
 */
import type { Bundle, BundleEntry } from 'fhir/r4.js';
import type { ServerApp } from '../src/app.js';
import type { AuthContext } from '../src/auth/token-service.js';
import { parseScopes } from '../src/auth/scopes.js';
import { openBenchApp } from './bench-app.js';
import { loadNow } from './environment.js';
import { cpuSince, cpuSnapshot, cpuText, type CpuPerOperation } from './cpu.js';
import { measureFor, type Measurement } from './harness.js';

export interface AuthOverheadOptions {
  databaseUrl?: string;
  seconds: number;
  rounds: number;
  concurrency: number;
  patients: number;
}

type Mode = 'authOff' | 'authOn' | 'authAudit';
const MODES: Mode[] = ['authOff', 'authOn', 'authAudit'];
const LABEL: Record<Mode, string> = { authOff: 'auth off', authOn: 'auth on, audit off', authAudit: 'auth on, audit on' };

export interface AuthOverheadRow {
  what: 'read' | 'search';
  perSecond: Record<Mode, number>;
  p50Ms: Record<Mode, number>;
  /** CPU per request (median over the rounds): Node, and a local PostgreSQL's processes; the audited rounds include writing their events */
  cpu: Record<Mode, CpuPerOperation | undefined>;
  /** auth + audit on ÷ auth off (the aim: ≥ 0.8) */
  ratio: number;
  /** audit on ÷ audit off, both with auth on */
  auditRatio: number;
  /** auth on ÷ auth off, both without audit */
  authRatio: number;
  met: boolean;
}

export interface AuthOverheadReport {
  database: string;
  rows: AuthOverheadRow[];
  load: string;
  auditEventsWritten: number;
  auditLost: number;
  drainMs: number[];
}

interface Server {
  app: ServerApp;
  headers: Record<string, string>;
  close(): Promise<void>;
}

async function startServer(mode: Mode): Promise<Server> {
  const { app, close } = await openBenchApp({ AUDIT_EVENTS: mode === 'authAudit' ? 'on' : 'off' });
  let headers: Record<string, string> = {};
  if (mode === 'authOff') {
    // No token check: every request is let in as a caller that may see everything (no scope filter).
    const everything: AuthContext = { clientId: 'bench', subject: 'bench', scope: 'system/*.*', scopes: parseScopes('system/*.*'), expiresAt: Number.MAX_SAFE_INTEGER, kind: 'client' };
    app.tokens.verify = async () => everything;
  } else {
    // The token the authorize flow gives a DOCTOR signed in to an app asking for user/*.rs.
    const token = await app.tokens.issue({ sub: 'bench-doctor', clientId: 'bench-app', scope: 'openid fhirUser user/*.rs', fhirUser: 'Practitioner/bench-doctor', role: 'DOCTOR' });
    headers = { authorization: `Bearer ${token}` };
  }
  return { app, headers, close };
}

/** The same patients and observations on every server (written with a system token, not measured). */
async function seed(server: Server, patients: number): Promise<{ patients: string[]; observations: string[] }> {
  const token = await server.app.tokens.issue({ sub: 'bench', clientId: 'bench', scope: 'system/*.*' });
  const entry: BundleEntry[] = [];
  for (let i = 0; i < patients; i++) {
    const fullUrl = `urn:uuid:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    entry.push({ fullUrl, resource: { resourceType: 'Patient', name: [{ family: `Bench${i % 20}`, given: ['Audit'] }], birthDate: '1970-01-01', gender: i % 2 ? 'male' : 'female' }, request: { method: 'POST', url: 'Patient' } });
    for (let k = 0; k < 5; k++) {
      entry.push({
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { coding: [{ system: 'http://loinc.org', code: k % 2 ? '8867-4' : '29463-7' }] },
          subject: { reference: fullUrl },
          effectiveDateTime: `2024-0${1 + k}-15T10:00:00Z`,
          valueQuantity: { value: 60 + k, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
        },
        request: { method: 'POST', url: 'Observation' },
      });
    }
  }
  const res = await server.app.http.inject({ method: 'POST', url: '/fhir', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' }, payload: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }) });
  if (res.statusCode !== 200) throw new Error(`seeding failed: ${res.statusCode} ${res.body.slice(0, 300)}`);
  const ids = { patients: [] as string[], observations: [] as string[] };
  for (const e of (res.json() as Bundle).entry ?? []) {
    const [type, id] = (e.response?.location ?? '').split('/');
    if (type === 'Patient') ids.patients.push(id!);
    else if (type === 'Observation') ids.observations.push(id!);
  }
  await server.app.audit.flush();
  return ids;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchAuthOverhead(o: AuthOverheadOptions): Promise<AuthOverheadReport> {
  const servers = {} as Record<Mode, Server>;
  const ids = {} as Record<Mode, Awaited<ReturnType<typeof seed>>>;
  try {
    for (const mode of MODES) {
      servers[mode] = await startServer(mode);
      ids[mode] = await seed(servers[mode], o.patients);
    }
    const kinds = {
      read: (m: Mode, i: number) => (i % 2 ? `/fhir/Patient/${ids[m].patients[i % ids[m].patients.length]}` : `/fhir/Observation/${ids[m].observations[i % ids[m].observations.length]}`),
      search: (m: Mode, i: number) =>
        i % 2 ? `/fhir/Patient?family=Bench${i % 20}&_count=10` : `/fhir/Observation?patient=${ids[m].patients[i % ids[m].patients.length]}&code=http://loinc.org|29463-7&_count=10`,
    };
    const results: Record<'read' | 'search', Record<Mode, Measurement[]>> = {
      read: { authOff: [], authOn: [], authAudit: [] },
      search: { authOff: [], authOn: [], authAudit: [] },
    };
    const drainMs: number[] = [];
    // One unmeasured pass over every server and kind first: V8 compiles the read and search
    // paths (and the audit's) only after thousands of requests (bench/harness.ts warmUp), and
    // the first measured round would otherwise be partly the compiler's.
    for (const mode of MODES) {
      for (const what of ['read', 'search'] as const) {
        await measureFor(`${what} ${mode} (warm-up)`, Math.min(o.seconds, 2), o.concurrency, async (i) => {
          const res = await servers[mode].app.http.inject({ method: 'GET', url: kinds[what](mode, i), headers: servers[mode].headers });
          if (res.statusCode !== 200) throw new Error(`warm-up ${what} ${mode}: ${res.statusCode}`);
        });
      }
      await servers[mode].app.audit.flush();
    }
    for (let round = 0; round < o.rounds; round++) {
      for (const mode of round % 2 === 0 ? MODES : [...MODES].reverse()) {
        const server = servers[mode];
        for (const what of ['read', 'search'] as const) {
          const url = kinds[what];
          // The audited rounds count the drain's CPU too, so they take their own snapshot.
          const cpu = mode === 'authAudit' ? cpuSnapshot() : undefined;
          const m = await measureFor(`${what} ${mode}`, o.seconds, o.concurrency, async (i) => {
            const res = await server.app.http.inject({ method: 'GET', url: url(mode, i), headers: server.headers });
            if (res.statusCode !== 200) throw new Error(`${url(mode, i)}: ${res.statusCode} ${res.body.slice(0, 200)}`);
          });
          if (mode === 'authAudit') {
            // The round is not over until its AuditEvents are written.
            const t0 = performance.now();
            await server.app.audit.flush();
            const drained = performance.now() - t0;
            drainMs.push(drained);
            const seconds = m.seconds + drained / 1000;
            results[what][mode].push({ ...m, seconds, perSecond: m.operations / seconds, cpu: cpuSince(cpu!, m.operations) });
          } else {
            results[what][mode].push(m);
          }
        }
      }
    }
    const rows: AuthOverheadRow[] = (['read', 'search'] as const).map((what) => {
      const perSecond = Object.fromEntries(MODES.map((m) => [m, median(results[what][m].map((x) => x.perSecond))])) as Record<Mode, number>;
      const p50Ms = Object.fromEntries(MODES.map((m) => [m, median(results[what][m].map((x) => x.p50Ms))])) as Record<Mode, number>;
      const cpuOf = (m: Mode): CpuPerOperation | undefined => {
        const rounds = results[what][m].map((x) => x.cpu).filter((c): c is CpuPerOperation => c !== undefined);
        if (rounds.length === 0) return undefined;
        const db = rounds.map((c) => c.dbMicros).filter((d): d is number => d !== undefined);
        return { nodeMicros: median(rounds.map((c) => c.nodeMicros)), ...(db.length === rounds.length ? { dbMicros: median(db) } : {}) };
      };
      const cpu = Object.fromEntries(MODES.map((m) => [m, cpuOf(m)])) as Record<Mode, CpuPerOperation | undefined>;
      const ratio = perSecond.authAudit / perSecond.authOff;
      return { what, perSecond, p50Ms, cpu, ratio, auditRatio: perSecond.authAudit / perSecond.authOn, authRatio: perSecond.authOn / perSecond.authOff, met: ratio >= 0.8 };
    });
    const stats = servers.authAudit.app.audit.stats();
    return { database: o.databaseUrl ? 'PostgreSQL' : 'PGlite', rows, load: loadNow(), auditEventsWritten: stats.written, auditLost: stats.lost, drainMs };
  } finally {
    for (const mode of MODES) await servers[mode]?.close();
  }
}

export function printAuthOverhead(r: AuthOverheadReport, o: AuthOverheadOptions): void {
  console.log(
    `\nAuth and audit overhead on ${r.database} (${o.patients} patients × 5 observations, ${o.seconds} s × ${o.rounds} rounds interleaved, concurrency ${o.concurrency}, fastify inject; load ${r.load}):`,
  );
  console.log(`  ${'what'.padEnd(7)}${MODES.map((m) => LABEL[m].padStart(22)).join('')}   auth+audit ÷ auth off (aim ≥ 0.8)   audit on ÷ off   auth on ÷ off`);
  for (const row of r.rows) {
    const cells = MODES.map((m) => `${row.perSecond[m].toFixed(0)}/s p50 ${row.p50Ms[m].toFixed(1)} ms`.padStart(22)).join('');
    console.log(`  ${row.what.padEnd(7)}${cells}   ${row.ratio.toFixed(2).padStart(6)} ${row.met ? 'met' : 'NOT met'}${' '.repeat(22)}${row.auditRatio.toFixed(2).padStart(6)}${row.authRatio.toFixed(2).padStart(16)}`);
  }
  for (const row of r.rows) {
    console.log(`  CPU µs per ${row.what} (Node${row.cpu.authOff?.dbMicros === undefined ? '' : ' + PostgreSQL'}): ${MODES.map((m) => `${LABEL[m]} ${cpuText(row.cpu[m])}`).join(', ')}`);
  }
  console.log(`  AuditEvents written ${r.auditEventsWritten}, lost ${r.auditLost}; backlog drained after each audited round in ${r.drainMs.map((x) => x.toFixed(0)).join(', ')} ms (counted in the audited figures)`);
}
