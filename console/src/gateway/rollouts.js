// The site's rollouts: each deployment's waves, where each device is, and pause / resume / cancel.
import { api } from '../common/api.js';
import { href } from '../common/router.js';
import { Action, Badge, DeviceCounts, KeyValues, Labels, Loaded, Table, Time, html, useLoad } from '../common/ui.js';

export function RolloutsPage() {
  const state = useLoad(() => api('/api/v1/rollouts'), [], 3000);
  return html`<h1>Rollouts</h1>
    <${Loaded} state=${state}>
      ${({ rollouts }) => html`<${Table}
        label="Rollouts"
        rows=${rollouts}
        rowKey=${(r) => r.deployment}
        empty="No rollouts: one starts when a delivered package is approved."
        columns=${[
          ['Deployment', (r) => html`<a href=${href(`/rollouts/${r.deployment}`)}>${r.deployment}</a>`],
          ['Model', (r) => `${r.model} ${r.target?.version ?? ''}`],
          ['State', (r) => html`<${Badge} state=${r.state} />`],
          ['Wave', (r) => `${r.wave} of ${r.waves}`],
          ['Devices', (r) => html`${r.devices.total}: <${DeviceCounts} counts=${r.devices} />`],
          ['Updated', (r) => html`<${Time} at=${r.updated_at} />`],
        ]}
      />`}
    <//>`;
}

export function RolloutPage({ id, who }) {
  const state = useLoad(() => api(`/api/v1/rollouts/${encodeURIComponent(id)}`), [id], 2000);
  const command = (verb) => async () => {
    await api(`/api/v1/rollouts/${encodeURIComponent(id)}/${verb}`, { method: 'POST', body: {} });
    await state.reload();
  };
  return html`<p><a href=${href('/rollouts')}>Rollouts</a> /</p>
    <${Loaded} state=${state}>
      ${(r) => html`<div class="spread">
          <h1>${r.model} ${r.target?.version} <${Badge} state=${r.state} /></h1>
          ${who.role === 'operator' &&
          (r.state === 'running' || r.state === 'paused') &&
          html`<span class="row">
            ${r.state === 'running' ? html`<${Action} run=${command('pause')}>Pause</${Action}>` : html`<${Action} run=${command('resume')}>Resume</${Action}>`}
            <${Action} kind="danger" confirm="Cancel this rollout? Devices not yet updated stay on what they serve." run=${command('cancel')}>Cancel</${Action}>
          </span>`}
        </div>
        <${KeyValues}
          rows=${[
            ['Deployment', r.deployment],
            ['Devices', html`<${Labels} labels=${r.plan?.selector} />`],
            ['Wave', `${r.wave} of ${r.waves}`],
            ['Failures', `${r.failures} (stops at ${r.failure_limit})`],
            r.reason && ['Why', r.reason],
            ['Started', html`<${Time} at=${r.created_at} />`],
          ]}
        />
        <h2>Waves</h2>
        <${Table}
          label="Waves"
          rows=${r.by_wave.map((c, i) => ({ ...c, wave: i + 1 }))}
          columns=${[
            ['Wave', (w) => w.wave],
            ['Devices', (w) => w.total],
            ['By state', (w) => html`<${DeviceCounts} counts=${w} />`],
          ]}
        />
        <h2>Devices</h2>
        <${Table}
          label="Devices in the rollout"
          rows=${r.by_device ?? []}
          rowKey=${(d) => d.id}
          empty="No device matches."
          columns=${[
            ['Device', (d) => html`<code>${d.id}</code>`],
            ['Wave', (d) => d.wave],
            ['Status', (d) => html`<${Badge} state=${d.status} />`],
            ['Online', (d) => html`<${Badge} state=${d.online ? 'online' : 'offline'} />`],
            ['Previous', (d) => d.previous?.version ?? '–'],
            ['Health until', (d) => (d.health_until ? html`<${Time} at=${d.health_until} />` : '–')],
            ['Why', (d) => d.reason ?? ''],
          ]}
        />`}
    <//>`;
}
