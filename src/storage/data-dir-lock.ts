import { mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';

/** The lock (a directory, created atomically) and the note of who holds it, inside DATA_DIR. */
const LOCK = 'fhir-server.lock';
const HOLDER = 'fhir-server.lock.json';
/**
 * The holder touches the lock every UPDATE_MS; one untouched for STALE_MS belongs to a process
 * that died (crash, kill -9, power loss), and the next process takes it over.
 */
const STALE_MS = 20_000;
const UPDATE_MS = 5_000;
const RETRY_MS = 1_000;

/** Who holds an embedded database directory (written beside the lock, for the refusal's message). */
interface Holder {
  pid: number;
  host: string;
  command: string;
  since: string;
}

/** Another process has the embedded database directory open. */
export class DataDirInUse extends Error {}

async function readHolder(dataDir: string): Promise<Holder | undefined> {
  try {
    return JSON.parse(await readFile(join(dataDir, HOLDER), 'utf8')) as Holder;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One process at a time on an embedded database directory. PGlite keeps the database's pages
 * in its own memory and writes them back without PostgreSQL's own lock file: a second process
 * on the same DATA_DIR (a second `npm start`, or `npm run backup` / `import` / `audit:archive`
 * while the server runs) would write over the first one's pages and corrupt the database.
 *
 * The lock is a directory created atomically inside DATA_DIR and touched every 5 s by its holder
 * (proper-lockfile); a note beside it names the holder for the error message. A process that
 * finds it held by a live process on this host is refused at once; one whose holder on this
 * host is gone is taken over at once; a lock of another host (a shared volume, a container that
 * was replaced) is taken over once it was not touched for 20 s. Should the lock be lost while
 * held (its directory removed, or not touched for 20 s because the process was frozen), the
 * process ends: another process may already be writing the same files.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true });
  const deadline = Date.now() + STALE_MS + 2 * UPDATE_MS;
  const onLost = (error: Error) => {
    console.error(`the lock of the embedded database ${dataDir} was lost (${error.message}); stopping so that two processes never write it at once`);
    process.exit(1);
  };
  for (;;) {
    try {
      const release = await lockfile.lock(dataDir, { lockfilePath: join(dataDir, LOCK), stale: STALE_MS, update: UPDATE_MS, realpath: false, retries: 0, onCompromised: onLost });
      const holder: Holder = { pid: process.pid, host: hostname(), command: process.argv.slice(1).join(' ').slice(0, 300), since: new Date().toISOString() };
      await writeFile(join(dataDir, HOLDER), `${JSON.stringify(holder)}\n`);
      return async () => {
        await rm(join(dataDir, HOLDER), { force: true });
        await release();
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw e;
      const holder = await readHolder(dataDir);
      const here = holder !== undefined && holder.host === hostname() && holder.pid !== process.pid;
      // A live process of this host: refused now.
      const live = here && alive(holder.pid);
      if (here && !live) {
        // Its holder on this host is gone (a crash, kill -9): the lock is backdated so that it is
        // stale now and taken over by the next attempt, instead of after 20 s. Checked again just
        // before, so a process that took it over meanwhile keeps it; should one still slip in, its
        // own update sees the changed time and stops it: never two writers.
        const again = await readHolder(dataDir);
        if (again?.pid === holder.pid && again.since === holder.since) await utimes(join(dataDir, LOCK), 0, 0).catch(() => undefined);
      }
      // Otherwise (another host, or no note) the lock may be a dead process's: it is taken over
      // once stale.
      if (live || Date.now() >= deadline) {
        const who = holder ? `process ${holder.pid} on ${holder.host} (${holder.command}), since ${holder.since}` : 'another process';
        throw new DataDirInUse(
          `the embedded database ${dataDir} is in use by ${who}: only one process may open it at a time. Stop that process first ` +
            `(backup, restore, db:copy, import, terminology:load and audit:archive need the server stopped), or use DATABASE_URL for a PostgreSQL server that several processes share.`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, here ? 50 : RETRY_MS));
    }
  }
}
