// The site's own monitoring: what its devices reported in the last day, kept by the gateway, so
// that the shop floor sees how its models do with or without the hub.
import { api, query } from '../common/api.js';
import { MonitorControls, MonitorView, windowOf } from '../common/monitor.js';
import { navigate } from '../common/router.js';
import { Loaded, html, useLoad } from '../common/ui.js';

export function TelemetryPage({ model, params }) {
  const models = useLoad(() => api('/api/v1/monitor'), [], 30000);
  const { since, step } = windowOf(params);
  const chosen = model ?? models.data?.models?.[0];
  const state = useLoad(
    () => (chosen ? api(`/api/v1/monitor/${encodeURIComponent(chosen)}${query({ since, step })}`) : Promise.resolve(null)),
    [chosen, since],
    10000,
  );
  const go = (nextModel, nextSince) => navigate(`/telemetry/${nextModel}${query({ since: nextSince })}`);
  return html`<h1>Telemetry</h1>
    <${MonitorControls} models=${models.data?.models ?? []} model=${chosen} since=${since} go=${go} />
    <p class="hint">What this site's devices reported${models.data ? ` in the last ${models.data.kept}` : ''}, kept by the gateway since it started; the hub keeps all of it.</p>
    ${chosen
      ? html`<${Loaded} state=${state}>${(data) => data && html`<${MonitorView} data=${data} since=${since} sites=${false} />`}<//>`
      : html`<p class="muted">No device has reported yet.</p>`}`;
}
