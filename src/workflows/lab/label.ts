import bwipjs from 'bwip-js';

/**
 * The specimen label (seed 004 FR-LAB-001 "unique specimen barcodes"): the accession number as a
 * Code 128 barcode with the number printed under it, a PNG for the label printer.
 */
export async function specimenLabelPng(accession: string, caption?: string): Promise<Buffer> {
  return bwipjs.toBuffer({
    bcid: 'code128',
    text: accession,
    scale: 3,
    height: 12,
    includetext: true,
    textxalign: 'center',
    ...(caption ? { alttext: `${accession}  ${caption}`.slice(0, 60) } : {}),
    paddingwidth: 6,
    paddingheight: 4,
    backgroundcolor: 'FFFFFF',
  });
}
