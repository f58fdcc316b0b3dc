/** Rows written per multi-row INSERT while a release is staged. */
export const BATCH = 5000;

/** Collects rows and writes them `BATCH` at a time (the last, partial batch on `flush`). */
export class Batcher<T> {
  private rows: T[] = [];

  constructor(private readonly write: (rows: T[]) => Promise<void>) {}

  async push(row: T): Promise<void> {
    this.rows.push(row);
    if (this.rows.length >= BATCH) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    await this.write(rows);
  }
}
