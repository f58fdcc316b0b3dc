import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as fontkit from 'fontkit';
import PDFDocument from 'pdfkit';

/**
 * PDFs of the hospital (receipts, lab reports) in Noto Sans, embedded from the npm package
 * @expo-google-fonts/noto-sans (Google's full TTFs, SIL Open Font License): Latin with every
 * Vietnamese letter ("Nguyễn Thị Hương"), Greek and Cyrillic. pdfkit's standard fonts cover
 * Latin-1 only and dropped the marks; system fonts are never used (the PDF must look the same
 * on every server). Only the glyphs a document uses are embedded (pdfkit subsets the font), with
 * a ToUnicode map, so the text can be searched and copied.
 */

const require = createRequire(import.meta.url);
const FONT_PACKAGE = '@expo-google-fonts/noto-sans';
const FONT_FILES = {
  regular: `${FONT_PACKAGE}/400Regular/NotoSans_400Regular.ttf`,
  bold: `${FONT_PACKAGE}/700Bold/NotoSans_700Bold.ttf`,
  italic: `${FONT_PACKAGE}/400Regular_Italic/NotoSans_400Regular_Italic.ttf`,
} as const;

/** Font names to pass to `doc.font()` in documents made by `openPdf`. */
export const FONTS = { regular: 'NotoSans', bold: 'NotoSans-Bold', italic: 'NotoSans-Italic' } as const;

type FontStyle = keyof typeof FONT_FILES;
let parsed: Record<FontStyle, fontkit.Font> | undefined;

/**
 * The fonts, parsed once per process and shared by every document (pdfkit takes a fontkit font
 * as a font source): fontkit reads a font's substitution and positioning tables on its first
 * layout, about half a second for Noto Sans, which a font parsed per document would pay for
 * every receipt.
 */
function fonts(): Record<FontStyle, fontkit.Font> {
  const open = (style: FontStyle) => {
    const font = fontkit.create(readFileSync(require.resolve(FONT_FILES[style])));
    if (!('layout' in font)) throw new Error(`${FONT_FILES[style]} is a font collection, not a font`);
    return font;
  };
  parsed ??= { regular: open('regular'), bold: open('bold'), italic: open('italic') };
  return parsed;
}

/**
 * Text as printed: composed (NFC) so that each Vietnamese letter is one glyph of the font rather
 * than a letter and stacked combining marks, without control characters (a line break stays).
 */
export function printable(text: string): string {
  return text.normalize('NFC').replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, ' ');
}

/**
 * OpenType features for every text run: all the defaults but `ccmp`, with which Noto Sans splits
 * some composed Vietnamese letters (ị, ọ, ụ, …) into a base letter and a combining mark. They look
 * the same, but pdfkit's ToUnicode map gives each glyph the text it was first drawn for, so the
 * plain `i` of "viên" would copy and search as "ị" after "Thị". fontkit takes an object of
 * feature switches here (pdfkit's types say an array of names) and writes the features it used
 * into it: a fresh object per call.
 */
const noDecomposition = () => ({ ccmp: false }) as unknown as PDFKit.Mixins.OpenTypeFeatures[];

/** Makes every `doc.text(…)` call lay its text out without `ccmp` unless it names features. */
function keepComposedLetters(doc: PDFKit.PDFDocument): void {
  const text = doc.text.bind(doc) as (...args: unknown[]) => PDFKit.PDFDocument;
  doc.text = ((...args: unknown[]) => {
    const last = args[args.length - 1];
    // pdfkit reads the options object wherever it stands after the text (text, options) or (text, x, y, options).
    if (args.length > 1 && typeof last === 'object' && last !== null) {
      const options = last as PDFKit.Mixins.TextOptions;
      return text(...args.slice(0, -1), options.features ? options : { ...options, features: noDecomposition() });
    }
    return text(...args, { features: noDecomposition() });
  }) as PDFKit.PDFDocument['text'];
}

/**
 * A pdfkit document in the embedded fonts, collected into a Buffer (`done` resolves after
 * `doc.end()`), with `field` writing "Label: value" lines. Receipts and reports share it;
 * `compress: false` leaves the text findable in the file (tests).
 */
export function openPdf(options: { size: 'A4' | 'A5'; margin: number; compress: boolean; title: string; author: string }): {
  doc: PDFKit.PDFDocument;
  done: Promise<Buffer>;
  field: (label: string, value: string) => void;
} {
  const shared = fonts();
  // pdfkit's types name paths and buffers only; since 0.16 it also takes a fontkit font.
  const source = (style: FontStyle) => shared[style] as unknown as string;
  // `font`: the default font, so pdfkit never loads its Latin-1 Helvetica.
  const doc = new PDFDocument({ size: options.size, margin: options.margin, compress: options.compress, font: source('regular'), info: { Title: printable(options.title), Author: printable(options.author) } });
  doc.registerFont(FONTS.regular, source('regular'));
  doc.registerFont(FONTS.bold, source('bold'));
  doc.registerFont(FONTS.italic, source('italic'));
  doc.font(FONTS.regular);
  keepComposedLetters(doc);
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const field = (label: string, value: string) => void doc.font(FONTS.bold).text(`${label}: `, { continued: true }).font(FONTS.regular).text(printable(value));
  return { doc, done, field };
}
