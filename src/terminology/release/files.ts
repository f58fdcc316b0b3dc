import { createReadStream, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse } from 'csv-parse';

/** A release file that is not what its format says: named with the file and line. */
export class ReleaseFormatError extends Error {}

/** Bytes read so far across a release's files (for the progress bar). */
export type OnBytes = (bytes: number) => void;

/** Every file under `path` (itself when it is a file), depth first, sorted. */
export function filesUnder(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((d) => (d.isDirectory() ? filesUnder(join(path, d.name)) : d.isFile() ? [join(path, d.name)] : []));
}

/** The one file under `path` whose name matches, or undefined; two matches are an error (which one was meant?). */
export function findOne(files: readonly string[], pattern: RegExp, what: string): string | undefined {
  const found = files.filter((f) => pattern.test(basename(f)));
  if (found.length > 1) throw new ReleaseFormatError(`${what}: more than one file matches (${found.map((f) => basename(f)).join(', ')}); point at one of them`);
  return found[0];
}

export function sizeOf(file: string): number {
  return statSync(file).size;
}

/** The lines of a text file, streamed (CRLF or LF), with the byte count as it is read. */
export async function* lines(file: string, onBytes: OnBytes): AsyncGenerator<{ line: string; n: number }> {
  const stream = createReadStream(file);
  stream.on('data', (chunk) => onBytes(chunk.length));
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    // A UTF-8 byte order mark on the first line is not part of the header.
    yield { line: n === 1 ? line.replace(/^\uFEFF/, '') : line, n };
  }
}

/**
 * The rows of a tab-separated RF2 file as objects keyed by its header, which must hold the
 * `required` columns. No quoting in RF2: a tab never occurs inside a field.
 */
export async function* tsvRows(file: string, required: readonly string[], onBytes: OnBytes): AsyncGenerator<{ row: Record<string, string>; n: number }> {
  let header: string[] | undefined;
  for await (const { line, n } of lines(file, onBytes)) {
    if (line === '') continue;
    const fields = line.split('\t');
    if (!header) {
      header = fields;
      const missing = required.filter((c) => !header!.includes(c));
      if (missing.length) throw new ReleaseFormatError(`${basename(file)}: not an RF2 file of this kind (header lacks ${missing.join(', ')})`);
      continue;
    }
    if (fields.length !== header.length) throw new ReleaseFormatError(`${basename(file)}:${n}: ${fields.length} fields, the header has ${header.length}`);
    yield { row: Object.fromEntries(header.map((h, i) => [h, fields[i]!])), n };
  }
  if (!header) throw new ReleaseFormatError(`${basename(file)}: empty file`);
}

/** The records of a CSV file (RFC 4180, quoted fields may hold commas, quotes and line breaks) keyed by its header. */
export async function* csvRows(file: string, required: readonly string[], onBytes: OnBytes): AsyncGenerator<{ row: Record<string, string>; n: number }> {
  const stream = createReadStream(file);
  stream.on('data', (chunk) => onBytes(chunk.length));
  const parser = stream.pipe(parse({ columns: true, bom: true, relax_column_count: false, skip_empty_lines: true, info: true }));
  let checked = false;
  try {
    for await (const rec of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      if (!checked) {
        const missing = required.filter((c) => !(c in rec.record));
        if (missing.length) throw new ReleaseFormatError(`${basename(file)}: header lacks the columns ${missing.join(', ')}`);
        checked = true;
      }
      yield { row: rec.record, n: rec.info.lines };
    }
  } catch (e) {
    if (e instanceof ReleaseFormatError) throw e;
    // csv-parse names the line of a malformed record (unclosed quote, wrong field count).
    throw new ReleaseFormatError(`${basename(file)}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    stream.destroy();
  }
  if (!checked) throw new ReleaseFormatError(`${basename(file)}: no records`);
}
