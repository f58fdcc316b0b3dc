/**
 * `npm run import -- [options] <paths…>`: bulk import into the configured database (the
 * server's environment: DATABASE_URL / DATABASE_SCHEMA, or DATA_DIR for the embedded one).
 *
 * Inputs: FHIR Bundles (transaction, batch, collection) as `.json` / `.json.gz`, and NDJSON
 * (`.ndjson` / `.ndjson.gz`, one resource per line, ids kept). A directory stands for the
 * supported files in it. Batch and collection Bundles go first (reference data), then the rest.
 *
 * Resumable: what is committed is recorded with it (table import_progress); running the same
 * command again after an interruption skips finished files and the NDJSON lines already
 * written, and writes nothing twice.
 *
 * Options:
 *   --force            import again files recorded as done
 *   --concurrency N    files at once (default 2 on PostgreSQL, 1 on the embedded database)
 *   --chunk N          NDJSON resources per database transaction (default 1000)
 *   --check            afterwards, count resources per type and look for unresolved references
 *   --quiet            no progress bar
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import { buildCore } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { Importer, type ImportSummary } from '../src/operations/import.js';
import { sizeOf, type ImportSource } from '../src/operations/import-sources.js';
import { countByType, danglingReferences } from '../src/storage/import-checks.js';
import { ImportStateStore } from '../src/storage/import-state.js';

interface CliOptions {
  paths: string[];
  force: boolean;
  concurrency?: number;
  chunk?: number;
  check: boolean;
  quiet: boolean;
}

const SUPPORTED = /\.(json|ndjson|jsonl)(\.gz)?$/i;

function parseArgs(argv: string[]): CliOptions {
  const options: CliOptions = { paths: [], force: false, check: false, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const number = (name: string) => {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${name} needs a positive integer`);
      return value;
    };
    if (arg === '--force') options.force = true;
    else if (arg === '--check') options.check = true;
    else if (arg === '--quiet') options.quiet = true;
    else if (arg === '--concurrency') options.concurrency = number(arg);
    else if (arg === '--chunk') options.chunk = number(arg);
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
    else options.paths.push(arg);
  }
  if (options.paths.length === 0) throw new Error('usage: npm run import -- [--force] [--concurrency N] [--chunk N] [--check] [--quiet] <files or directories…>');
  return options;
}

function expand(paths: string[]): ImportSource[] {
  const out: ImportSource[] = [];
  for (const p of paths) {
    const full = resolve(p);
    if (statSync(full).isDirectory()) {
      for (const name of readdirSync(full).filter((n) => SUPPORTED.test(n)).sort()) out.push({ kind: 'file', path: join(full, name), name });
    } else {
      out.push({ kind: 'file', path: full, name: basename(full) });
    }
  }
  return out;
}

function printSummary(summary: ImportSummary): void {
  const count = (status: string) => summary.inputs.filter((i) => i.status === status).length;
  const rate = summary.seconds > 0 ? summary.resources / summary.seconds : 0;
  console.log(
    `\n${summary.inputs.length} inputs: ${count('imported')} imported, ${count('skipped')} skipped (done before), ${count('failed')} failed`,
  );
  console.log(`${summary.resources} resources written in ${summary.seconds.toFixed(1)} s: ${rate.toFixed(0)} resources/s`);
  if (summary.errorCount > 0) {
    console.log(`${summary.errorCount} errors${summary.errorCount > summary.issues.length ? ` (first ${summary.issues.length})` : ''}:`);
    for (const issue of summary.issues.slice(0, 50)) console.log(`  ${issue.input}${issue.line ? `:${issue.line}` : ''}: ${issue.message.slice(0, 300)}`);
  }
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const sources = expand(options.paths);
  const config = loadConfig(process.env);
  // An admin's bulk load: a big Bundle is one transaction whose statements may outlast the
  // time limit meant for request handling.
  const core = await buildCore({ ...config, databaseStatementTimeoutMs: 0 });
  let failed = false;
  try {
    const importer = new Importer({
      interactions: { store: core.store, search: core.search, validator: core.validator, fhirBase: core.fhirBase },
      state: new ImportStateStore(core.database.db),
    });
    const total = (await Promise.all(sources.map(sizeOf))).reduce((a, b) => a + b, 0);
    const bar = options.quiet
      ? undefined
      : new SingleBar({ format: 'import [{bar}] {percentage}% | {resources} resources | {rate}/s | {file}', hideCursor: true }, Presets.shades_classic);
    const started = performance.now();
    let resources = 0;
    let bytes = 0;
    bar?.start(total, 0, { resources: 0, rate: 0, file: '' });
    const controller = new AbortController();
    // Ctrl-C: stop after the current commits; the next run resumes from there.
    process.once('SIGINT', () => controller.abort(new Error('interrupted')));
    const running = importer.run(sources, {
      scope: 'cli',
      concurrency: options.concurrency ?? (core.database.kind === 'postgres' ? 2 : 1),
      chunkSize: options.chunk,
      force: options.force,
      signal: controller.signal,
      onProgress: (e) => {
        resources += e.resources;
        bytes += e.bytes;
        const rate = Math.round(resources / Math.max(0.001, (performance.now() - started) / 1000));
        bar?.update(Math.min(bytes, total), { resources, rate, file: e.input.slice(0, 40) });
      },
    });
    let summary: ImportSummary;
    try {
      summary = await running;
    } catch (e) {
      if (controller.signal.aborted) throw new Error('interrupted: what was committed stays; run the same command again to resume');
      throw e;
    } finally {
      bar?.stop();
    }
    printSummary(summary);
    // Statistics for the imported data before the server plans searches on it (the embedded
    // database has no autovacuum to gather them).
    await core.maintenance.afterBulkWrite();
    failed = summary.inputs.some((i) => i.status === 'failed');
    if (options.check) {
      const counts = await countByType(core.database.db);
      console.log(`\nstored: ${[...counts].sort((a, b) => b[1] - a[1]).map(([t, n]) => `${t} ${n}`).join(', ')}`);
      const dangling = await danglingReferences(core.database.db, { limit: 20, serverBase: core.fhirBase });
      console.log(dangling.length === 0 ? 'every reference resolves' : `unresolved references (first ${dangling.length}):`);
      for (const d of dangling) console.log(`  ${d.source} → ${d.reference}`);
      if (dangling.length > 0) failed = true;
    }
  } finally {
    await core.database.close();
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
