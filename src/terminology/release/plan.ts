import { existsSync } from 'node:fs';
import type { ReleaseStaging } from '../../storage/terminology-release-store.js';
import type { CodeSystemRow } from '../../storage/terminology-rows.js';
import { filesUnder, ReleaseFormatError, type OnBytes } from './files.js';
import { icd10cmPlan } from './icd10cm.js';
import { loincPlan } from './loinc.js';
import { snomedPlan } from './snomed.js';

/** What one release format reads, and how it stages its rows. */
export interface ReleasePlan {
  system: string;
  files: string[];
  /** Streams the files into the staging tables; returns the code system's row. `version` overrides the one the release gives. */
  stage(staging: ReleaseStaging, onBytes: OnBytes, version?: string): Promise<CodeSystemRow>;
}

export const RELEASE_KINDS = ['loinc', 'snomed', 'icd10'] as const;
export type ReleaseKind = (typeof RELEASE_KINDS)[number];

export function isReleaseKind(k: string): k is ReleaseKind {
  return (RELEASE_KINDS as readonly string[]).includes(k);
}

/** The files of a release of this kind under `path` (a folder or one file). */
export function planRelease(kind: ReleaseKind, path: string): ReleasePlan {
  if (!existsSync(path)) throw new ReleaseFormatError(`${path}: no such file or folder`);
  const files = filesUnder(path);
  switch (kind) {
    case 'loinc':
      return loincPlan(files);
    case 'snomed':
      return snomedPlan(files);
    case 'icd10':
      return icd10cmPlan(files);
  }
}
