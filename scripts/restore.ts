/**
 * `npm run restore -- FILE.ndjson.gz [--force] [--quiet]`: restores a backup of `npm run backup`
 * into the server's database (DATABASE_URL / DATABASE_SCHEMA, or DATA_DIR), migrated first by the
 * server's code. Refused when the target holds data (unless --force, which replaces it) or lacks
 * migrations the backup has. One transaction: all of the backup, or nothing. Stop the server first.
 */
import { analyzeRestored, restoreLines } from '../src/storage/backup.js';
import { readLinesGzip } from '../src/storage/backup-file.js';
import { describe, fail, openMigrated, progressBar, serverDatabase } from './backup-cli.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const files = args.filter((a) => !a.startsWith('--'));
  const unknown = args.filter((a) => a.startsWith('--') && a !== '--force' && a !== '--quiet');
  if (files.length !== 1 || unknown.length > 0) throw new Error('usage: npm run restore -- FILE.ndjson.gz [--force] [--quiet]');
  const target = serverDatabase();
  const started = performance.now();
  const database = await openMigrated(target);
  const bar = progressBar('restore', args.includes('--quiet'));
  try {
    const summary = await restoreLines(database.unlimitedDb, readLinesGzip(files[0]!), { force: args.includes('--force'), onProgress: (p) => bar.update(p) });
    bar.stop();
    // Statistics for the planner before the server searches the restored rows.
    await analyzeRestored(database.unlimitedDb);
    const seconds = (performance.now() - started) / 1000;
    console.log(`restored ${files[0]} into ${describe(target)}: ${summary.tables} tables, ${summary.rows} rows, ${summary.sequences} sequences in ${seconds.toFixed(1)} s`);
  } finally {
    bar.stop();
    await database.close();
  }
}

main().catch(fail);
