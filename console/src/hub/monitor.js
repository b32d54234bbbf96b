// Monitoring of one model, per version, across every site: throughput, errors, latency
// percentiles and drift over time as charts, the window's summary, and its drift alerts.
import { api, query } from '../common/api.js';
import { MonitorControls, MonitorView, windowOf } from '../common/monitor.js';
import { href, navigate } from '../common/router.js';
import { Loaded, html, useLoad } from '../common/ui.js';

export function MonitorPage({ model, params }) {
  const models = useLoad(() => api('/api/v1/models'), []);
  const { since, step } = windowOf(params);
  const site = params.get('site') ?? '';
  const state = useLoad(
    () => (model ? api(`/api/v1/monitor/${encodeURIComponent(model)}${query({ since, step, site })}`) : Promise.resolve(null)),
    [model, since, site],
    10000,
  );
  const go = (nextModel, nextSince) => navigate(`/monitor/${nextModel}${query({ since: nextSince, site })}`);
  return html`<h1>Monitoring</h1>
    <${MonitorControls} models=${(models.data?.models ?? []).map((x) => x.name)} model=${model} since=${since} go=${go} />
    ${site && html`<p><span class="label">site=${site}</span></p>`}
    ${model
      ? html`<${Loaded} state=${state}>
          ${(data) => data && html`
            <${MonitorView} data=${data} since=${since} />
            ${data.truncated && html`<p class="notice">The window held more reports than the hub sums at once: the newest are shown. Choose a shorter window.</p>`}
            <p class="hint"><a href=${href(`/deployments?model=${encodeURIComponent(model)}`)}>Deployments of ${model}</a></p>`}
        <//>`
      : html`<p class="muted">Choose a model to see how its versions do.</p>`}`;
}
