/**
 * `npm run audit:archive -- --before 2020-01-01 --out DIR [--events-per-file N] [--dry-run] [--quiet]`:
 * moves the AuditEvents recorded before the cutoff out of the server's database (DATABASE_URL /
 * DATABASE_SCHEMA, or DATA_DIR: the embedded database only while the server is stopped) into
 * gzip NDJSON files in DIR, deletes them there, and records the archival as an AuditEvent with
 * each file's SHA-256. See docs/auth.md, "Size and archiving".
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { archiveAuditTrail, DEFAULT_EVENTS_PER_FILE } from '../src/audit/audit-archive.js';
import { loadConfig } from '../src/config/config.js';
import { AuditStore } from '../src/storage/audit-store.js';
import { describe, fail, openMigrated, serverDatabase } from './backup-cli.js';

const USAGE = 'usage: npm run audit:archive -- --before YYYY-MM-DD[Thh:mm:ssZ] --out DIR [--events-per-file N] [--dry-run] [--quiet]';

/** The command line's options (strict: an unknown option, a missing value or a stray argument is refused with the usage). */
function options() {
  try {
    return parseArgs({
      options: { before: { type: 'string' }, out: { type: 'string' }, 'events-per-file': { type: 'string' }, 'dry-run': { type: 'boolean' }, quiet: { type: 'boolean' } },
      strict: true,
    }).values;
  } catch (e) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
  }
}

async function main(): Promise<void> {
  const values = options();
  const beforeText = values.before;
  const dir = values.out;
  const dryRun = values['dry-run'] ?? false;
  if (!beforeText || (!dir && !dryRun)) throw new Error(USAGE);
  // A date alone is midnight UTC; a time must say its zone, so the cutoff is never ambiguous.
  const before = new Date(/^\d{4}-\d{2}-\d{2}$/.test(beforeText) ? `${beforeText}T00:00:00Z` : beforeText);
  if (Number.isNaN(before.getTime()) || !/^\d{4}-\d{2}-\d{2}(T.*(Z|[+-]\d{2}:\d{2}))?$/.test(beforeText)) throw new Error(`--before ${beforeText}: a date (YYYY-MM-DD, midnight UTC) or an instant with its zone\n${USAGE}`);
  const perFileText = values['events-per-file'];
  const eventsPerFile = perFileText === undefined ? DEFAULT_EVENTS_PER_FILE : Number(perFileText);
  if (!Number.isInteger(eventsPerFile) || eventsPerFile < 1) throw new Error(`--events-per-file ${perFileText}: a whole number ≥ 1\n${USAGE}`);

  const config = loadConfig(process.env);
  const target = serverDatabase();
  const database = await openMigrated(target);
  const quiet = values.quiet === true || !process.stderr.isTTY;
  try {
    const result = await archiveAuditTrail(
      { store: new AuditStore(database.unlimitedDb), source: { baseUrl: config.baseUrl }, baseUrls: [`${config.baseUrl}/fhir`] },
      { before, dir: dir ?? '.', operator: userInfo().username, via: 'npm run audit:archive', eventsPerFile, dryRun, onProgress: quiet ? undefined : (n) => process.stderr.write(`\rarchived ${n} events`) },
    );
    if (!quiet) process.stderr.write('\n');
    if (dryRun) console.log(`${describe(target)}: ${result.events} AuditEvent(s) recorded before ${result.before} would be archived`);
    else if (result.events === 0) console.log(`${describe(target)}: no AuditEvent recorded before ${result.before}; nothing written`);
    else console.log(`${describe(target)}: ${result.events} AuditEvent(s) recorded before ${result.before} archived to ${result.files.length} file(s) in ${dir} (manifest ${result.manifest}) and deleted; recorded as AuditEvent/${result.auditEventId}`);
  } finally {
    await database.close();
  }
}

main().catch(fail);
