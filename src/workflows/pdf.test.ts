import { describe, expect, it } from 'vitest';
import { embeddedFonts, missingGlyphs, pdfText } from '../../test/support/pdf-text.js';
import { billingReceiptPdf } from './billing/receipt-pdf.js';
import { labReportPdf } from './lab/report-pdf.js';
import { receiptPdf } from './pharmacy/receipt-pdf.js';

/**
 * PDFs print Vietnamese (issue 13 §4 receipts, seed 004 FR-PH-002 / FR-LAB-003 / FR-BL-002):
 * Noto Sans is embedded from its npm package (src/workflows/pdf.ts), and the text read back from
 * the PDF through the font's ToUnicode map is the text given, with no glyph missing.
 */

const PATIENT = 'Nguyễn Thị Hương';
const HOSPITAL = 'Bệnh viện Bạch Mai';
// Decomposed input (e + combining marks) prints as the composed letters.
const PHARMACIST = 'Trần Văn Đức, Dược sĩ'.normalize('NFD');

function expectPrinted(pdf: Buffer, texts: string[]): void {
  expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
  expect(embeddedFonts(pdf)).toContain('NotoSans-Regular');
  expect(pdf.toString('latin1')).not.toMatch(/\/BaseFont\s*\/Helvetica/);
  const text = pdfText(pdf);
  for (const t of texts) expect(text).toContain(t.normalize('NFC'));
  expect(missingGlyphs(pdf)).toBe(0);
}

describe('PDFs in an embedded Unicode font', () => {
  it('FR-PH-002: the dispensing receipt prints Vietnamese names and instructions with their marks', async () => {
    const pdf = await receiptPdf({
      hospitalName: HOSPITAL,
      dispense: 'MedicationDispense/d1',
      patientName: PATIENT,
      medication: 'Paracetamol 500 mg viên nén',
      quantity: '20 viên',
      batches: [{ lot: 'PARA-01', expiry: '2027-06-30', quantity: '20' }],
      pharmacist: PHARMACIST,
      date: '2026-12-04',
      status: 'completed',
      instructions: 'Uống 1 viên sau ăn, ngày 3 lần; tối đa 4 g/ngày',
    });
    expectPrinted(pdf, [HOSPITAL, PATIENT, 'Paracetamol 500 mg viên nén', 'Uống 1 viên sau ăn, ngày 3 lần; tối đa 4 g/ngày', 'Trần Văn Đức, Dược sĩ', 'Lot PARA-01']);
  });

  it('FR-LAB-003: the lab report prints the patient, results and verifiers in Vietnamese', async () => {
    const pdf = await labReportPdf(
      {
        hospitalName: HOSPITAL,
        title: 'Công thức máu',
        report: 'DiagnosticReport/r1',
        status: 'final',
        patientName: PATIENT,
        patientDetails: 'Nữ, 1985-02-03, MRN 000123',
        collected: '2026-12-01 08:00',
        issued: '2026-12-01 10:00',
        verifications: ['Kỹ thuật viên: Lê Thị Ánh', 'Bác sĩ: Phạm Quốc Việt'],
        rows: [{ test: 'Huyết sắc tố', value: '6.5 g/dL', flag: 'LL', range: '12 – 15.5 g/dL', previous: [{ date: '2026-11-01', value: '10.7 g/dL', flag: 'L' }] }],
        conclusion: 'Thiếu máu nặng; đề nghị truyền máu.',
      },
      { compress: false },
    );
    expectPrinted(pdf, [HOSPITAL, PATIENT, 'Công thức máu', 'Huyết sắc tố', '12 – 15.5 g/dL', 'Bác sĩ: Phạm Quốc Việt']);
  });

  it('FR-BL-002: the billing receipt prints the patient and items in Vietnamese', async () => {
    const pdf = await billingReceiptPdf(
      {
        title: 'Biên lai thu tiền',
        hospital: { name: HOSPITAL, address: '78 Giải Phóng, Đống Đa, Hà Nội' },
        number: 'PR-1',
        date: '2026-12-04',
        patientName: PATIENT,
        invoiceNumber: 'INV-1',
        payment: { amount: '100,000 VND', method: 'tiền mặt' },
        lines: [{ category: 'Khám bệnh', description: 'Khám chuyên khoa nội', amount: '100,000 VND' }],
        totals: [{ label: 'Tổng cộng', amount: '100,000 VND' }],
        payments: [],
      },
      { compress: false },
    );
    expectPrinted(pdf, [HOSPITAL, PATIENT, '78 Giải Phóng, Đống Đa, Hà Nội', 'Khám chuyên khoa nội']);
  });

  it('a character the font lacks is counted as missing (the check can fail)', async () => {
    const pdf = await receiptPdf({ hospitalName: HOSPITAL, dispense: 'd', patientName: '王小明', medication: 'm', quantity: '1', batches: [], pharmacist: 'p', date: 'd', status: 's' });
    expect(missingGlyphs(pdf)).toBe(3);
  });
});
