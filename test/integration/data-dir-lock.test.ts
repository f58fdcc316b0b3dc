/**
 * One process at a time on an embedded database directory (src/storage/data-dir-lock.ts): a
 * second server, or a CLI tool run while the server is up, is refused with who holds it instead
 * of writing the same PGlite files; a holder that died on this host is taken over at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { sql } from 'kysely';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirInUse } from '../../src/storage/data-dir-lock.js';
import { openDatabase } from '../../src/storage/db.js';

const work = mkdtempSync(join(tmpdir(), 'data-dir-lock-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

/** Another process that opens `dataDir` and keeps it open (it prints `open` once it holds it). */
async function holder(dataDir: string): Promise<ChildProcess> {
  const script = join(work, `holder-${children.length}.mts`);
  writeFileSync(
    script,
    `import { openDatabase } from ${JSON.stringify(resolve('src/storage/db.ts'))};
     const database = await openDatabase({ dataDir: ${JSON.stringify(dataDir)} });
     console.log('open');
     setInterval(() => undefined, 1000);
     process.on('SIGTERM', async () => { await database.close(); process.exit(0); });`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((ready, fail) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('open') && ready());
    child.once('exit', (code) => fail(new Error(`holder exited with ${code}`)));
  });
  return child;
}

describe('the embedded database directory lock', () => {
  it('refuses a second process at once, naming the holder, takes over from one that died, and is released on close', async () => {
    const dataDir = join(work, 'shared');
    const child = await holder(dataDir);
    const started = Date.now();
    const refused = await openDatabase({ dataDir }).then(
      async (d) => {
        await d.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(DataDirInUse);
    expect((refused as Error).message).toContain(`process ${child.pid}`);
    expect((refused as Error).message).toContain('only one process may open it at a time');
    expect(Date.now() - started).toBeLessThan(5_000);

    // kill -9: no release. The holder is gone from this host, so its lock is taken over at once
    // (not only once stale, after 20 s).
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const takeover = Date.now();
    const database = await openDatabase({ dataDir });
    expect(Date.now() - takeover).toBeLessThan(15_000);
    try {
      expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(database.db)).rows[0]!.one).toBe(1);
    } finally {
      await database.close();
    }
    // Released on close: the same directory opens again at once (a leftover lock would hold it 20 s and more).
    const reopened = Date.now();
    const again = await openDatabase({ dataDir });
    await again.close();
    expect(Date.now() - reopened).toBeLessThan(15_000);
  }, 90_000);
});
