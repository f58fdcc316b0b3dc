/** The delimiters of one message, read from MSH-1 and MSH-2. */
export interface Delimiters {
  field: string;
  component: string;
  repetition: string;
  escape: string;
  /** Empty when MSH-2 names no subcomponent separator (a three-character MSH-2). */
  subcomponent: string;
}

export const STANDARD_DELIMITERS: Delimiters = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

/** One repetition of a field: its components, each a list of subcomponents (decoded text). */
export type Repetition = string[][];

/** One segment: `fields[n]` is field n (for MSH, field 1 is the field separator, 2 the encoding characters). */
export class Segment {
  constructor(
    readonly name: string,
    /** fields[n]: the repetitions of field n; fields[0] is unused. */
    readonly fields: Repetition[][],
  ) {}

  /** The repetitions of field n (empty when the field is absent or empty). */
  repetitions(field: number): Repetition[] {
    return (this.fields[field] ?? []).filter((rep) => rep.some((c) => c.some((s) => s !== '')));
  }

  /** Subcomponent `sub` of component `component` of repetition `rep` of field `field` (all 1-based but rep, 0-based). */
  get(field: number, component = 1, sub = 1, rep = 0): string {
    return this.fields[field]?.[rep]?.[component - 1]?.[sub - 1] ?? '';
  }

  /** Every component of a repetition of a field joined with `^`: a field's whole text, for keys and display. */
  text(field: number, rep = 0): string {
    const comps = this.fields[field]?.[rep] ?? [];
    return comps.map((c) => c.join('&')).join('^').replace(/[\^&]+$/, '');
  }
}

/** What MSH says about a message: enough to store it, find duplicates and answer it. */
export interface MessageHeader {
  delimiters: Delimiters;
  sendingApplication: string;
  sendingFacility: string;
  receivingApplication: string;
  receivingFacility: string;
  /** MSH-7 as sent. */
  dateTime: string;
  messageCode: string;
  triggerEvent: string;
  messageStructure: string;
  controlId: string;
  processingId: string;
  version: string;
  /** MSH-15 accept acknowledgement type (HL7 table 0155: AL, NE, ER, SU); empty when not valued. */
  acceptAckType: string;
  /** MSH-16 application acknowledgement type (table 0155); with MSH-15 empty too: original mode. */
  applicationAckType: string;
}

export interface Hl7Message {
  header: MessageHeader;
  segments: Segment[];
}

/** The message type as `CODE^TRIGGER` (e.g. ORU^R01). */
export function messageType(header: Pick<MessageHeader, 'messageCode' | 'triggerEvent'>): string {
  return `${header.messageCode}^${header.triggerEvent}`;
}
