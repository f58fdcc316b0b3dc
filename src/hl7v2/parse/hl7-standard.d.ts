/** The part of hl7-standard (plain JavaScript, no types of its own) that the parser uses. */
declare module 'hl7-standard' {
  /** A field as the library leaves it: text, components, repetitions or subcomponents. */
  export type LibraryField = string | string[] | Record<string, string | string[]> | Array<string | Record<string, string | string[]>>;

  export interface LibrarySegment {
    type: string;
    /** Position of the segment in the message. */
    index: number;
    /** `SEG.n` → the field. */
    data: Record<string, LibraryField>;
  }

  export default class HL7 {
    constructor(data: string, opts?: { subComponents?: string; repeatingFields?: string; lineEndings?: string });
    transform(cb?: (err: Error | null, result: unknown) => void, batch?: boolean): void;
    getSegments(segment?: string): LibrarySegment[];
  }
}
