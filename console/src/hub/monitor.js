// Monitoring of one model, per version: throughput, errors, latency percentiles and drift over
// time as charts, the window's summary, and its drift alerts highlighted.
import { useMemo } from 'preact/hooks';

import { api, query } from '../common/api.js';
import { Chart } from '../common/chart.js';
import { href, navigate } from '../common/router.js';
import { Badge, Loaded, Table, Time, html, useLoad } from '../common/ui.js';

// The windows offered, with a step that gives each chart about 60 points.
const windows = [
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

function Charts({ data }) {
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

function Summary({ versions }) {
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

function Alerts({ alerts }) {
  if (!alerts.length) {
    return html`<p class="muted">No drift alerts in this window.</p>`;
  }
  return html`<div class="table-wrap" role="region" aria-label="Drift alerts" tabindex="0">
    <table>
      <thead><tr><th>When</th><th>Site</th><th>Device</th><th>Version</th><th>Feature</th><th>PSI</th></tr></thead>
      <tbody>
        ${alerts.map(
          (a) => html`<tr class="alert-row" key=${a.id}>
            <td><${Time} at=${new Date(a.at_ms).toISOString()} /></td><td>${a.site}</td><td><code>${a.device}</code></td>
            <td>${a.version}</td><td>${a.feature}</td><td>${fixed(a.psi, 3)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

export function MonitorPage({ model, params }) {
  const models = useLoad(() => api('/api/v1/models'), []);
  const since = params.get('since') ?? '1h';
  const site = params.get('site') ?? '';
  const step = (windows.find(([w]) => w === since) ?? windows[1])[1];
  const state = useLoad(
    () => (model ? api(`/api/v1/monitor/${encodeURIComponent(model)}${query({ since, step, site })}`) : Promise.resolve(null)),
    [model, since, site],
    10000,
  );
  const go = (nextModel, nextSince) => navigate(`/monitor/${nextModel}${query({ since: nextSince, site })}`);
  return html`<h1>Monitoring</h1>
    <div class="row">
      <label for="monitor-model">Model</label>
      <select id="monitor-model" value=${model ?? ''} onChange=${(e) => go(e.currentTarget.value, since)}>
        <option value="">choose a model</option>
        ${(models.data?.models ?? []).map((x) => html`<option value=${x.name}>${x.name}</option>`)}
      </select>
      <label for="monitor-window">Window</label>
      <select id="monitor-window" value=${since} onChange=${(e) => go(model ?? '', e.currentTarget.value)}>
        ${windows.map(([w]) => html`<option value=${w}>last ${w}</option>`)}
      </select>
      ${site && html`<span class="label">site=${site}</span>`}
    </div>
    ${model
      ? html`<${Loaded} state=${state}>
          ${(data) => data && html`
            ${data.alerts.length > 0 && html`<p class="problem" role="status"><strong>${data.alerts.length} drift alert(s)</strong> in the last ${since}: the inputs no longer look like the training data. They are listed below.</p>`}
            <h2>Over time</h2>
            <${Charts} data=${data} />
            <h2>Summary</h2>
            <${Summary} versions=${data.versions} />
            <h2 id="alerts">Drift alerts</h2>
            <${Alerts} alerts=${data.alerts} />
            ${data.truncated && html`<p class="notice">The window held more reports than the hub sums at once: the newest are shown. Choose a shorter window.</p>`}
            <p class="hint"><a href=${href(`/deployments?model=${encodeURIComponent(model)}`)}>Deployments of ${model}</a></p>`}
        <//>`
      : html`<p class="muted">Choose a model to see how its versions do.</p>`}`;
}
