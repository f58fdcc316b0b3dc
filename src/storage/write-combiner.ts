import type { Db } from './db.js';
import { executePrepared } from './prepared-write.js';
import type { IndexTableLayout } from './types.js';
import { writeStatements, type PendingWrite, type WriteStatement } from './write-sql.js';

/**
 * Statements of lone writes that may run at once; later ones wait and are sent together.
 * Two: PostgreSQL works on one statement while the next one's rows are being sent, and this
 * machine class has two cores. More in flight only splits the same work into more statements.
 */
const MAX_IN_FLIGHT = 2;
/** Writes of at most this many transactions go into one combined statement. */
const MAX_GROUP = 64;

interface Waiting {
  connection: Db;
  tables: readonly IndexTableLayout[];
  writes: PendingWrite[];
  statement: WriteStatement;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit for transactions whose whole work is one autocommit write statement (a plain
 * create: no BEGIN, no read, no blind write). While MAX_IN_FLIGHT such statements are
 * running, the next transactions' writes wait and are then sent as ONE statement on one of
 * their connections: one parse, plan, round trip and WAL flush for all of them instead of one
 * each, which is most of a create's database cost. A lone request never waits: it runs at once.
 *
 * Each transaction still succeeds or fails on its own: when a combined statement fails (one
 * member's rows break a constraint, say), nothing of it was stored — it is a single statement —
 * and every member is run again alone, so only the member at fault sees the error.
 */
export class WriteCombiner {
  private inFlight = 0;
  private readonly waiting: Waiting[] = [];
  /** Counters for tests and benchmarks: statements sent, and transactions whose writes shared one. */
  readonly sent = { statements: 0, combinedTransactions: 0 };

  /** Stores `writes` (whose statement for `tables` is `statement`) as their own transaction, possibly with others'. */
  run(connection: Db, tables: readonly IndexTableLayout[], writes: PendingWrite[], statement: WriteStatement): Promise<void> {
    if (this.inFlight < MAX_IN_FLIGHT) return this.track(this.alone(connection, tables, statement));
    return new Promise<void>((resolve, reject) => this.waiting.push({ connection, tables, writes, statement, resolve, reject }));
  }

  private async track(work: Promise<void>): Promise<void> {
    this.inFlight++;
    try {
      await work;
    } finally {
      this.inFlight--;
      this.next();
    }
  }

  private next(): void {
    if (this.waiting.length === 0 || this.inFlight >= MAX_IN_FLIGHT) return;
    const group = this.waiting.splice(0, MAX_GROUP);
    void this.track(this.together(group));
  }

  private async alone(connection: Db, tables: readonly IndexTableLayout[], statement: WriteStatement): Promise<void> {
    this.sent.statements++;
    await executePrepared(connection, tables, statement);
  }

  /** Never rejects: each member's promise is settled instead. */
  private async together(group: Waiting[]): Promise<void> {
    const tables = group[0]!.tables;
    // (A SearchParameter added meanwhile changes the layout: members of another layout run alone.)
    if (group.length > 1 && group.every((m) => m.tables === tables)) {
      const statements = writeStatements(tables, group.flatMap((m) => m.writes));
      if (statements.length === 1) {
        try {
          this.sent.statements++;
          await executePrepared(group[0]!.connection, tables, statements[0]!);
          this.sent.combinedTransactions += group.length;
          for (const m of group) m.resolve();
          return;
        } catch {
          // Nothing of the combined statement was stored: each member runs alone below.
        }
      }
    }
    await Promise.all(
      group.map(async (m) => {
        try {
          await this.alone(m.connection, m.tables, m.statement);
          m.resolve();
        } catch (e) {
          m.reject(e);
        }
      }),
    );
  }
}
