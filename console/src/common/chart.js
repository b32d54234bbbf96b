// A time series chart (uPlot): x is Unix seconds, series are [label, values, colour]. It takes the
// width of its box and follows it when the window is resized.
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const palette = ['#0b5cad', '#c2410c', '#1b7a3a', '#7c3aed', '#a61b1b', '#0e7490'];

export function Chart({ title, x, series, unit = '', height = 220, threshold }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current || !x.length) {
      return undefined;
    }
    const options = {
      width: Math.max(240, box.current.clientWidth - 8),
      height,
      legend: { live: false },
      scales: { x: { time: true } },
      axes: [{}, { values: (_, ticks) => ticks.map((v) => `${+v.toFixed(3)}${unit}`), size: 60 }],
      series: [
        {},
        ...series.map(([label], i) => ({ label, stroke: palette[i % palette.length], width: 2, spanGaps: true })),
      ],
    };
    if (threshold !== undefined) {
      options.series.push({ label: 'alert level', stroke: '#a61b1b', dash: [6, 4], width: 1 });
    }
    const data = [x, ...series.map(([, values]) => values)];
    if (threshold !== undefined) {
      data.push(x.map(() => threshold));
    }
    const plot = new uPlot(options, data, box.current);
    const resize = () => plot.setSize({ width: Math.max(240, box.current.clientWidth - 8), height });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [x, series, unit, height, threshold]);
  return html`<figure class="chart" aria-label=${title}>
    <h3>${title}</h3>
    ${x.length ? html`<div ref=${box}></div>` : html`<p class="muted">No data in this window yet.</p>`}
  </figure>`;
}
