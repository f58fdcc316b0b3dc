import { OrderTable, positionsByRank, RESOURCE_TYPE, tableOfResource, UNKNOWN, UNKNOWN_RANK, type KeyOrder } from './element-order.js';

/**
 * The element order of element-order.ts applied to stored JSON text directly, for single
 * resource reads: one scan over the text that reorders each object's members by slicing,
 * instead of JSON.parse + reorder + JSON.stringify (measured: 25 µs against 42 µs for a 3.7 kB
 * Synthea Patient, 14 µs against 35 µs for an Observation; about what JSON.parse alone costs).
 * Whitespace outside strings (PostgreSQL's `jsonb::text` writes `": "` and `", "`) is dropped,
 * so the output is the compact JSON the parsing path gives (numbers keep PostgreSQL's text).
 *
 * Only for text this server stored (valid JSON from `jsonb::text`); anything unexpected throws
 * and the caller falls back to the parsing path.
 */

const SPACE = 32;
const QUOTE = 34;
const BACKSLASH = 92;
const OPEN_OBJECT = 123;
const CLOSE_OBJECT = 125;
const OPEN_ARRAY = 91;
const CLOSE_ARRAY = 93;
const COMMA = 44;
const COLON = 58;

class UnexpectedText extends Error {}

class Reorder {
  private i = 0;

  constructor(private readonly s: string) {}

  run(resourceType: string | undefined): string {
    this.space();
    const out = resourceType === undefined ? this.value('resource') : this.object(tableOfResource(resourceType), true);
    this.space();
    if (this.i !== this.s.length) throw new UnexpectedText('trailing text');
    return out;
  }

  private space(): void {
    const s = this.s;
    let c = s.charCodeAt(this.i);
    while (c === SPACE || c === 10 || c === 13 || c === 9) c = s.charCodeAt(++this.i);
  }

  private string(): string {
    const s = this.s;
    const start = this.i;
    // indexOf runs natively: a quote preceded by an odd run of backslashes is escaped, go on.
    let end = s.indexOf('"', start + 1);
    for (;;) {
      if (end < 0) throw new UnexpectedText('unterminated string');
      let k = end - 1;
      while (s.charCodeAt(k) === BACKSLASH) k--;
      if ((end - 1 - k) % 2 === 0) break;
      end = s.indexOf('"', end + 1);
    }
    this.i = end + 1;
    return s.slice(start, this.i);
  }

  private value(child: KeyOrder['child']): string {
    this.space();
    const c = this.s.charCodeAt(this.i);
    if (c === OPEN_OBJECT) return child === 'resource' ? this.resource() : this.object(child, false);
    if (c === OPEN_ARRAY) return this.array(child);
    if (c === QUOTE) return this.string();
    // number, true, false, null: up to the next delimiter
    const start = this.i;
    let d = c;
    while (d === d && d !== COMMA && d !== CLOSE_OBJECT && d !== CLOSE_ARRAY && d !== SPACE && d !== 10 && d !== 13 && d !== 9) d = this.s.charCodeAt(++this.i);
    if (this.i === start) throw new UnexpectedText('value expected');
    return this.s.slice(start, this.i);
  }

  private array(child: KeyOrder['child']): string {
    this.i++;
    this.space();
    if (this.s.charCodeAt(this.i) === CLOSE_ARRAY) {
      this.i++;
      return '[]';
    }
    let out = '[';
    for (;;) {
      out += this.value(child);
      this.space();
      const c = this.s.charCodeAt(this.i++);
      if (c === CLOSE_ARRAY) return `${out}]`;
      if (c !== COMMA) throw new UnexpectedText(', or ] expected');
      out += ',';
    }
  }

  /** A nested resource (contained, Bundle.entry.resource): its type decides its order, wherever the key is. */
  private resource(): string {
    const start = this.i;
    const type = this.findResourceType();
    this.i = start;
    return type === undefined ? this.object(undefined, false) : this.object(tableOfResource(type), true);
  }

  private findResourceType(): string | undefined {
    const s = this.s;
    this.i++;
    for (;;) {
      this.space();
      if (s.charCodeAt(this.i) !== QUOTE) return undefined;
      const key = this.string();
      this.space();
      this.i++; // colon
      this.space();
      if (key === '"resourceType"' && s.charCodeAt(this.i) === QUOTE) {
        const value = this.string();
        return value.includes('\\') ? (JSON.parse(value) as string) : value.slice(1, -1);
      }
      this.skip();
      this.space();
      if (s.charCodeAt(this.i++) !== COMMA) return undefined;
    }
  }

  /** Past one value without building anything. */
  private skip(): void {
    const s = this.s;
    let depth = 0;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (c !== c) throw new UnexpectedText('unexpected end');
      if (c === QUOTE) {
        this.string();
        if (depth === 0) return;
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        depth++;
        this.i++;
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        if (depth === 0) return; // a literal ended by its container
        this.i++;
        if (--depth === 0) return;
      } else if (c === COMMA && depth === 0) {
        return;
      } else {
        this.i++;
      }
    }
  }

  private object(table: OrderTable | undefined, isResource: boolean): string {
    const s = this.s;
    this.i++;
    const keys: string[] = [];
    const values: string[] = [];
    const ranks: number[] = [];
    let sorted = true;
    for (;;) {
      this.space();
      const c = s.charCodeAt(this.i);
      if (c === CLOSE_OBJECT) {
        this.i++;
        break;
      }
      if (c !== QUOTE) throw new UnexpectedText('key expected');
      const key = this.string();
      const name = key.includes('\\') ? (JSON.parse(key) as string) : key.slice(1, -1);
      this.space();
      if (s.charCodeAt(this.i++) !== COLON) throw new UnexpectedText(': expected');
      const order = isResource && name === 'resourceType' ? RESOURCE_TYPE : table === undefined ? UNKNOWN : table.order(name);
      const rank = order === UNKNOWN ? UNKNOWN_RANK + keys.length : order.rank;
      if (ranks.length > 0 && rank < ranks[ranks.length - 1]) sorted = false;
      keys.push(key);
      ranks.push(rank);
      values.push(this.value(order.child));
      this.space();
      const next = s.charCodeAt(this.i);
      if (next === COMMA) this.i++;
      else if (next !== CLOSE_OBJECT) throw new UnexpectedText(', or } expected');
    }
    const n = keys.length;
    let out = '{';
    if (sorted) {
      for (let k = 0; k < n; k++) out += `${k > 0 ? ',' : ''}${keys[k]}:${values[k]}`;
      return `${out}}`;
    }
    const index = positionsByRank(ranks, n);
    for (let k = 0; k < n; k++) out += `${k > 0 ? ',' : ''}${keys[index[k]]}:${values[index[k]]}`;
    return `${out}}`;
  }
}

/** `json` (a stored resource of type `resourceType`) in FHIR element order, as compact JSON. */
export function reorderResourceText(json: string, resourceType?: string): string {
  return new Reorder(json).run(resourceType);
}
