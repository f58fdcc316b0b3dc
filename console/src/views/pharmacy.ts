import type { Medication } from 'fhir/r4.js';
import { html } from 'htm/preact';
import type { VNode } from 'preact';
import type { ViewContext } from '../context.js';
import { resourcesOf } from '../fhir.js';
import { day, numberExtension, REORDER_LEVEL, STOCK_QUANTITY, text } from '../format.js';
import { Panel, Stat, useLoad } from '../ui.js';

const NEAR_EXPIRY_DAYS = 90;
const BATCH_EXPIRING = 'https://fhir.hospital.example.org/StructureDefinition/medication-batch-expiring';

export interface StockRow {
  medication: Medication;
  name: string;
  stock?: number;
  reorder?: number;
  expiry?: string;
  low: boolean;
  nearExpiry: boolean;
}

/** Low stock first, then near expiry (≤ 90 days), then by name. */
export function stockRows(medications: Medication[], now = Date.now()): StockRow[] {
  return medications
    .map((m) => {
      const stock = numberExtension(m.extension, STOCK_QUANTITY);
      const reorder = numberExtension(m.extension, REORDER_LEVEL);
      // The product's own batch, or the earliest batch the pharmacy flagged as expiring (server-written).
      const flagged = (m.extension ?? []).filter((e) => e.url === BATCH_EXPIRING).map((e) => e.extension?.find((x) => x.url === 'expirationDate')?.valueDate);
      const expiry = [m.batch?.expirationDate, ...flagged].filter((d): d is string => !!d).sort()[0];
      return {
        medication: m,
        name: text(m.code),
        stock,
        reorder,
        expiry,
        low: stock !== undefined && reorder !== undefined && stock <= reorder,
        nearExpiry: expiry !== undefined && new Date(expiry).getTime() - now <= NEAR_EXPIRY_DAYS * 24 * 3600_000,
      };
    })
    .sort((a, b) => Number(b.low) - Number(a.low) || Number(b.nearExpiry) - Number(a.nearExpiry) || (a.expiry ?? '9').localeCompare(b.expiry ?? '9') || a.name.localeCompare(b.name));
}

export function PharmacyStock({ ctx }: { ctx: ViewContext }): VNode {
  const state = useLoad(async () => stockRows(resourcesOf(await ctx.fhir.search('Medication?_count=2000'), 'Medication')));
  return html`<div class="grid">
    <${Panel} title="Pharmacy stock" state=${state} wide id="stock">
      ${(rows: StockRow[]) => html`<div class="stats">
          <${Stat} label="medications" value=${rows.length} />
          <${Stat} label="low stock" value=${rows.filter((r) => r.low).length} tone=${rows.some((r) => r.low) ? 'bad' : 'ok'} />
          <${Stat} label="expiring ≤ 90 days" value=${rows.filter((r) => r.nearExpiry).length} tone=${rows.some((r) => r.nearExpiry) ? 'warn' : 'ok'} />
        </div>
        <table>
          <caption class="sr-only">Medication stock, low stock and near expiry first</caption>
          <thead><tr><th scope="col">Medication</th><th scope="col">In stock</th><th scope="col">Reorder level</th><th scope="col">Lot</th><th scope="col">Expires</th><th scope="col">Alert</th></tr></thead>
          <tbody>${rows.map(
            (r) => html`<tr data-medication=${r.medication.id} class=${r.low ? 'sev-critical' : r.nearExpiry ? 'sev-abnormal' : ''}>
              <th scope="row">${r.name}</th>
              <td>${r.stock ?? '—'}</td>
              <td>${r.reorder ?? '—'}</td>
              <td>${r.medication.batch?.lotNumber ?? '—'}</td>
              <td>${day(r.expiry)}</td>
              <td>${r.low ? html`<span class="flag flag-critical">low stock</span>` : null} ${r.nearExpiry ? html`<span class="flag flag-abnormal">near expiry</span>` : null}</td>
            </tr>`,
          )}</tbody>
        </table>`}
    <//>
  </div>`;
}
