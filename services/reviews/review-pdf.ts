import { reviewSections, stageLine } from './review-render.js';
import type { Review, ReviewKpi } from './review-schemas.js';

/**
 * The monthly review as a PDF, drawn in the room's process without a browser (pdfkit): the same
 * sections as the HTML and the text, and per KPI a chart of the month's periods against their
 * band. Rendered from the kept document alone with a fixed creation date (the month's end), so
 * every partner gets the same bytes.
 */

const PALETTE = ['#1f5fa8', '#c2571a', '#2e7d32', '#7b1fa2', '#5d4037', '#00838f'];
const MARGIN = 48;

/**
 * The PDF's standard fonts (Helvetica) encode Windows-1252 only: other characters get a plain
 * equivalent ("→" becomes "->") or "?", never a wrong glyph.
 */
const PLAIN: Record<string, string> = { '→': '->', '≤': '<=', '≥': '>=', '▲': '+', '▼': '-', '✓': 'ok', '−': '-' };
const cp1252 = new Set([...'€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ']);
export function pdfText(s: string): string {
  return [...s]
    .map((c) => {
      const code = c.codePointAt(0)!;
      if ((code >= 0x20 && code <= 0x7e) || (code >= 0xa0 && code <= 0xff) || cp1252.has(c) || c === '\n') return c;
      return PLAIN[c] ?? '?';
    })
    .join('');
}

/** One KPI's chart: each scope's disclosed values over the month's periods, its band shaded. */
function chart(doc: PDFKit.PDFDocument, k: ReviewKpi, x: number, y: number, w: number, h: number): void {
  const periods = [...new Set(k.scopes.flatMap((s) => (s.series ?? []).map((p) => p.period)))].sort();
  const values = k.scopes.flatMap((s) => (s.series ?? []).flatMap((p) => [p.value, p.lower, p.upper]));
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  doc.save();
  doc.rect(x, y, w, h).lineWidth(0.5).strokeColor('#8c959f').stroke();
  if (!periods.length || !finite.length) {
    doc
      .fillColor('#57606a')
      .fontSize(8)
      .text('No disclosed value this month.', x + 6, y + h / 2 - 4, { width: w - 12 });
    doc.restore();
    return;
  }
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi === lo) [lo, hi] = [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const px = (i: number) => x + 30 + (periods.length === 1 ? (w - 40) / 2 : (i * (w - 40)) / (periods.length - 1));
  const py = (v: number) => y + h - 14 - ((v - lo) / (hi - lo)) * (h - 22);
  // The combined scope's band (or the first scope's), shaded period by period.
  const banded = k.scopes[0]!;
  (banded.series ?? []).forEach((p) => {
    const i = periods.indexOf(p.period);
    if (p.lower === null && p.upper === null) return;
    const top = py(p.upper ?? hi);
    const bottom = py(p.lower ?? lo);
    const half = periods.length === 1 ? 20 : (w - 40) / (periods.length - 1) / 2;
    doc
      .rect(Math.max(x + 30, px(i) - half), top, Math.min(2 * half, x + w - 10 - (px(i) - half)), bottom - top)
      .fillOpacity(0.12)
      .fill('#2e7d32');
  });
  doc.fillOpacity(1);
  k.scopes.forEach((s, si) => {
    const colour = PALETTE[si % PALETTE.length]!;
    let drawing = false;
    for (const p of s.series ?? []) {
      const i = periods.indexOf(p.period);
      if (p.value === null) {
        // A withheld or empty period breaks the line: nothing is drawn for it.
        drawing = false;
        continue;
      }
      if (drawing) doc.lineTo(px(i), py(p.value));
      else doc.moveTo(px(i), py(p.value));
      drawing = true;
    }
    doc.lineWidth(1.2).strokeColor(colour).stroke();
    for (const p of s.series ?? [])
      if (p.value !== null) doc.circle(px(periods.indexOf(p.period)), py(p.value), 1.8).fill(colour);
  });
  doc.fillColor('#57606a').fontSize(7);
  doc.text(pdfText(String(Number(hi.toPrecision(3)))), x + 2, y + 3, { width: 27, lineBreak: false });
  doc.text(pdfText(String(Number(lo.toPrecision(3)))), x + 2, y + h - 22, { width: 27, lineBreak: false });
  doc.text(periods[0]!, x + 30, y + h - 10, { lineBreak: false });
  if (periods.length > 1)
    doc.text(periods.at(-1)!, x + w - 60, y + h - 10, { width: 50, align: 'right', lineBreak: false });
  // The legend: one colour per scope.
  let lx = x + 34;
  k.scopes.forEach((s, si) => {
    doc.rect(lx, y + 4, 8, 3).fill(PALETTE[si % PALETTE.length]!);
    doc.fillColor('#1b1f24').text(pdfText(s.scope), lx + 11, y + 2, { lineBreak: false });
    lx += 16 + doc.widthOfString(s.scope);
  });
  doc.restore();
}

