/**
 * `npm run terminology:load -- <loinc|snomed|icd10> <path> [--version V] [--quiet]`: loads a
 * large external code system from its release files into the configured database (the
 * server's environment: DATABASE_URL / DATABASE_SCHEMA, or DATA_DIR for the embedded one, which
 * only one process may open: stop the server first).
 *
 *   loinc   the LOINC release folder (or its LoincTable/Loinc.csv); ComponentHierarchyBySystem.csv
 *           under it, when present, gives the hierarchy
 *   snomed  an RF2 release folder (its Snapshot files: concepts, descriptions, relationships,
 *           the en language reference set when present)
 *   icd10   ICD-10-CM: the CMS / NCHS order file icd10cm_order_<year>.txt (or its folder)
 *
 * A new load replaces the version held (one version per code system); loading the same release
 * again gives the same rows. All in one transaction: a malformed file changes nothing.
 */
import { Presets, SingleBar } from 'cli-progress';
import { buildCore } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { ReleaseFormatError } from '../src/terminology/release/files.js';
import { loadRelease } from '../src/terminology/release/load.js';
import { isReleaseKind, RELEASE_KINDS } from '../src/terminology/release/plan.js';

const USAGE = `usage: npm run terminology:load -- <${RELEASE_KINDS.join('|')}> <path> [--version V] [--quiet]`;

function parseArgs(argv: string[]): { kind: (typeof RELEASE_KINDS)[number]; path: string; version?: string; quiet: boolean } {
  const positional: string[] = [];
  let version: string | undefined;
  let quiet = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--version') version = argv[++i];
    else if (arg === '--quiet') quiet = true;
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}\n${USAGE}`);
    else positional.push(arg);
  }
  const [kind, path] = positional;
  if (!kind || !path || positional.length > 2 || !isReleaseKind(kind)) throw new Error(USAGE);
  return { kind, path, ...(version ? { version } : {}), quiet };
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const config = loadConfig(process.env);
  // An admin's bulk load: its statements may outlast the time limit meant for requests.
  const core = await buildCore({ ...config, databaseStatementTimeoutMs: 0 });
  const bar = options.quiet ? undefined : new SingleBar({ format: `${options.kind} [{bar}] {percentage}% | {mb} MB read | {phase}`, hideCursor: true }, Presets.shades_classic);
  try {
    let started = false;
    const summary = await loadRelease(core.terminology.store, options.kind, options.path, {
      ...(options.version ? { version: options.version } : {}),
      onProgress: (p) => {
        if (!bar) return;
        if (!started) {
          bar.start(Math.max(1, p.totalBytes), 0, { mb: '0', phase: p.phase });
          started = true;
        }
        bar.update(p.bytes, { mb: (p.bytes / 1e6).toFixed(1), phase: p.phase });
      },
    });
    bar?.stop();
    const rate = summary.seconds > 0 ? summary.concepts / summary.seconds : 0;
    console.log(
      `${summary.system}${summary.version ? ` version ${summary.version}` : ''}: ${summary.concepts} concepts, ${summary.closurePairs} hierarchy pairs, ${summary.words} display words in ${summary.seconds.toFixed(1)} s (${rate.toFixed(0)} concepts/s)`,
    );
  } catch (e) {
    bar?.stop();
    throw e;
  } finally {
    await core.database.close();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof ReleaseFormatError ? `release file error (nothing was changed): ${e.message}` : e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
