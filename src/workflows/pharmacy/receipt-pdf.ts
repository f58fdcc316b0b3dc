import { FONTS, openPdf, printable } from '../pdf.js';

/** What a dispensing receipt shows (seed 004 FR-PH-002 "generate dispensing receipt"). */
export interface ReceiptContent {
  hospitalName: string;
  dispense: string;
  patientName: string;
  medication: string;
  quantity: string;
  batches: Array<{ lot: string; expiry: string; quantity: string }>;
  pharmacist: string;
  date: string;
  prescription?: string;
  instructions?: string;
  status: string;
}

/**
 * The receipt as an A5 PDF made with pdfkit. Content streams are left uncompressed: a receipt is
 * a page of text (a few KB either way) and its words stay findable in the file.
 */
export function receiptPdf(r: ReceiptContent): Promise<Buffer> {
  const { doc, done, field: line } = openPdf({ size: 'A5', margin: 36, compress: false, title: `Dispensing receipt ${r.dispense}`, author: r.hospitalName });
  doc.font(FONTS.bold).fontSize(16).text(printable(r.hospitalName), { align: 'center' });
  doc.fontSize(12).text('Pharmacy dispensing receipt', { align: 'center' }).moveDown();
  doc.fontSize(10);
  line('Receipt', r.dispense);
  line('Date', r.date);
  line('Patient', r.patientName);
  if (r.prescription) line('Prescription', r.prescription);
  line('Medication', r.medication);
  line('Quantity', r.quantity);
  line('Status', r.status);
  if (r.instructions) line('Instructions', r.instructions);
  doc.moveDown().font(FONTS.bold).text('Batches');
  doc.font(FONTS.regular);
  if (r.batches.length === 0) doc.text('(stock not tracked by batch)');
  for (const b of r.batches) doc.text(printable(`Lot ${b.lot}   expiry ${b.expiry}   quantity ${b.quantity}`));
  doc.moveDown();
  line('Pharmacist', r.pharmacist);
  doc.end();
  return done;
}
