// Deployments: the list, one deployment live (each site's delivery, its rollout's waves and device
// counts, failures), and a new one with a preview of what it reaches.
import { useState } from 'preact/hooks';

import { api, query } from '../common/api.js';
import { href, navigate } from '../common/router.js';
import { Action, Badge, DeviceCounts, KeyValues, Labels, Loaded, Problem, Table, Time, bytes, html, parseLabels, useLoad } from '../common/ui.js';
import { may } from './roles.js';

const m = encodeURIComponent;
const states = ['', 'pending', 'delivering', 'complete', 'failed', 'cancelled'];
const done = new Set(['complete', 'aborted', 'cancelled']);

// Whether a deployment can no longer be paused, resumed or cancelled: cancelled or failed, or
// complete with every gateway's rollout finished (docs/hub-api.md, "Deployments").
function ended(d) {
  if (d.state === 'cancelled' || d.state === 'failed') {
    return true;
  }
  const fleet = d.fleet ?? [];
  return d.state === 'complete' && fleet.length >= d.gateways.length && fleet.every((r) => done.has(r.state));
}

export function DeploymentsPage({ who, params }) {
  const model = params.get('model') ?? '';
  const state = params.get('state') ?? '';
  const list = useLoad(() => api(`/api/v1/deployments${query({ model, state })}`), [model, state], 5000);
  const filter = (key, value) => {
    const next = new URLSearchParams(params);
    if (value) {
      next.set(key, value);
    } else {
      next.delete(key);
    }
    navigate(`/deployments?${next}`);
  };
  return html`<div class="spread">
      <h1>Deployments</h1>
      ${may(who, 'release-manager') && html`<a href=${href('/deployments/new')} class="button">New deployment</a>`}
    </div>
    <div class="row">
      <label for="state-filter">State</label>
      <select id="state-filter" value=${state} onChange=${(e) => filter('state', e.currentTarget.value)}>
        ${states.map((s) => html`<option value=${s}>${s || 'any'}</option>`)}
      </select>
      ${model && html`<span class="label">model=${model}</span> <button type="button" onClick=${() => filter('model', '')}>All models</button>`}
    </div>
    <${Loaded} state=${list}>
      ${({ deployments }) => html`<${Table}
        label="Deployments"
        rows=${deployments}
        rowKey=${(d) => d.id}
        empty="No deployments match."
        columns=${[
          ['Deployment', (d) => html`<a href=${href(`/deployments/${d.id}`)}>${d.id}</a>`],
          ['Model', (d) => d.model],
          ['Release', (d) => `${d.release?.version ?? '–'} (${d.channel} v${d.channel_version})`],
          ['Gateways', (d) => d.gateways.join(', ')],
          ['State', (d) => html`<${Badge} state=${d.state} />${d.paused ? html` <${Badge} state="paused" />` : ''}`],
          ['Created', (d) => html`${d.created_by} <${Time} at=${d.created_at} />`],
        ]}
      />`}
    <//>`;
}

function Progress({ done, total }) {
  const share = total > 0 ? Math.min(1, done / total) : 0;
  return html`<span class="row">
    <span class="progress" role="progressbar" aria-label="bytes delivered" aria-valuemin="0" aria-valuemax="100" aria-valuenow=${Math.round(share * 100)}>
      <span style=${`width:${share * 100}%`}></span>
    </span>
    <span class="muted">${bytes(done)} of ${bytes(total)}</span>
  </span>`;
}

function Fleet({ rollout }) {
  return html`<section class="panel" aria-label=${`rollout at ${rollout.gateway}`}>
    <div class="spread">
      <h3>${rollout.gateway}: rollout <${Badge} state=${rollout.state} /></h3>
      <span class="muted">reported <${Time} at=${rollout.reported_at} /></span>
    </div>
    <${KeyValues}
      rows=${[
        ['Wave', `${rollout.wave} of ${rollout.waves}`],
        ['Devices', html`${rollout.devices.total}: <${DeviceCounts} counts=${rollout.devices} />`],
        ['Failures', `${rollout.failures} (the rollout stops at ${rollout.failure_limit})`],
        rollout.reason && ['Why', rollout.reason],
      ]}
    />
    <${Table}
      label=${`waves at ${rollout.gateway}`}
      rows=${rollout.by_wave.map((c, i) => ({ ...c, wave: i + 1 }))}
      columns=${[
        ['Wave', (w) => (w.wave === rollout.wave && rollout.state === 'running' ? html`<strong>${w.wave} (now)</strong>` : w.wave)],
        ['Devices', (w) => w.total],
        ['By state', (w) => html`<${DeviceCounts} counts=${w} />`],
      ]}
    />
  </section>`;
}

