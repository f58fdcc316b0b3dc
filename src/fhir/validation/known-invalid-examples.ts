/**
 * Official R4 examples (../shared/data/fhir-examples) that the spec itself ships invalid,
 * by file name, with the reason. Used by the examples test: each must be refused (422).
 */
export const KNOWN_INVALID_SPEC_EXAMPLES: Record<string, string> = {};
