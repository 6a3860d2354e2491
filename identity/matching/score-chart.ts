/**
 * SVG chart of a score histogram: pairs per match weight bin for the two groups, side by
 * side, on a logarithmic count axis so that a few hundred matches stay visible next to
 * millions of non-matches. It follows the look of bench/svg-chart.ts, which identity/
 * cannot import because bench/ sits above it.
 */
import type { ScoreHistogram } from './score-histogram.js';

export interface ScoreChartOptions {
  title: string;
  histogram: ScoreHistogram;
  /** Dashed vertical lines at match weights, such as the thresholds. */
  markers?: ReadonlyArray<{ weight: number; label: string }>;
  width?: number;
  height?: number;
}

const COLORS = ['#59a14f', '#e15759'];
const MARGIN = { top: 48, right: 24, bottom: 56, left: 72 };
const FONT = 'font-family="sans-serif" font-size="12"';

export function renderScoreChart(options: ScoreChartOptions): string {
  const width = options.width ?? 760;
  const height = options.height ?? 380;
  const plot = { x: MARGIN.left, y: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom };
  const { edges, counts, groups } = options.histogram;
  const parts: string[] = [title(width, options.title)];
  if (edges.length === 0) return svg(width, height, [...parts, text(width / 2, height / 2, 'no candidate pairs', 'middle')]);

  const maxCount = Math.max(1, ...counts[0], ...counts[1]);
  const decades = Math.max(1, Math.ceil(Math.log10(maxCount + 1)));
  const yOf = (count: number) => plot.y + plot.height - (Math.log10(count + 1) / decades) * plot.height;
  const first = edges[0];
  const span = edges.length;
  const xOf = (weight: number) => plot.x + ((weight - first) / span) * plot.width;
  const slot = plot.width / span;

  for (let decade = 0; decade <= decades; decade++) {
    const y = yOf(10 ** decade - 1).toFixed(1);
    parts.push(`<line x1="${plot.x}" x2="${plot.x + plot.width}" y1="${y}" y2="${y}" stroke="#ddd"/>`, text(plot.x - 6, Number(y) + 4, decade === 0 ? '0' : compact(10 ** decade), 'end'));
  }
  edges.forEach((edge, index) => {
    for (const group of [0, 1] as const) {
      const count = counts[group][index];
      if (count === 0) continue;
      const x = xOf(edge) + (group * slot) / 2;
      const y = yOf(count);
      parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, slot / 2 - 0.5).toFixed(1)}" height="${(plot.y + plot.height - y).toFixed(1)}" fill="${COLORS[group]}"/>`);
    }
  });

  const step = Math.max(1, Math.ceil(span / 12));
  for (let index = 0; index < span; index += step) parts.push(text(xOf(edges[index]), plot.y + plot.height + 16, String(edges[index]), 'middle'));
  for (const marker of options.markers ?? []) parts.push(markerLine(plot, xOf(marker.weight), marker.label));

  parts.push(
    `<line x1="${plot.x}" x2="${plot.x}" y1="${plot.y}" y2="${plot.y + plot.height}" stroke="#333"/>`,
    `<line x1="${plot.x}" x2="${plot.x + plot.width}" y1="${plot.y + plot.height}" y2="${plot.y + plot.height}" stroke="#333"/>`,
    text(plot.x + plot.width / 2, height - 16, 'match weight (log2 odds of a match, prior included)', 'middle'),
    `<text ${FONT} x="18" y="${plot.y + plot.height / 2}" text-anchor="middle" transform="rotate(-90 18 ${plot.y + plot.height / 2})">candidate pairs (log scale)</text>`,
    ...groups.map((group, index) => `<rect x="${plot.x + 12 + index * 190}" y="${plot.y - 20}" width="12" height="12" fill="${COLORS[index]}"/>${text(plot.x + 30 + index * 190, plot.y - 10, group, 'start')}`),
  );
  return svg(width, height, parts);
}

interface Plot {
  x: number;
  y: number;
  width: number;
  height: number;
}

function markerLine(plot: Plot, x: number, label: string): string {
  if (x < plot.x || x > plot.x + plot.width) return '';
  return [
    `<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${plot.y}" y2="${plot.y + plot.height}" stroke="#4e79a7" stroke-dasharray="5 4"/>`,
    text(x + 4, plot.y + 14, label, 'start'),
  ].join('\n');
}

function title(width: number, value: string): string {
  return `<text font-family="sans-serif" font-size="15" font-weight="bold" x="${width / 2}" y="22" text-anchor="middle">${escape(value)}</text>`;
}

function text(x: number, y: number, value: string, anchor: 'start' | 'middle' | 'end'): string {
  return `<text ${FONT} x="${x.toFixed(1)}" y="${y.toFixed(1)}" text-anchor="${anchor}">${escape(value)}</text>`;
}

function svg(width: number, height: number, parts: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...parts.filter((part) => part !== ''),
    '</svg>',
    '',
  ].join('\n');
}

/** 1000000 as "1M", 10000 as "10k". */
function compact(value: number): string {
  if (value >= 1e6) return `${value / 1e6}M`;
  if (value >= 1e3) return `${value / 1e3}k`;
  return String(value);
}

function escape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
