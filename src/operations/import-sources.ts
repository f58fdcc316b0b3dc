import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { constants as zlibConstants, createGunzip, gunzipSync } from 'node:zlib';
import { errors } from '../fhir/errors.js';

/** One input of an import: a local file, or NDJSON text sent inline with an $import request. */
export type ImportSource = { kind: 'file'; path: string; name: string } | { kind: 'inline'; name: string; text: string };

export type ImportFormat = 'bundle' | 'ndjson';

const GZIP_MAGIC = [0x1f, 0x8b];

/** `.ndjson` / `.ndjson.gz` are NDJSON; `.json` / `.json.gz` hold one resource (a Bundle). */
export function formatOf(source: ImportSource): ImportFormat {
  if (source.kind === 'inline') return 'ndjson';
  const name = source.path.toLowerCase().replace(/\.gz$/, '');
  if (name.endsWith('.ndjson') || name.endsWith('.jsonl')) return 'ndjson';
  if (name.endsWith('.json')) return 'bundle';
  throw errors.incorrect(`${source.name}: not a .json, .json.gz, .ndjson or .ndjson.gz file`);
}

/** Content hash: the identity under which an input's progress is recorded. */
export async function fingerprint(source: ImportSource): Promise<string> {
  const hash = createHash('sha256');
  if (source.kind === 'inline') return hash.update(source.text).digest('hex');
  for await (const chunk of createReadStream(source.path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function sizeOf(source: ImportSource): Promise<number> {
  return source.kind === 'inline' ? Buffer.byteLength(source.text) : (await stat(source.path)).size;
}

function isGzip(bytes: Buffer): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
}

/** The whole text of a (possibly gzipped) JSON file; Bundles are parsed whole anyway. */
export async function readText(source: ImportSource): Promise<string> {
  if (source.kind === 'inline') return source.text;
  const bytes = await readFile(source.path);
  return (isGzip(bytes) ? gunzipSync(bytes) : bytes).toString('utf8');
}

const PEEK_BYTES = 64 * 1024;

/**
 * Bundle.type read from the start of a Bundle file without parsing all of it (writers put it
 * first: Synthea, HAPI, Blaze), or undefined when it is not there. Used only to order inputs.
 */
export async function bundleTypeHint(source: ImportSource): Promise<string | undefined> {
  if (source.kind === 'inline' || formatOf(source) !== 'bundle') return undefined;
  const fd = await open(source.path, 'r');
  let head: Buffer;
  try {
    const buffer = Buffer.alloc(PEEK_BYTES);
    const { bytesRead } = await fd.read(buffer, 0, PEEK_BYTES, 0);
    head = buffer.subarray(0, bytesRead);
  } finally {
    await fd.close();
  }
  let text: string;
  try {
    // A prefix of a gzip stream: flush what is there instead of failing on the missing end.
    text = (isGzip(head) ? gunzipSync(head, { finishFlush: zlibConstants.Z_SYNC_FLUSH }) : head).toString('utf8', 0, PEEK_BYTES);
  } catch {
    return undefined;
  }
  const cut = text.indexOf('"entry"');
  const match = /"type"\s*:\s*"([a-z-]+)"/.exec(cut >= 0 ? text.slice(0, cut) : text);
  return match?.[1];
}

/** Counts the (compressed) bytes passing through, for progress reporting. */
class ByteCounter extends Transform {
  constructor(private readonly onBytes: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.onBytes(chunk.length);
    callback(null, chunk);
  }
}

export interface NdjsonLine {
  /** 0-based line number in the file */
  lineNo: number;
  text: string;
}

/**
 * The lines of an NDJSON input from line `startLine` on, streamed (a file is never held in
 * memory whole), gunzipped when the file is gzip. `onBytes` sees the input bytes as read.
 */
export async function* ndjsonLines(source: ImportSource, startLine: number, onBytes: (n: number) => void = () => undefined): AsyncGenerator<NdjsonLine> {
  let input: Readable;
  if (source.kind === 'inline') {
    onBytes(Buffer.byteLength(source.text));
    input = Readable.from([source.text]);
  } else {
    const head = Buffer.alloc(2);
    const fd = await open(source.path, 'r');
    try {
      await fd.read(head, 0, 2, 0);
    } finally {
      await fd.close();
    }
    const raw = createReadStream(source.path).pipe(new ByteCounter(onBytes));
    input = isGzip(head) ? raw.pipe(createGunzip()) : raw;
  }
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const text of lines) {
      if (lineNo >= startLine) yield { lineNo, text };
      lineNo++;
    }
  } finally {
    lines.close();
    input.destroy();
  }
}

/**
 * Where an $import request may read files: `url` (a `file:` URL or a path, relative ones
 * against `root`) must name a regular file inside `root` once symbolic links are resolved.
 * Anything else is refused, so a client can never make the server read outside the
 * directory the operator set aside for imports.
 */
export async function resolveAllowedFile(root: string, url: string): Promise<string> {
  let path: string;
  if (/^file:/i.test(url)) {
    try {
      path = fileURLToPath(url);
    } catch {
      throw errors.incorrect(`input url ${url.slice(0, 200)} is not a valid file URL`);
    }
  } else if (/^[a-z][a-z0-9+.-]*:/i.test(url)) {
    throw errors.incorrect(`input url ${url.slice(0, 200)}: only files under the server's import directory can be imported`);
  } else {
    path = url;
  }
  const realRoot = await realpath(root);
  const candidate = isAbsolute(path) ? path : resolve(realRoot, path);
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    throw errors.incorrect(`input url ${url.slice(0, 200)}: no such file under the import directory`);
  }
  const rel = relative(realRoot, real);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep).includes('..')) {
    throw errors.incorrect(`input url ${url.slice(0, 200)}: only files under the server's import directory can be imported`);
  }
  if (!(await stat(real)).isFile()) throw errors.incorrect(`input url ${url.slice(0, 200)} is not a file`);
  return real;
}
