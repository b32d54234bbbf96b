// The sites: each registered gateway, when it was last heard of, and the devices it reports.
import { api } from '../common/api.js';
import { href } from '../common/router.js';
import { Badge, Labels, Loaded, Table, Time, html, useLoad } from '../common/ui.js';

export function GatewaysPage() {
  const state = useLoad(() => api('/api/v1/gateways'), [], 10000);
  return html`<h1>Gateways</h1>
    <${Loaded} state=${state}>
      ${({ gateways }) => html`<${Table}
        label="Gateways"
        rows=${gateways}
        rowKey=${(g) => g.name}
        empty="No gateway has registered: an admin makes a registration token (airlock gateways token)."
        columns=${[
          ['Gateway', (g) => html`<a href=${href(`/gateways/${g.name}`)}>${g.name}</a>`],
          ['Labels', (g) => html`<${Labels} labels=${g.labels} />`],
          ['Devices', (g) => g.devices],
          ['Last seen', (g) => html`<${Time} at=${g.last_seen} />`],
          ['Registered', (g) => html`<${Time} at=${g.registered_at} />`],
        ]}
      />`}
    <//>`;
}

export function GatewayPage({ name }) {
  const state = useLoad(() => api(`/api/v1/gateways/${encodeURIComponent(name)}/inventory`), [name], 10000);
  return html`<p><a href=${href('/gateways')}>Gateways</a> /</p>
    <h1>${name}</h1>
    <${Loaded} state=${state}>
      ${(inventory) => html`<p class="muted">Inventory reported <${Time} at=${inventory.reported_at} /></p>
        <${Table}
          label="Devices"
          rows=${inventory.devices ?? []}
          rowKey=${(d) => d.id}
          empty="The gateway reports no devices."
          columns=${[
            ['Device', (d) => d.id],
            ['Labels', (d) => html`<${Labels} labels=${d.labels} />`],
            ['Platform', (d) => d.platform ?? html`<span class="muted">not reported yet</span>`],
            ['Models', (d) => (d.models ?? []).map((x) => html`<span class="label">${x.model} ${x.active_version || ''}</span>`)],
            ['Online', (d) => html`<${Badge} state=${d.online ? 'online' : 'offline'} />`],
            ['Last seen', (d) => html`<${Time} at=${d.last_seen} />`],
          ]}
        />`}
    <//>`;
}
