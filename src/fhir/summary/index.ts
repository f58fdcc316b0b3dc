export { applyElements, applySummary, SUBSETTED_SYSTEM, type SummaryMode } from './summary.js';
