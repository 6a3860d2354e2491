/**
 * Minimal SVG charts for docs/benchmarks: a bar chart and a line chart of stacked panels
 * that share the x axis. Both have axis labels and gridlines, and need no dependency.
 */

export interface Bar {
  label: string;
  value: number;
  /** Text above the bar; defaults to the value in compact form. */
  valueLabel?: string;
  color?: string;
}

export interface BarChartOptions {
  title: string;
  yLabel: string;
  bars: Bar[];
  /**
   * A dashed horizontal line, for example a goal. Its label sits on the line at the left,
   * or with `labelBelow` under the x axis labels, where no bar's value label can cover it.
   */
  referenceLine?: { value: number; label: string; labelBelow?: boolean };
  /** Top of the y axis. A bar above it is cut at the top and marked with a white break, its value label still exact. */
  yMax?: number;
  width?: number;
  height?: number;
}

export interface LineSeries {
  name: string;
  /** [x, y] points in x order. */
  points: Array<[number, number]>;
  color: string;
}

export interface LinePanel {
  yLabel: string;
  series: LineSeries[];
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  panels: LinePanel[];
  /** Vertical dashed lines across every panel, for example when a node was stopped. */
  markers?: Array<{ x: number; label: string }>;
  width?: number;
  panelHeight?: number;
}

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948'];
const MARGIN = { top: 40, right: 24, bottom: 56, left: 80 };
const FONT = 'font-family="sans-serif" font-size="12"';

export function renderBarChart(options: BarChartOptions): string {
  const width = options.width ?? 640;
  const height = options.height ?? 360;
  const plot = { x: MARGIN.left, y: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom };
  const maxValue = options.yMax ?? Math.max(...options.bars.map((bar) => bar.value), options.referenceLine?.value ?? 0);
  const ticks = niceTicks(maxValue);
  const top = ticks[ticks.length - 1];
  const yOf = (value: number) => plot.y + plot.height - (Math.min(value, top) / top) * plot.height;

  const slot = plot.width / options.bars.length;
  const barWidth = Math.min(120, slot * 0.6);
  const bars = options.bars.map((bar, i) => {
    const x = plot.x + slot * i + (slot - barWidth) / 2;
    const y = yOf(bar.value);
    const color = bar.color ?? PALETTE[i % PALETTE.length];
    const cut = bar.value > top ? `<rect x="${(x - 2).toFixed(1)}" y="${(y + 10).toFixed(1)}" width="${(barWidth + 4).toFixed(1)}" height="4" fill="#fff"/>` : '';
    return [
      `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(plot.y + plot.height - y).toFixed(1)}" fill="${color}"/>`,
      cut,
      text(x + barWidth / 2, y - 6, bar.valueLabel ?? compact(bar.value), 'middle'),
      text(x + barWidth / 2, plot.y + plot.height + 18, bar.label, 'middle'),
    ].filter((part) => part !== '').join('\n');
  });

  const reference = options.referenceLine === undefined ? '' : referenceLine(plot, yOf(options.referenceLine.value), options.referenceLine);
  return svg(width, height, [
    title(width, options.title),
    yAxis(plot, ticks, yOf, options.yLabel),
    ...bars,
    reference,
  ]);
}

export function renderLineChart(options: LineChartOptions): string {
  const width = options.width ?? 720;
  const panelHeight = options.panelHeight ?? 200;
  const gap = 24;
  const height = MARGIN.top + options.panels.length * (panelHeight + gap) - gap + MARGIN.bottom;
  const allX = options.panels.flatMap((panel) => panel.series.flatMap((series) => series.points.map(([x]) => x)));
  const xTicks = niceTicks(Math.max(1, ...allX));
  const xMax = xTicks[xTicks.length - 1];
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const xOf = (x: number) => MARGIN.left + (x / xMax) * plotWidth;

  const panels = options.panels.map((panel, i) => {
    const plot = { x: MARGIN.left, y: MARGIN.top + i * (panelHeight + gap), width: plotWidth, height: panelHeight };
    return renderPanel(panel, plot, xOf);
  });

  const bottom = MARGIN.top + options.panels.length * (panelHeight + gap) - gap;
  const xAxis = xTicks.map((tick) => text(xOf(tick), bottom + 16, compact(tick), 'middle')).join('\n');
  // Marker labels run upwards along their line, so the labels of nearby markers do not overlap.
  const markers = (options.markers ?? []).map((marker) => {
    const x = xOf(marker.x);
    const labelX = (x + 12).toFixed(1);
    const labelY = MARGIN.top + 20;
    return [
      `<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${MARGIN.top}" y2="${bottom}" stroke="#e15759" stroke-dasharray="4 3"/>`,
      `<text ${FONT} fill="#b0353a" x="${labelX}" y="${labelY}" text-anchor="end" transform="rotate(-90 ${labelX} ${labelY})">${escape(marker.label)}</text>`,
    ].join('\n');
  });
  return svg(width, height, [
    title(width, options.title),
    ...panels,
    ...markers,
    xAxis,
    text(MARGIN.left + plotWidth / 2, bottom + 38, options.xLabel, 'middle'),
  ]);
}

