import type { Db } from './db.js';
import { executePrepared } from './prepared-write.js';
import type { IndexTableLayout } from './types.js';
import { writeStatements, type BlindResult, type PendingWrite, type WriteStatement } from './write-sql.js';

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
  resolve: (rows: BlindResult[]) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit for transactions whose whole work is one autocommit write statement (a plain
 * create, or an update by id without a read: no BEGIN). While MAX_IN_FLIGHT such statements are
 * running, the next transactions' writes wait and are then sent as ONE statement on one of
 * their connections: one parse, plan, round trip and WAL flush for all of them instead of one
 * each, which is most of a create's database cost. A lone request never waits: it runs at once.
 *
 * Each transaction still succeeds or fails on its own: when a combined statement fails (one
 * member's rows break a constraint, or an update by id lost a race with another writer and its
 * history row collides), nothing of it was stored — it is a single statement — and every
 * member is run again alone, so only the member at fault sees the error. Updates by id learn
 * their version from the statement's rows (`BlindResult`, keyed by type and id): every member
 * gets the combined statement's rows and takes its own.
 */
export class WriteCombiner {
  private inFlight = 0;
  private readonly waiting: Waiting[] = [];
  /** Counters for tests and benchmarks: statements sent, and transactions whose writes shared one. */
  readonly sent = { statements: 0, combinedTransactions: 0 };

  /**
   * Stores `writes` (whose statement for `tables` is `statement`) as their own transaction,
   * possibly with others'. Resolves with the rows the statement returned for updates by id
   * (those of the other members of a combined statement too).
   */
  run(connection: Db, tables: readonly IndexTableLayout[], writes: PendingWrite[], statement: WriteStatement): Promise<BlindResult[]> {
    if (this.inFlight < MAX_IN_FLIGHT) return this.track(this.alone(connection, tables, statement));
    return new Promise<BlindResult[]>((resolve, reject) => this.waiting.push({ connection, tables, writes, statement, resolve, reject }));
  }

  private async track<T>(work: Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await work;
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

  private async alone(connection: Db, tables: readonly IndexTableLayout[], statement: WriteStatement): Promise<BlindResult[]> {
    this.sent.statements++;
    return (await executePrepared(connection, tables, statement)).rows;
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
          const { rows } = await executePrepared(group[0]!.connection, tables, statements[0]!);
          this.sent.combinedTransactions += group.length;
          for (const m of group) m.resolve(rows);
          return;
        } catch {
          // Nothing of the combined statement was stored: each member runs alone below.
        }
      }
    }
    await Promise.all(
      group.map(async (m) => {
        try {
          m.resolve(await this.alone(m.connection, m.tables, m.statement));
        } catch (e) {
          m.reject(e);
        }
      }),
    );
  }
}
