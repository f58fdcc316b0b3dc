import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Bundle, Observation, Resource } from 'fhir/r4.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadUsCoreProfiles, ResourceValidator } from './index.js';

const dir = path.resolve(process.cwd(), '../shared/data/synthea');
const BP = 'http://hl7.org/fhir/StructureDefinition/bp';
const SYSTOLIC = '8480-6';
const DIASTOLIC = '8462-4';

function loadResources(): Resource[] {
  const out: Resource[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json.gz')).sort()) {
    const bundle = JSON.parse(gunzipSync(readFileSync(path.join(dir, f))).toString('utf8')) as Bundle;
    for (const e of bundle.entry ?? []) if (e.resource) out.push(e.resource);
  }
  return out;
}

function manifestEntryCount(): number {
  const lines = readFileSync(path.join(dir, 'MANIFEST.tsv'), 'utf8').trim().split('\n').slice(1);
  return lines.reduce((n, line) => n + Number(line.split('\t')[2]), 0);
}

const componentCode = (o: Observation, i: number) => o.component?.[i]?.code.coding?.[0]?.code;

describe('Synthea bundles', () => {
  let resources: Resource[];
  let validator: ResourceValidator;

  beforeAll(() => {
    resources = loadResources();
    validator = new ResourceValidator({ extraProfiles: loadUsCoreProfiles() });
  });

  it('validates every entry resource, including against its known meta.profile profiles', () => {
    expect(resources.length).toBe(manifestEntryCount());
    const errors: string[] = [];
    const unsupported = new Set<string>();
    const started = performance.now();
    for (const r of resources) {
      for (const i of validator.validate(r)) {
        if (i.severity === 'error') errors.push(`${r.resourceType}/${r.id} ${i.expression?.[0]}: ${i.diagnostics}`);
        else if (i.code === 'not-supported') unsupported.add(i.diagnostics ?? '');
      }
    }
    const seconds = (performance.now() - started) / 1000;
    // A second pass shows the steady state, once definitions and value sets are compiled.
    const warmStart = performance.now();
    for (const r of resources) validator.validate(r);
    const warm = (performance.now() - warmStart) / 1000;
    console.log(
      `validated ${resources.length} Synthea resources (with profile checks): ` +
        `first pass ${Math.round(resources.length / seconds)}/s, warm ${Math.round(resources.length / warm)}/s ` +
        `(${((warm * 1e6) / resources.length).toFixed(1)} µs per resource)`,
    );
    expect(errors.slice(0, 20)).toEqual([]);
    // The spec's vital-signs profiles and the US Core profiles of the pack are known, so checked.
    for (const d of unsupported) {
      expect(d).not.toMatch(/StructureDefinition\/(vitalsigns|bp|bodyweight|bodyheight|bmi|heartrate|resprate|bodytemp|headcircum) /);
      expect(d).not.toMatch(/us-core-(patient|medicationrequest|implantable-device) /);
    }
  });

  it('accepts the blood-pressure Observations against the bp profile, whatever the component order', () => {
    const bps = resources.filter(
      (r): r is Observation => r.resourceType === 'Observation' && (r.meta?.profile ?? []).includes(BP),
    );
    expect(bps.length).toBeGreaterThan(1000);
    // Synthea lists the diastolic component first; unordered slicing must not care.
    expect(bps.filter((o) => componentCode(o, 0) === DIASTOLIC && componentCode(o, 1) === SYSTOLIC).length).toBeGreaterThan(1000);
    let accepted = 0;
    for (const o of bps) {
      if (!validator.validate(o).some((i) => i.severity === 'error')) accepted++;
    }
    expect(accepted).toBe(bps.length);

    // Non-vacuous: the same data without its systolic component is rejected by the bp profile.
    const broken = structuredClone(bps[0]);
    broken.component = broken.component?.filter((c) => c.code.coding?.[0]?.code !== SYSTOLIC);
    const issues = validator.validate(broken).filter((i) => i.severity === 'error');
    expect(issues).toContainEqual(
      expect.objectContaining({ code: 'required', expression: ['Observation.component'], diagnostics: expect.stringContaining(`'SystolicBP'`) }),
    );
  });
});
