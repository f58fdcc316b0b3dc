/**
 * `npm run db:copy -- --from-data-dir ./data --to postgres://… [--to-schema S] [--force] [--quiet]`:
 * moves the embedded database to PostgreSQL (ids, versions, history, audit trail, clients, users,
 * jobs): a backup of the source streamed into a restore of the target, migrated first by the
 * server's code. Also `--from postgres://… [--from-schema S]` and `--to-data-dir DIR`.
 * Stop the server first. See docs/backup.md.
 */
import { analyzeRestored, backupLines, restoreLines } from '../src/storage/backup.js';
import { describe, fail, openMigrated, progressBar, type DatabaseTarget } from './backup-cli.js';

function parse(argv: string[]): { from: DatabaseTarget; to: DatabaseTarget; force: boolean; quiet: boolean } {
  const from: DatabaseTarget = { dataDir: './data' };
  const to: DatabaseTarget = { dataDir: '' };
  let force = false;
  let quiet = false;
  let fromSet = false;
  let toSet = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (!v) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--from-data-dir') (from.dataDir = value()), (fromSet = true);
    else if (arg === '--from') (from.databaseUrl = value()), (fromSet = true);
    else if (arg === '--from-schema') from.databaseSchema = value();
    else if (arg === '--to-data-dir') (to.dataDir = value()), (toSet = true);
    else if (arg === '--to') (to.databaseUrl = value()), (toSet = true);
    else if (arg === '--to-schema') to.databaseSchema = value();
    else if (arg === '--force') force = true;
    else if (arg === '--quiet') quiet = true;
    else throw new Error(`unknown option ${arg}`);
  }
  if (!fromSet || !toSet) throw new Error('usage: npm run db:copy -- (--from-data-dir DIR | --from postgres://… [--from-schema S]) (--to postgres://… [--to-schema S] | --to-data-dir DIR) [--force] [--quiet]');
  return { from, to, force, quiet };
}

async function main(): Promise<void> {
  const { from, to, force, quiet } = parse(process.argv.slice(2));
  const started = performance.now();
  const source = await openMigrated(from);
  try {
    const target = await openMigrated(to);
    const bar = progressBar('copy', quiet);
    try {
      const summary = await restoreLines(target.unlimitedDb, backupLines(source.unlimitedDb, source.kind), { force, onProgress: (p) => bar.update(p) });
      bar.stop();
      await analyzeRestored(target.unlimitedDb);
      const seconds = (performance.now() - started) / 1000;
      console.log(`copied ${describe(from)} to ${describe(to)}: ${summary.tables} tables, ${summary.rows} rows, ${summary.sequences} sequences in ${seconds.toFixed(1)} s`);
    } finally {
      bar.stop();
      await target.close();
    }
  } finally {
    await source.close();
  }
}

main().catch(fail);