/** Renders the review; resolves with the PDF's bytes. */
export async function reviewPdf(r: Review): Promise<Buffer> {
  // pdfkit and its fonts (~20 MB of the process) load with the first PDF asked for, not at start.
  const { default: PDFDocument } = await import('pdfkit');
  const doc = new PDFDocument({
    size: 'A4',
    margin: MARGIN,
    info: {
      Title: pdfText(`${r.partnership.title} - monthly review ${r.month}`),
      Author: 'Parity',
      Subject: `digest ${r.digest}`,
      CreationDate: new Date(`${r.to}T00:00:00Z`),
    },
    bufferPages: false,
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const width = doc.page.width - 2 * MARGIN;
  const room = (h: number) => {
    if (doc.y + h > doc.page.height - MARGIN) doc.addPage();
  };
  doc.font('Helvetica-Bold').fontSize(17).fillColor('#1b1f24');
  doc.text(pdfText(`${r.partnership.title} - monthly review ${r.month}`), { width });
  doc.moveDown(0.4).font('Helvetica').fontSize(10);
  if (r.intent) doc.text(pdfText(r.intent), { width }).moveDown(0.4);
  const stage = stageLine(r);
  if (stage) doc.text(pdfText(stage), { width }).moveDown(0.4);
  doc.fontSize(8).fillColor('#57606a');
  doc.text(
    `Every figure is a disclosed value at snapshot ${r.snapshot} (agreement version ${r.agreementVersion}), ${r.from} to ${r.to}.`,
    { width },
  );
  doc.font('Courier').text(`Digest ${r.digest}`, { width });
  doc.font('Helvetica').fillColor('#1b1f24').moveDown(0.8);

  doc.font('Helvetica-Bold').fontSize(13).text('The month at a glance', { width }).moveDown(0.3);
  const chartW = (width - 12) / 2;
  const chartH = 110;
  for (let i = 0; i < r.kpis.length; i += 2) {
    room(chartH + 22);
    const top = doc.y;
    for (let j = 0; j < 2 && i + j < r.kpis.length; j++) {
      const k = r.kpis[i + j]!;
      const x = MARGIN + j * (chartW + 12);
      doc.font('Helvetica-Bold').fontSize(9).fillColor('#1b1f24');
      doc.text(pdfText(`${k.title} (${k.unit}, by ${k.grain})`), x, top, { width: chartW, lineBreak: false });
      chart(doc, k, x, top + 13, chartW, chartH);
    }
    doc.x = MARGIN;
    doc.y = top + chartH + 22;
  }
  for (const s of reviewSections(r)) {
    room(60);
    doc.x = MARGIN;
    doc.moveDown(0.6).font('Helvetica-Bold').fontSize(13).fillColor('#1b1f24').text(pdfText(s.title), { width });
    doc.moveDown(0.3).font('Helvetica').fontSize(8);
    if (!s.rows.length) {
      doc.fillColor('#57606a').text(pdfText(s.empty), { width }).fillColor('#1b1f24');
      continue;
    }
    doc.table({
      maxWidth: width,
      rowStyles: (i) => (i === 0 ? { backgroundColor: '#eef1f4' } : undefined),
      data: [
        s.head.map((h) => ({ text: pdfText(h), type: 'TH' as const, font: { family: 'Helvetica-Bold' } })),
        ...s.rows.map((row) => row.map((c) => pdfText(c))),
      ],
    });
  }
  room(60);
  doc.x = MARGIN;
  doc.moveDown(0.6).font('Helvetica-Bold').fontSize(13).text('What improved since last month', { width });
  doc.moveDown(0.3).font('Helvetica').fontSize(9);
  if (r.improvements.length) for (const i of r.improvements) doc.text(pdfText(`- ${i}`), { width });
  else doc.text('Nothing moved the better way.', { width });
  doc.end();
  return done;
}