export function DeploymentPage({ id, who }) {
  const state = useLoad(() => api(`/api/v1/deployments/${m(id)}`), [id], 2000);
  const command = (verb, body) => async () => {
    await api(`/api/v1/deployments/${m(id)}/${verb}`, { method: 'POST', body });
    await state.reload();
  };
  return html`<p><a href=${href('/deployments')}>Deployments</a> /</p>
    <${Loaded} state=${state}>
      ${(d) => html`<div class="spread">
          <h1>${d.model} ${d.release?.version} <${Badge} state=${d.state} />${d.paused ? html` <${Badge} state="paused" />` : ''}</h1>
          ${may(who, 'release-manager') &&
          !ended(d) &&
          html`<span class="row">
            ${d.paused
              ? html`<${Action} run=${command('resume', {})}>Resume</${Action}>`
              : html`<${Action} run=${command('pause', {})}>Pause</${Action}>`}
            <${Action} kind="danger" confirm=${`Cancel deployment ${d.id}? Its gateways stop their rollouts.`} run=${command('cancel', { reason: 'cancelled in the console' })}>Cancel deployment</${Action}>
          </span>`}
        </div>
        <${KeyValues}
          rows=${[
            ['Id', d.id],
            ['Channel', `${d.channel} version ${d.channel_version}`],
            ['Gateways', d.gateways.join(', ')],
            ['Devices', html`<${Labels} labels=${d.selector} />`],
            ['Waves', `${d.strategy.waves.join(', ')}; health window ${d.strategy.health_window}; stops at ${d.strategy.failure_threshold} failed; at most ${d.strategy.max_in_flight} at once`],
            ['Created', html`${d.created_by} <${Time} at=${d.created_at} />`],
          ]}
        />
        <h2>Delivery to each site</h2>
        <${Table}
          label="Deliveries"
          rows=${d.deliveries ?? []}
          rowKey=${(r) => r.gateway}
          empty="No deliveries yet: the hub's orchestrator makes one per gateway."
          columns=${[
            ['Gateway', (r) => html`<a href=${href(`/gateways/${r.gateway}`)}>${r.gateway}</a>`],
            ['State', (r) => html`<${Badge} state=${r.state} />`],
            ['Progress', (r) => html`<${Progress} done=${r.bytes_done} total=${r.bytes_total} />`],
            ['Attempts', (r) => `${r.attempt} (${r.retries} retries)`],
            ['Problem', (r) => (r.last_error ? html`<span class="problem">${r.last_error.code}: ${r.last_error.message}</span>` : '')],
            ['Updated', (r) => html`<${Time} at=${r.updated_at} />`],
          ]}
        />
        <h2>Rollout at each site</h2>
        ${d.fleet?.length
          ? d.fleet.map((r) => html`<${Fleet} rollout=${r} key=${r.gateway} />`)
          : html`<p class="muted">No gateway has reported a rollout yet (a delivered package may be waiting for the site's approval).</p>`}
        <h2>History</h2>
        <${Table}
          label="History"
          rows=${d.history}
          columns=${[
            ['When', (h) => html`<${Time} at=${h.at} />`],
            ['Who', (h) => h.actor],
            ['What', (h) => h.action],
            ['Detail', (h) => h.detail],
          ]}
        />`}
    <//>`;
}

