import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { createGunzip, createGzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';

/** Writes lines to a gzip file (`-` for standard output), waiting when the disk is slower. */
export async function writeLinesGzip(lines: AsyncIterable<string>, path: string): Promise<number> {
  const gzip = createGzip();
  const out = path === '-' ? process.stdout : createWriteStream(path);
  const written = pipeline(gzip, out);
  let bytes = 0;
  try {
    for await (const line of lines) {
      bytes += line.length + 1;
      if (!gzip.write(`${line}\n`)) await once(gzip, 'drain');
    }
  } catch (e) {
    gzip.destroy(e as Error);
    await written.catch(() => undefined);
    throw e;
  }
  gzip.end();
  await written;
  return bytes;
}

/**
 * The lines of a gzip file, or of a plain one when its name does not end in .gz. A generator:
 * the file is opened on the first read, with the reader already attached (readline drops the
 * lines it emits before anyone iterates), and closed when the reader stops early.
 */
export async function* readLinesGzip(path: string): AsyncGenerator<string> {
  const input = createReadStream(path);
  const stream = path.endsWith('.gz') ? input.pipe(createGunzip()) : input;
  input.on('error', (e) => stream.destroy(e));
  try {
    for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) yield line;
  } finally {
    input.destroy();
    stream.destroy();
  }
}
