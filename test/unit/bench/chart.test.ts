// The bench's SVG bar chart: one bar per measured value, heights to scale,
// labels escaped, missing values drawn as a dash without a bar.
import t from 'tap';
import { barChartSvg, escapeXml, formatValue } from '../../../bench/chart.js';

const chart = barChartSvg({
  title: 'CPU per decision <test> & co',
  series: [{ name: 'ours', color: '#2b6cb0' }, { name: 'peer', color: '#dd8452' }],
  panels: [
    { title: 'Redis', unit: 'µs', groups: [{ label: 'uniform', values: [2, 8] }, { label: 'hot', values: [Number.NaN, 4] }] },
    { title: 'Sidecar', unit: 'µs', groups: [{ label: 'uniform', values: [30, 15] }] },
  ],
});

function barHeights(svg: string): number[] {
  return [...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" fill="#[0-9a-f]+"><title>/g)].map((m) => Number(m[1]));
}

t.test('an SVG document with a bar per finite value and its title escaped', async (t) => {
  t.match(chart, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.ok(chart.trimEnd().endsWith('</svg>'));
  t.match(chart, /CPU per decision &lt;test&gt; &amp; co/);
  t.notMatch(chart, /<test>/);
  t.equal(barHeights(chart).length, 5, '5 measured values, 1 missing');
  t.match(chart, />—</, 'the missing value is a dash');
});

t.test('bars are to scale within a panel, the largest one full height', async (t) => {
  const [a, b, c, d, e] = barHeights(chart);
  t.equal(b, 150, 'the panel maximum fills the plot');
  t.equal(a, 150 / 4, '2 of 8');
  t.equal(c, 75, '4 of 8');
  t.equal(d, 150, 'each panel has its own scale');
  t.equal(e, 75);
});

t.test('value labels and escaping', async (t) => {
  t.equal(formatValue(0.4567), '0.457');
  t.equal(formatValue(12.34), '12.3');
  t.equal(formatValue(1234.5), '1235');
  t.equal(formatValue(Number.NaN), '—');
  t.equal(escapeXml('a<b>&"c"'), 'a&lt;b&gt;&amp;&quot;c&quot;');
});