export function NewDeploymentPage({ who, params }) {
  const models = useLoad(() => api('/api/v1/models'), []);
  const gateways = useLoad(() => api('/api/v1/gateways'), []);
  const [form, setForm] = useState({
    model: params.get('model') ?? '',
    channel: '',
    gateways: [],
    selector: '',
    waves: '1,50%,100%',
    health_window: '5m',
    failure_threshold: '10%',
  });
  const [preview, setPreview] = useState(null);
  const [error, setError] = useState(null);
  const set = (key) => (e) => {
    setForm({ ...form, [key]: e.currentTarget.value });
    setPreview(null);
  };
  const toggle = (name) => {
    const next = form.gateways.includes(name) ? form.gateways.filter((g) => g !== name) : [...form.gateways, name];
    setForm({ ...form, gateways: next });
    setPreview(null);
  };
  if (!may(who, 'release-manager')) {
    return html`<p>Deploying needs the release-manager role; your token is ${who.role}.</p>`;
  }
  const body = () => ({
    model: form.model,
    channel: form.channel,
    gateways: form.gateways,
    selector: parseLabels(form.selector),
    strategy: {
      waves: form.waves.split(',').map((w) => w.trim()).filter(Boolean),
      health_window: form.health_window,
      failure_threshold: form.failure_threshold,
    },
  });
  const run = (what) => async () => {
    setError(null);
    try {
      if (what === 'preview') {
        setPreview(await api('/api/v1/deployments/preview', { method: 'POST', body: body() }));
      } else {
        const made = await api('/api/v1/deployments', { method: 'POST', body: body() });
        navigate(`/deployments/${made.id}`);
      }
    } catch (e) {
      setError(e);
    }
  };
  const chosen = models.data?.models.find((x) => x.name === form.model);
  const channels = Object.keys(chosen?.channels ?? {});
  return html`<p><a href=${href('/deployments')}>Deployments</a> /</p>
    <h1>New deployment</h1>
    <form class="panel" onSubmit=${(e) => e.preventDefault()}>
      <label for="model">Model</label>
      <select id="model" value=${form.model} onChange=${set('model')} required>
        <option value="">choose a model</option>
        ${(models.data?.models ?? []).map((x) => html`<option value=${x.name}>${x.name}</option>`)}
      </select>
      <label for="channel">Channel</label>
      <select id="channel" value=${form.channel} onChange=${set('channel')} required>
        <option value="">choose a channel</option>
        ${channels.map((c) => html`<option value=${c}>${c} (now ${chosen.channels[c]})</option>`)}
      </select>
      ${form.model && !channels.length && html`<p class="hint">This model has no channel yet: a release manager promotes a release first (airlock promote).</p>`}
      <fieldset class="checks">
        <legend>Sites (gateways)</legend>
        ${(gateways.data?.gateways ?? []).map(
          (g) => html`<label><input type="checkbox" checked=${form.gateways.includes(g.name)} onChange=${() => toggle(g.name)} /> ${g.name} <span class="muted">${g.devices} device(s), seen <${Time} at=${g.last_seen} /></span></label>`,
        )}
        ${gateways.data?.gateways?.length === 0 && html`<p class="muted">No gateway has registered.</p>`}
      </fieldset>
      <label for="selector">Devices (labels, one label=value a line; empty: every device of the sites)</label>
      <textarea id="selector" value=${form.selector} onInput=${set('selector')} placeholder="line=3"></textarea>
      <div class="grid">
        <div>
          <label for="waves">Waves</label>
          <input id="waves" value=${form.waves} onInput=${set('waves')} />
          <p class="hint">Device counts or shares, the first being the canary: 1,50%,100%</p>
        </div>
        <div>
          <label for="health">Health window (gate between waves)</label>
          <input id="health" value=${form.health_window} onInput=${set('health_window')} />
          <p class="hint">How long each wave must stay healthy: 30s, 5m, 1h</p>
        </div>
        <div>
          <label for="failures">Failure threshold</label>
          <input id="failures" value=${form.failure_threshold} onInput=${set('failure_threshold')} />
          <p class="hint">Failed devices that stop the rollout: 2 or 10%</p>
        </div>
      </div>
      <div class="row" style="margin-top:1rem">
        <button type="button" onClick=${run('preview')}>Preview</button>
        <button type="button" class="primary" onClick=${run('create')}>Deploy</button>
      </div>
      <${Problem} error=${error} />
    </form>
    ${preview && html`<${Preview} preview=${preview} />`}`;
}

function Platforms({ platforms }) {
  const entries = Object.entries(platforms ?? {});
  return entries.length ? entries.map(([p, n]) => html`<span class="label">${p}: ${n}</span>`) : html`<span class="muted">–</span>`;
}

function Preview({ preview }) {
  const totals = preview.totals ?? {};
  return html`<section class="panel" aria-label="Preview">
    <h2>What this deployment reaches</h2>
    <p>
      ${`Release `}<strong>${preview.release?.version}</strong>${` (${preview.channel} version ${preview.channel_version}) to `}<strong>${totals.devices ?? 0} device(s)</strong>${` at ${preview.gateways?.length ?? 0} site(s), in waves of ${(totals.waves ?? []).join(' → ') || '–'}. `}
      ${totals.unsupported > 0 && html`<span class="problem">${totals.unsupported} of them have no platform this release has (${(preview.release?.platforms ?? []).join(', ')}).</span>`}
    </p>
    <${Table}
      label="Sites in the preview"
      rows=${preview.gateways ?? []}
      rowKey=${(g) => g.gateway}
      columns=${[
        ['Gateway', (g) => g.gateway],
        ['Devices matched', (g) => `${g.devices} of ${g.inventory_devices ?? 0}`],
        ['Platforms', (g) => html`<${Platforms} platforms=${g.platforms} />`],
        ['Waves', (g) => (g.waves ?? []).join(' → ') || '–'],
        ['Stops after', (g) => `${g.failure_limit} failed`],
        ['Inventory', (g) => (g.inventory_reported_at ? html`reported <${Time} at=${g.inventory_reported_at} />` : html`<span class="problem">never reported</span>`)],
      ]}
    />
  </section>`;
}
