import PDFDocument from 'pdfkit';

/**
 * Text for pdfkit's standard fonts, which cover Latin-1 only: Vietnamese letters lose their
 * marks (đ → d), dashes become '-', anything else outside Latin-1 prints as '?'. A Unicode TTF
 * would keep them (not shipped yet).
 */
export function printable(text: string): string {
  return text
    .replace(/đ/g, 'd')
    .replace(/Đ/g, 'D')
    .replace(/[–—]/g, '-')
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^\x20-\x7e\xa0-\xff\n]/g, '?');
}

/**
 * A pdfkit document collected into a Buffer (`done` resolves after `doc.end()`), with `field`
 * writing "Label: value" lines. Receipts and reports share it; `compress: false` leaves the text
 * findable in the file (tests).
 */
export function openPdf(options: { size: 'A4' | 'A5'; margin: number; compress: boolean; title: string; author: string }): {
  doc: PDFKit.PDFDocument;
  done: Promise<Buffer>;
  field: (label: string, value: string) => void;
} {
  const doc = new PDFDocument({ size: options.size, margin: options.margin, compress: options.compress, info: { Title: printable(options.title), Author: printable(options.author) } });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const field = (label: string, value: string) => void doc.font('Helvetica-Bold').text(`${label}: `, { continued: true }).font('Helvetica').text(printable(value));
  return { doc, done, field };
}
