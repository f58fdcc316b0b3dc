export { applyJsonPatch } from './json-patch.js';
export { applyFhirPathPatch } from './fhirpath-patch.js';
