// What both consoles show of a model's monitoring (the hub's for every site, the gateway's for its
// own): charts over time, the summary per version, the drift alerts.
import { useMemo } from 'preact/hooks';

import { Chart } from './chart.js';
import { Badge, Table, Time, html } from './ui.js';

// The windows offered, with a step that gives each chart about 60 points.
export const windows = [
  ['15m', '15s'],
  ['1h', '1m'],
  ['6h', '6m'],
  ['24h', '24m'],
  ['7d', '3h'],
];
const PSI_ALERT = 0.25; // monitor/drift.hpp's default alert level

function fixed(v, digits = 2) {
  return v === null || v === undefined ? '–' : (+v).toFixed(digits);
}

// The series' points as chart columns: x (Unix seconds) and, per version, the values of pick.
function columns(points, versions, pick) {
  const times = [...new Set(points.map((p) => p.t_ms))].sort((a, b) => a - b);
  const at = new Map(points.map((p) => [`${p.t_ms}/${p.version}`, p]));
  return {
    x: times.map((t) => t / 1000),
    series: versions.map((v) => [v, times.map((t) => {
      const p = at.get(`${t}/${v}`);
      return p ? pick(p) : null;
    })]),
  };
}

export function Charts({ data }) {
  const charts = useMemo(() => {
    const points = data.series?.points ?? [];
    const versions = [...new Set(points.map((p) => p.version))];
    const of = (pick) => columns(points, versions, pick);
    return [
      ['Throughput (requests/s)', of((p) => p.throughput_rps), ''],
      ['Errors', of((p) => p.errors), ''],
      ['Latency p50 (ms)', of((p) => p.latency_ms.p50), ' ms'],
      ['Latency p95 (ms)', of((p) => p.latency_ms.p95), ' ms'],
      ['Latency p99 (ms)', of((p) => p.latency_ms.p99), ' ms'],
      ['Drift: worst PSI of any feature', of((p) => p.psi_max), '', PSI_ALERT],
    ];
  }, [data]);
  return html`<div class="grid charts">
    ${charts.map(([title, { x, series }, unit, threshold]) => html`<${Chart} key=${title} title=${title} x=${x} series=${series} unit=${unit} threshold=${threshold} />`)}
  </div>`;
}

export function Summary({ versions }) {
  return html`<${Table}
    label="Summary per version"
    rows=${versions}
    rowKey=${(v) => v.version}
    empty="No reports in this window."
    columns=${[
      ['Version', (v) => v.version],
      ['Devices', (v) => v.devices],
      ['Requests', (v) => v.requests],
      ['Errors', (v) => `${v.errors} (${fixed(v.error_rate * 100, 1)} %)`],
      ['Throughput', (v) => `${fixed(v.throughput_rps)} /s`],
      ['Latency p50 / p95 / p99', (v) => `${fixed(v.latency_ms.p50)} / ${fixed(v.latency_ms.p95)} / ${fixed(v.latency_ms.p99)} ms`],
      ['Drift', (v) => v.drift.map((f) => html`<div><${Badge} state=${f.level} /> ${f.feature}: PSI ${fixed(f.psi_max, 3)}</div>`)],
    ]}
  />`;
}

export function Alerts({ alerts, sites = true }) {
  if (!alerts.length) {
    return html`<p class="muted">No drift alerts in this window.</p>`;
  }
  return html`<div class="table-wrap" role="region" aria-label="Drift alerts" tabindex="0">
    <table>
      <thead><tr><th>When</th>${sites && html`<th>Site</th>`}<th>Device</th><th>Version</th><th>Feature</th><th>PSI</th></tr></thead>
      <tbody>
        ${alerts.map(
          (a) => html`<tr class="alert-row" key=${a.id}>
            <td><${Time} at=${new Date(a.at_ms).toISOString()} /></td>${sites && html`<td>${a.site}</td>`}<td><code>${a.device}</code></td>
            <td>${a.version}</td><td>${a.feature}</td><td>${fixed(a.psi, 3)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

// The window and step a page asks for: ?since= among the windows offered, 1h when absent.
export function windowOf(params) {
  const since = params.get('since') ?? '1h';
  const step = (windows.find(([w]) => w === since) ?? windows[1])[1];
  return { since, step };
}

// The page body for one model's view: a banner when there are alerts, then the charts, the
// summary and the alerts.
export function MonitorView({ data, since, sites = true }) {
  return html`
    ${data.alerts.length > 0 && html`<p class="problem" role="status"><strong>${data.alerts.length} drift alert(s)</strong> in the last ${since}: the inputs no longer look like the training data. They are listed below.</p>`}
    <h2>Over time</h2>
    <${Charts} data=${data} />
    <h2>Summary</h2>
    <${Summary} versions=${data.versions} />
    <h2>Drift alerts</h2>
    <${Alerts} alerts=${data.alerts} sites=${sites} />`;
}

// The model and window a monitor page shows; go(model, since) moves to another.
export function MonitorControls({ models, model, since, go }) {
  return html`<div class="row">
    <label for="monitor-model">Model</label>
    <select id="monitor-model" value=${model ?? ''} onChange=${(e) => go(e.currentTarget.value, since)}>
      <option value="">choose a model</option>
      ${models.map((name) => html`<option value=${name}>${name}</option>`)}
    </select>
    <label for="monitor-window">Window</label>
    <select id="monitor-window" value=${since} onChange=${(e) => go(model ?? '', e.currentTarget.value)}>
      ${windows.map(([w]) => html`<option value=${w}>last ${w}</option>`)}
    </select>
  </div>`;
}
