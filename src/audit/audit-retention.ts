import { sql } from 'kysely';
import type { DatabaseHandle, Db } from '../storage/db.js';
import { AuditStore } from '../storage/audit-store.js';
import { archiveAuditTrail, type AuditArchiveResult } from './audit-archive.js';
import type { AuditSource } from './audit-event.js';

export interface AuditRetentionOptions {
  /** AUDIT_RETENTION_DAYS: events recorded longer ago than this are archived. */
  days: number;
  /** AUDIT_ARCHIVE_DIR: where the archive files go, on this server's host. */
  dir: string;
  source: AuditSource;
  baseUrls: readonly string[];
  /** How often it looks (default hourly). */
  intervalMs?: number;
  log: (message: string, error?: unknown) => void;
}

const HOUR = 3_600_000;
/** The advisory lock that keeps two servers on one PostgreSQL schema from archiving at once (keyed by schema: tenants apart do not wait for each other). */
const ARCHIVE_LOCK = sql`hashtext('fhir.audit_archive:' || current_schema())`;

/**
 * The audit trail's retention run by the server itself (AUDIT_RETENTION_DAYS with
 * AUDIT_ARCHIVE_DIR): every hour, the events recorded more than that many days ago are archived as
 * `npm run audit:archive` does (files in the directory, then deleted, the archival recorded as an
 * AuditEvent). This is what an embedded database needs — the CLI cannot open it while the server
 * runs. On PostgreSQL, several servers may share the database: a session advisory lock lets one
 * of them archive at a time (the others skip that hour); the files go to that server's directory.
 */
export class AuditRetention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<AuditArchiveResult | undefined> | undefined;
  /** Ends a pass after its current file when the server stops (the rest waits for the next start). */
  private readonly stopping = new AbortController();

  constructor(
    private readonly database: Pick<DatabaseHandle, 'unlimitedDb' | 'kind'>,
    private readonly options: AuditRetentionOptions,
  ) {}

  start(): void {
    if (this.timer) return;
    void this.runOnce();
    this.timer = setInterval(() => void this.runOnce(), this.options.intervalMs ?? HOUR);
    this.timer.unref();
  }

  /**
   * One pass; never throws (the next one tries again). Resolves to what was archived, or
   * undefined when another server held the lock or the pass failed. A pass already running in
   * this process is joined, not started twice.
   */
  runOnce(): Promise<AuditArchiveResult | undefined> {
    if (this.stopping.signal.aborted) return Promise.resolve(undefined);
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<AuditArchiveResult | undefined> {
    const before = new Date(Date.now() - this.options.days * 86_400_000);
    const archive = (db: Db) =>
      archiveAuditTrail(
        { store: new AuditStore(db), source: this.options.source, baseUrls: this.options.baseUrls },
        { before, dir: this.options.dir, operator: 'fhir-server', via: `AUDIT_RETENTION_DAYS=${this.options.days}`, signal: this.stopping.signal },
      );
    try {
      // The embedded database has one process (src/storage/data-dir-lock.ts) and one connection,
      // which a held connection would take from every request for the whole pass.
      const result =
        this.database.kind === 'pglite'
          ? await archive(this.database.unlimitedDb)
          : await this.database.unlimitedDb.connection().execute(async (conn) => {
              const locked = await sql<{ ok: boolean }>`SELECT pg_try_advisory_lock(${ARCHIVE_LOCK}) AS ok`.execute(conn);
              if (!locked.rows[0]?.ok) return undefined;
              try {
                return await archive(conn);
              } finally {
                await sql`SELECT pg_advisory_unlock(${ARCHIVE_LOCK})`.execute(conn);
              }
            });
      // Counts only: the events themselves name patients.
      if (result && result.events > 0) this.options.log(`audit retention: ${result.events} AuditEvent(s) recorded before ${result.before} archived to ${result.files.length} file(s) in ${this.options.dir}`);
      return result;
    } catch (e) {
      this.options.log('audit retention: the archival failed (events not in a complete file stay in the database; the next pass tries again)', e);
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stopping.abort();
    await this.running;
  }
}
