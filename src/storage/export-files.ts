import { createReadStream } from 'node:fs';
import { appendFile, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import type { Db } from './db.js';
import { checkpointStatement, type JobStore } from './job-store.js';

export interface OutputChunk {
  fileNo: number;
  seq: number;
  kind: 'output' | 'error';
  resourceType: string;
  count: number;
  /** one gzip member holding the chunk's NDJSON lines */
  body: Buffer;
}

/**
 * Where export files live. A file is a sequence of gzip members (one per page the job wrote),
 * which concatenated are one valid gzip stream: served as is to clients accepting gzip.
 */
export interface ExportFiles {
  /**
   * Appends a chunk and records progress + heartbeat, only while run `runId` still holds the
   * job; false = the job was lost (cancelled or taken over) and the run must stop.
   */
  append(jobId: string, runId: string, chunk: OutputChunk, progress: string): Promise<boolean>;
  /** The chunks of a file in order, never more than one in memory. */
  chunks(jobId: string, fileNo: number): AsyncIterable<Buffer>;
  /** Whether any file of the job is stored (operations, tests). */
  has(jobId: string): Promise<boolean>;
  remove(jobIds: readonly string[]): Promise<void>;
}

/**
 * Files as rows of `export_output` (PostgreSQL): any server process can serve any download,
 * and deleting a job deletes its files in the same database.
 */
export class DatabaseExportFiles implements ExportFiles {
  constructor(private readonly db: Db) {}

  /**
   * One statement: the UPDATE locks the job row, so a cancel either happens before (nothing is
   * written) or waits for this chunk and then removes it with the rest.
   */
  async append(jobId: string, runId: string, chunk: OutputChunk, progress: string): Promise<boolean> {
    const r = await sql<{ job_id: string }>`
      WITH j AS (${checkpointStatement(jobId, runId, progress)})
      INSERT INTO export_output (job_id, file_no, seq, kind, resource_type, count, body)
      SELECT j.id, ${chunk.fileNo}, ${chunk.seq}, ${chunk.kind}, ${chunk.resourceType}, ${chunk.count}, ${chunk.body} FROM j
      RETURNING job_id`.execute(this.db);
    return r.rows.length > 0;
  }

  async *chunks(jobId: string, fileNo: number): AsyncGenerator<Buffer> {
    let seq = -1;
    for (;;) {
      const r = await sql<{ seq: number; body: Uint8Array }>`
        SELECT seq, body FROM export_output WHERE job_id = ${jobId} AND file_no = ${fileNo} AND seq > ${seq}
        ORDER BY seq LIMIT 1`.execute(this.db);
      const row = r.rows[0];
      if (!row) return;
      seq = Number(row.seq);
      // pg gives a Buffer, PGlite a Uint8Array: wrap without copying
      yield Buffer.isBuffer(row.body) ? row.body : Buffer.from(row.body.buffer, row.body.byteOffset, row.body.byteLength);
    }
  }

  async has(jobId: string): Promise<boolean> {
    const r = await sql<{ x: number }>`SELECT 1 AS x FROM export_output WHERE job_id = ${jobId} LIMIT 1`.execute(this.db);
    return r.rows.length > 0;
  }

  async remove(jobIds: readonly string[]): Promise<void> {
    if (jobIds.length === 0) return;
    await sql`DELETE FROM export_output WHERE job_id = ANY(${[...jobIds]}::text[])`.execute(this.db);
  }
}

const SAFE_ID = /^[0-9a-f-]{36}$/;
/** Files are read back in pieces of this size. */
const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * Files on local disk (`DATA_DIR/exports`, or a temporary folder for an in-memory database),
 * for the embedded database: PGlite serves one process anyway, and writing the files into it
 * would cost the single database connection (measured: half of the export time) and, in
 * memory mode, RAM. A cancel racing a write is settled by the checkpoint that follows each
 * write: the run that lost its job removes what it wrote.
 */
export class DiskExportFiles implements ExportFiles {
  constructor(
    private readonly root: string,
    private readonly jobs: JobStore,
  ) {}

  private dir(jobId: string): string {
    if (!SAFE_ID.test(jobId)) throw new Error(`unexpected job id ${jobId.slice(0, 40)}`);
    return join(this.root, jobId);
  }

  async append(jobId: string, runId: string, chunk: OutputChunk, progress: string): Promise<boolean> {
    const dir = this.dir(jobId);
    await mkdir(dir, { recursive: true });
    await appendFile(join(dir, `${chunk.fileNo}.ndjson.gz`), chunk.body);
    if (await this.jobs.checkpoint(jobId, runId, progress)) return true;
    await this.remove([jobId]);
    return false;
  }

  async *chunks(jobId: string, fileNo: number): AsyncGenerator<Buffer> {
    const path = join(this.dir(jobId), `${fileNo}.ndjson.gz`);
    try {
      await stat(path);
    } catch {
      return;
    }
    for await (const piece of createReadStream(path, { highWaterMark: READ_CHUNK_BYTES })) yield piece as Buffer;
  }

  async has(jobId: string): Promise<boolean> {
    try {
      await stat(this.dir(jobId));
      return true;
    } catch {
      return false;
    }
  }

  async remove(jobIds: readonly string[]): Promise<void> {
    for (const id of jobIds) await rm(this.dir(id), { recursive: true, force: true });
  }
}