interface Plot {
  x: number;
  y: number;
  width: number;
  height: number;
}

function renderPanel(panel: LinePanel, plot: Plot, xOf: (x: number) => number): string {
  const maxY = Math.max(1, ...panel.series.flatMap((series) => series.points.map(([, y]) => y)));
  const ticks = niceTicks(maxY);
  const top = ticks[ticks.length - 1];
  const yOf = (y: number) => plot.y + plot.height - (y / top) * plot.height;

  const lines = panel.series.map((series) => {
    const points = series.points.map(([x, y]) => `${xOf(x).toFixed(1)},${yOf(y).toFixed(1)}`).join(' ');
    return `<polyline points="${points}" fill="none" stroke="${series.color}" stroke-width="2"/>`;
  });
  const legend = panel.series.map((series, i) => {
    const x = plot.x + 12 + i * 160;
    return `<rect x="${x}" y="${plot.y + 6}" width="12" height="3" fill="${series.color}"/>${text(x + 18, plot.y + 12, series.name, 'start')}`;
  });

  return [yAxis(plot, ticks, yOf, panel.yLabel), `<rect x="${plot.x}" y="${plot.y}" width="${plot.width}" height="${plot.height}" fill="none" stroke="#999"/>`, ...lines, ...legend].join('\n');
}

function yAxis(plot: Plot, ticks: number[], yOf: (value: number) => number, label: string): string {
  const grid = ticks.map((tick) => {
    const y = yOf(tick).toFixed(1);
    return `<line x1="${plot.x}" x2="${plot.x + plot.width}" y1="${y}" y2="${y}" stroke="#ddd"/>${text(plot.x - 6, Number(y) + 4, compact(tick), 'end')}`;
  });
  const middle = plot.y + plot.height / 2;
  const axisLabel = `<text ${FONT} x="18" y="${middle}" text-anchor="middle" transform="rotate(-90 18 ${middle})">${escape(label)}</text>`;
  return [...grid, `<line x1="${plot.x}" x2="${plot.x}" y1="${plot.y}" y2="${plot.y + plot.height}" stroke="#333"/>`, axisLabel].join('\n');
}

function referenceLine(plot: Plot, y: number, line: { label: string; labelBelow?: boolean }): string {
  const dashed = (x1: number, x2: number, atY: number) => `<line x1="${x1}" x2="${x2}" y1="${atY.toFixed(1)}" y2="${atY.toFixed(1)}" stroke="#e15759" stroke-dasharray="6 4"/>`;
  if (line.labelBelow !== true) return [dashed(plot.x, plot.x + plot.width, y), text(plot.x + 4, y - 6, line.label, 'start')].join('\n');

  const legendY = plot.y + plot.height + 40;
  return [dashed(plot.x, plot.x + plot.width, y), dashed(plot.x, plot.x + 30, legendY - 4), text(plot.x + 36, legendY, line.label, 'start')].join('\n');
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

/** Tick values from 0 to at least `max`, at a step of 1, 2 or 5 times a power of ten. */
export function niceTicks(max: number, targetCount = 5): number[] {
  if (!(max > 0)) return [0, 1];

  const rough = max / targetCount;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((factor) => factor * magnitude).find((candidate) => candidate >= rough) ?? 10 * magnitude;
  const ticks: number[] = [];
  for (let tick = 0; tick < max + step; tick += step) ticks.push(Number(tick.toPrecision(12)));
  return ticks;
}

/** 1234567 as "1.23M", 45600 as "45.6k". */
export function compact(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return trim(value);
}

function trim(value: number): string {
  return Number(value.toPrecision(3)).toString();
}

function escape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
