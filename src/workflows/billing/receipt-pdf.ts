import { FONTS, openPdf, printable } from '../pdf.js';

/** What a billing receipt shows (seed 004 FR-BL-002 "generate receipts immediately"). */
export interface BillingReceipt {
  title: string;
  hospital: { name: string; address?: string; phone?: string };
  number: string;
  date: string;
  patientName: string;
  invoiceNumber: string;
  /** The payment this receipt is for (absent on an invoice statement). */
  payment?: { amount: string; method: string; reference?: string };
  lines: Array<{ category: string; description: string; amount: string }>;
  totals: Array<{ label: string; amount: string }>;
  payments: Array<{ date: string; method: string; amount: string }>;
}

/** An A5 PDF (pdfkit); `compress: false` leaves the text findable in the file (tests). */
export function billingReceiptPdf(r: BillingReceipt, options: { compress?: boolean } = {}): Promise<Buffer> {
  const { doc, done, field } = openPdf({ size: 'A5', margin: 36, compress: options.compress ?? true, title: `${r.title} ${r.number}`, author: r.hospital.name });
  doc.font(FONTS.bold).fontSize(15).text(printable(r.hospital.name), { align: 'center' });
  doc.font(FONTS.regular).fontSize(8);
  if (r.hospital.address) doc.text(printable(r.hospital.address), { align: 'center' });
  if (r.hospital.phone) doc.text(printable(r.hospital.phone), { align: 'center' });
  doc.moveDown(0.5).font(FONTS.bold).fontSize(12).text(printable(r.title), { align: 'center' }).moveDown(0.5);
  doc.fontSize(9);
  field('Number', r.number);
  field('Date', r.date);
  field('Patient', r.patientName);
  field('Invoice', r.invoiceNumber);
  if (r.payment) {
    field('Amount received', r.payment.amount);
    field('Method', r.payment.method);
    if (r.payment.reference) field('Reference', r.payment.reference);
  }
  doc.moveDown(0.5).font(FONTS.bold).text('Items');
  doc.font(FONTS.regular);
  let category = '';
  for (const line of r.lines) {
    if (line.category !== category) {
      category = line.category;
      doc.font(FONTS.italic).text(printable(category)).font(FONTS.regular);
    }
    doc.text(printable(`  ${line.description}   ${line.amount}`));
  }
  doc.moveDown(0.5);
  for (const t of r.totals) field(t.label, t.amount);
  if (r.payments.length > 0) {
    doc.moveDown(0.5).font(FONTS.bold).text('Payments');
    doc.font(FONTS.regular);
    for (const p of r.payments) doc.text(printable(`${p.date}   ${p.method}   ${p.amount}`));
  }
  doc.end();
  return done;
}
