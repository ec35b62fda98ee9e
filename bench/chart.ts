// A small grouped bar chart as SVG text, written by the bench itself (no
// plotting dependency): one panel per measure, one group of bars per
// workload, one bar per series. A missing value is drawn as "—", no bar.

interface ChartSeries {
  readonly name: string;
  /** Any SVG colour, e.g. "#1f77b4". */
  readonly color: string;
}

export interface ChartGroup {
  readonly label: string;
  /** One value per series, in the chart's series order; NaN when not measured. */
  readonly values: readonly number[];
}

interface ChartPanel {
  readonly title: string;
  /** Printed after each value, e.g. "µs". */
  readonly unit: string;
  readonly groups: readonly ChartGroup[];
}

export interface Chart {
  readonly title: string;
  readonly series: readonly ChartSeries[];
  readonly panels: readonly ChartPanel[];
  /** A line under the title (e.g. the run's date and machine). */
  readonly subtitle?: string;
}

const WIDTH = 860;
const MARGIN_LEFT = 16;
const PANEL_HEIGHT = 230;
const PLOT_TOP = 42;
const PLOT_HEIGHT = 150;
const HEADER = 64;
const FONT = 'font-family="sans-serif"';

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Value labels: 3 significant digits below 100, whole numbers above. */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return '—';
  if (Math.abs(value) >= 100) return Math.round(value).toString();
  return Number(value.toPrecision(3)).toString();
}

function panelSvg(panel: ChartPanel, series: readonly ChartSeries[], top: number): string[] {
  const out: string[] = [];
  const finite = panel.groups.flatMap((g) => g.values.filter((v) => Number.isFinite(v) && v > 0));
  const max = finite.length === 0 ? 1 : Math.max(...finite);
  const plotWidth = WIDTH - 2 * MARGIN_LEFT;
  const groupWidth = plotWidth / Math.max(1, panel.groups.length);
  const barWidth = Math.min(40, (groupWidth * 0.8) / Math.max(1, series.length));
  const baseline = top + PLOT_TOP + PLOT_HEIGHT;
  out.push(`<text x="${MARGIN_LEFT}" y="${top + 20}" ${FONT} font-size="14" font-weight="bold">${escapeXml(panel.title)}</text>`);
  out.push(`<line x1="${MARGIN_LEFT}" y1="${baseline}" x2="${WIDTH - MARGIN_LEFT}" y2="${baseline}" stroke="#888" stroke-width="1"/>`);
  panel.groups.forEach((group, g) => {
    const groupLeft = MARGIN_LEFT + g * groupWidth + (groupWidth - barWidth * series.length) / 2;
    series.forEach((s, i) => {
      const value = group.values[i] ?? Number.NaN;
      const x = groupLeft + i * barWidth;
      const label = `${formatValue(value)}${Number.isFinite(value) ? ` ${panel.unit}` : ''}`;
      if (Number.isFinite(value) && value > 0) {
        const height = (value / max) * PLOT_HEIGHT;
        out.push(`<rect x="${x.toFixed(1)}" y="${(baseline - height).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${height.toFixed(1)}" fill="${escapeXml(s.color)}"><title>${escapeXml(`${group.label}, ${s.name}: ${label}`)}</title></rect>`);
        out.push(`<text x="${(x + barWidth / 2 - 1).toFixed(1)}" y="${(baseline - height - 4).toFixed(1)}" ${FONT} font-size="10" text-anchor="middle">${escapeXml(formatValue(value))}</text>`);
      } else {
        out.push(`<text x="${(x + barWidth / 2 - 1).toFixed(1)}" y="${baseline - 4}" ${FONT} font-size="10" text-anchor="middle">—</text>`);
      }
    });
    out.push(`<text x="${(MARGIN_LEFT + (g + 0.5) * groupWidth).toFixed(1)}" y="${baseline + 16}" ${FONT} font-size="11" text-anchor="middle">${escapeXml(group.label)}</text>`);
  });
  return out;
}

/** The whole chart as an SVG document. */
export function barChartSvg(chart: Chart): string {
  const height = HEADER + chart.panels.length * PANEL_HEIGHT;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}">`,
    `<rect x="0" y="0" width="${WIDTH}" height="${height}" fill="#fff"/>`,
    `<text x="${MARGIN_LEFT}" y="22" ${FONT} font-size="16" font-weight="bold">${escapeXml(chart.title)}</text>`,
  ];
  if (chart.subtitle !== undefined) out.push(`<text x="${MARGIN_LEFT}" y="40" ${FONT} font-size="11" fill="#555">${escapeXml(chart.subtitle)}</text>`);
  let legendX = MARGIN_LEFT;
  for (const s of chart.series) {
    out.push(`<rect x="${legendX}" y="48" width="12" height="12" fill="${escapeXml(s.color)}"/>`);
    out.push(`<text x="${legendX + 16}" y="58" ${FONT} font-size="11">${escapeXml(s.name)}</text>`);
    legendX += 24 + 7 * s.name.length;
  }
  chart.panels.forEach((panel, p) => out.push(...panelSvg(panel, chart.series, HEADER + p * PANEL_HEIGHT)));
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
