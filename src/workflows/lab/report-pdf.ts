import { FONTS, openPdf, printable } from '../pdf.js';

/** One result line of a laboratory report, with the patient's earlier results of the same test. */
export interface ReportRow {
  test: string;
  value: string;
  flag: string;
  range: string;
  previous: Array<{ date: string; value: string; flag: string }>;
}

/** What a laboratory report shows (seed 004 FR-LAB-003). */
export interface LabReportContent {
  hospitalName: string;
  title: string;
  report: string;
  status: string;
  patientName: string;
  patientDetails: string;
  collected: string;
  issued: string;
  verifications: string[];
  rows: ReportRow[];
  conclusion?: string;
}

/**
 * The report as an A4 PDF made with pdfkit: hospital header, patient, results with flags and
 * reference ranges, the previous results of each test beside it, the verifications. `compress:
 * false` (tests) leaves the content streams readable.
 */
export function labReportPdf(r: LabReportContent, options: { compress?: boolean } = {}): Promise<Buffer> {
  const { doc, done, field: line } = openPdf({ size: 'A4', margin: 40, compress: options.compress ?? true, title: `${r.title} ${r.report}`, author: r.hospitalName });
  doc.font(FONTS.bold).fontSize(18).fillColor('#1d4e89').text(printable(r.hospitalName), { align: 'center' });
  doc.fontSize(10).fillColor('#555555').text('Laboratory department', { align: 'center' });
  doc.moveTo(40, doc.y + 4).lineTo(555, doc.y + 4).strokeColor('#1d4e89').stroke().moveDown();
  doc.fillColor('black').font(FONTS.bold).fontSize(14).text(printable(r.title), { align: 'left' }).moveDown(0.3);
  doc.fontSize(10);
  line('Report', `${r.report} (${r.status})`);
  line('Patient', r.patientName);
  if (r.patientDetails) line('Details', r.patientDetails);
  if (r.collected) line('Collected', r.collected);
  if (r.issued) line('Issued', r.issued);
  doc.moveDown();

  const columns = [40, 190, 290, 330, 430];
  const header = ['Test', 'Result', 'Flag', 'Reference range', 'Previous results'];
  const y0 = doc.y;
  doc.font(FONTS.bold);
  header.forEach((h, i) => doc.text(h, columns[i]!, y0, { width: (columns[i + 1] ?? 555) - columns[i]! - 4, lineBreak: false }));
  doc.moveDown(0.5).font(FONTS.regular);
  for (const row of r.rows) {
    const y = doc.y;
    const previous = row.previous.length ? row.previous.map((p) => `${p.date}: ${p.value}${p.flag && p.flag !== 'N' ? ` ${p.flag}` : ''}`).join('\n') : '-';
    const cells = [row.test, row.value, row.flag, row.range, previous];
    let bottom = y;
    cells.forEach((c, i) => {
      const abnormal = i === 2 && c !== '' && c !== 'N';
      doc.fillColor(abnormal ? '#b00020' : 'black').font(abnormal ? FONTS.bold : FONTS.regular);
      doc.text(printable(c), columns[i]!, y, { width: (columns[i + 1] ?? 555) - columns[i]! - 4 });
      bottom = Math.max(bottom, doc.y);
    });
    doc.fillColor('black').font(FONTS.regular);
    doc.y = bottom + 4;
    doc.x = 40;
  }
  doc.x = 40;
  doc.moveDown();
  if (r.conclusion) line('Conclusion', r.conclusion);
  doc.font(FONTS.bold).text('Verification');
  doc.font(FONTS.regular);
  if (r.verifications.length === 0) doc.text('Not verified: preliminary result.');
  for (const v of r.verifications) doc.text(printable(v));
  doc.moveDown().fontSize(8).fillColor('#555555').text('Flags: L low, H high, LL critical low, HH critical high, A abnormal, AA critical abnormal, N normal.');
  doc.end();
  return done;
}
