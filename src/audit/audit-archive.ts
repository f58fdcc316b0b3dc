import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeLinesGzip } from '../storage/backup-file.js';
import type { ArchiveRow, AuditStore } from '../storage/audit-store.js';
import { archiveAuditEvent, type ArchiveAuditRecord, type AuditSource } from './audit-event.js';
import { AuditRenderer } from './audit-render.js';

/** Events read per statement. */
const PAGE = 1000;
/** Events per archive file: each file is on disk before its events are deleted, and its ids are held in memory until then. */
export const DEFAULT_EVENTS_PER_FILE = 100_000;

export interface AuditArchiveOptions {
  /** Events recorded before this instant are archived. */
  before: Date;
  /** Directory for the archive files and the manifest (created when missing). */
  dir: string;
  /** Who runs it, and how (the archival's own AuditEvent names both): see ArchiveAuditRecord. */
  operator: string;
  via: string;
  eventsPerFile?: number;
  /** Count only: nothing written, nothing deleted. */
  dryRun?: boolean;
  /** Told the running total after each page. */
  onProgress?: (archived: number) => void;
  /** Stops after the file being written (its events deleted, the archival recorded): a server shutting down. */
  signal?: AbortSignal;
}

export interface AuditArchiveFile {
  name: string;
  events: number;
  /** SHA-256 of the file as written (hex). */
  sha256: string;
  /** `recorded` of its first and last event. */
  first: string;
  last: string;
}

export interface AuditArchiveResult {
  before: string;
  /** Events archived and deleted (dry run: that would be). */
  events: number;
  files: AuditArchiveFile[];
  /** The manifest's file name (absent when nothing was archived, and in a dry run). */
  manifest?: string;
  /** The id of the AuditEvent that records this archival. */
  auditEventId?: string;
}

export interface AuditArchiveDeps {
  store: AuditStore;
  source: AuditSource;
  baseUrls: readonly string[];
}

/** An instant as AuditEvent.recorded is written (milliseconds), from the database's microseconds. */
const milliseconds = (instant: string) => instant.replace(/(\.\d{3})\d*Z$/, '$1Z');

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Flushes a file (or a directory's entry list) to the disk: the deletion that follows must not outrun it. */
async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Moves the audit trail's events recorded before a cutoff out of the server: into gzip NDJSON
 * files (one stored AuditEvent per line, as `$export` writes them) of at most `eventsPerFile`
 * events each, then deletes them from the database, file by file, only once the file is
 * written, flushed to disk and renamed from `.partial` to its final name. A run that fails
 * midway leaves every event either in a complete file or still in the database (a `.partial`
 * file is incomplete and may be removed); running it again archives what is left.
 *
 * Events are deleted by id, exactly those in the file: an event recorded before the cutoff but
 * written after its page was read (the audit writer retries during a database outage) stays for
 * the next run. At the end: a manifest (cutoff, files, counts, SHA-256), one AuditEvent recording
 * the archival with each file's SHA-256 (it stays in the trail), and VACUUM ANALYZE of the table.
 */
export async function archiveAuditTrail(deps: AuditArchiveDeps, options: AuditArchiveOptions): Promise<AuditArchiveResult> {
  const before = options.before.toISOString();
  if (options.before.getTime() > Date.now()) throw new Error(`the cutoff ${before} is in the future: only events already recorded can be archived`);
  if (options.dryRun) return { before, events: await deps.store.countRecordedBefore(before), files: [] };
  const perFile = Math.max(1, options.eventsPerFile ?? DEFAULT_EVENTS_PER_FILE);
  await mkdir(options.dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const files: AuditArchiveFile[] = [];
  let after: { recorded: string; id: string } | undefined;
  let archived = 0;
  for (let fileNo = 1; ; fileNo++) {
    const name = `AuditEvent-${stamp}-${String(fileNo).padStart(4, '0')}.ndjson.gz`;
    const partial = join(options.dir, `${name}.partial`);
    const ids: string[] = [];
    let first: ArchiveRow | undefined;
    let last: ArchiveRow | undefined;
    const lines = async function* (): AsyncGenerator<string> {
      while (ids.length < perFile) {
        const page = await deps.store.archivePage(before, after, Math.min(PAGE, perFile - ids.length));
        if (page.length === 0) return;
        for (const row of page) {
          ids.push(row.id);
          yield row.json;
        }
        first ??= page[0];
        last = page[page.length - 1]!;
        after = { recorded: last.recorded, id: last.id };
        options.onProgress?.(archived + ids.length);
      }
    };
    await writeLinesGzip(lines(), partial);
    if (ids.length === 0 || !first || !last) {
      await rm(partial, { force: true });
      break;
    }
    await syncPath(partial);
    await rename(partial, join(options.dir, name));
    await syncPath(options.dir);
    const sha256 = await sha256Of(join(options.dir, name));
    const deleted = await deps.store.removeArchived(ids);
    if (deleted !== ids.length) throw new Error(`${name}: ${ids.length} events archived but ${deleted} deleted; the file stays, check the trail before running again`);
    archived += ids.length;
    files.push({ name, events: ids.length, sha256, first: milliseconds(first.recorded), last: milliseconds(last.recorded) });
    if (ids.length < perFile || options.signal?.aborted) break;
  }
  if (files.length === 0) return { before, events: 0, files };

  const recorded = new Date().toISOString();
  const record: ArchiveAuditRecord = { operator: options.operator, via: options.via, before, events: archived, files, recorded };
  const manifest = `AuditEvent-${stamp}-manifest.json`;
  await writeFile(join(options.dir, manifest), `${JSON.stringify({ before, events: archived, files, created: recorded }, null, 2)}\n`);
  await syncPath(join(options.dir, manifest));
  const row = new AuditRenderer(deps.source, deps.baseUrls).event(archiveAuditEvent(record, deps.source));
  await deps.store.append([row]);
  await deps.store.vacuum();
  return { before, events: archived, files, manifest, auditEventId: row.id };
}
