/**
 * `npm run backup -- --out FILE.ndjson.gz [--quiet]`: a logical backup of the server's database
 * (DATABASE_URL / DATABASE_SCHEMA, or DATA_DIR) taken in one snapshot. See docs/backup.md.
 */
import { backupLines } from '../src/storage/backup.js';
import { writeLinesGzip } from '../src/storage/backup-file.js';
import { describe, fail, openMigrated, progressBar, serverDatabase } from './backup-cli.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const outAt = args.indexOf('--out');
  const out = outAt >= 0 ? args[outAt + 1] : undefined;
  if (!out || args.some((a, i) => a.startsWith('--') && a !== '--out' && a !== '--quiet' && i !== outAt + 1)) {
    throw new Error('usage: npm run backup -- --out FILE.ndjson.gz [--quiet]');
  }
  const target = serverDatabase();
  const started = performance.now();
  const database = await openMigrated(target);
  const bar = progressBar('backup', args.includes('--quiet') || out === '-');
  const tables = new Set<string>();
  let rows = 0;
  try {
    await writeLinesGzip(
      backupLines(database.unlimitedDb, database.kind, (p) => {
        tables.add(p.table);
        rows = p.rows;
        bar.update(p);
      }),
      out,
    );
  } finally {
    bar.stop();
    await database.close();
  }
  const seconds = (performance.now() - started) / 1000;
  if (out !== '-') console.log(`backup of ${describe(target)} written to ${out}: ${tables.size} tables, ${rows} rows in ${seconds.toFixed(1)} s`);
}

main().catch(fail);
