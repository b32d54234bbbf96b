// The site's devices: labels, state, the versions they serve, whether they are online, when they
// were last heard of; and enrollment tokens for new devices (operators).
import { useState } from 'preact/hooks';

import { api } from '../common/api.js';
import { Action, Badge, Labels, Loaded, Problem, Table, Time, html, parseLabels, useLoad } from '../common/ui.js';

function Models({ models }) {
  if (!models?.length) {
    return html`<span class="muted">none</span>`;
  }
  return models.map((x) => html`<div>${x.model} ${x.active_version || html`<span class="muted">(none active)</span>`} <${Badge} state=${x.phase} /></div>`);
}

function EnrollmentTokens({ operator }) {
  const state = useLoad(() => api('/api/v1/devices/tokens'), [], 5000);
  const withdraw = (id) => async () => {
    await api(`/api/v1/devices/tokens/${id}`, { method: 'DELETE' });
    await state.reload();
  };
  return html`<h2>Enrollment tokens</h2>
    ${operator && html`<${EnrollmentToken} made=${state.reload} />`}
    <${Loaded} state=${state}>
      ${({ tokens }) => html`<${Table}
        label="Enrollment tokens"
        rows=${tokens}
        rowKey=${(t) => t.id}
        empty="No enrollment tokens have been made."
        columns=${[
          ['Token', (t) => html`<code>${t.id}…</code>`],
          ['Labels', (t) => html`<${Labels} labels=${t.labels} />`],
          ['State', (t) => html`<${Badge} state=${t.state} />${t.used_by ? html` by <code>${t.used_by}</code>` : ''}`],
          ['Made', (t) => html`<${Time} at=${t.created_at} />`],
          ['Expires', (t) => html`<${Time} at=${t.expires_at} />`],
          ...(operator
            ? [['', (t) => t.state === 'open' && html`<${Action} confirm="Withdraw this token? No device can enroll with it afterwards." run=${withdraw(t.id)}>Withdraw</${Action}>`]]
            : []),
        ]}
      />`}
    <//>`;
}

function EnrollmentToken({ made: onMade }) {
  const [labels, setLabels] = useState('');
  const [ttl, setTtl] = useState('24h');
  const [made, setMade] = useState(null);
  const [error, setError] = useState(null);
  const make = async () => {
    setError(null);
    try {
      setMade(await api('/api/v1/devices/tokens', { method: 'POST', body: { labels: parseLabels(labels), expires_in: ttl } }));
      onMade();
    } catch (e) {
      setError(e);
    }
  };
  return html`<section class="panel" aria-label="Enroll a device">
    <h3>Enroll a device</h3>
    <p class="hint">A one-time token: the device sends it with its certificate request (airlock-agent enroll --token …). Only its hash is kept here.</p>
    <div class="grid">
      <div>
        <label for="enroll-labels">Labels the device gets</label>
        <input id="enroll-labels" value=${labels} onInput=${(e) => setLabels(e.currentTarget.value)} placeholder="line=3, cell=d" />
      </div>
      <div>
        <label for="enroll-ttl">Valid for</label>
        <input id="enroll-ttl" value=${ttl} onInput=${(e) => setTtl(e.currentTarget.value)} />
      </div>
    </div>
    <div class="row" style="margin-top:0.5rem"><button type="button" class="primary" onClick=${make}>Make a token</button></div>
    <${Problem} error=${error} />
    ${made && html`<p role="status">Token (shown once), valid until <${Time} at=${made.expires_at} />: <code class="secret">${made.token}</code></p>`}
  </section>`;
}

export function DevicesPage({ who }) {
  const state = useLoad(() => api('/api/v1/devices'), [], 3000);
  const operator = who.role === 'operator';
  const revoke = (id) => async () => {
    await api(`/api/v1/devices/${id}/revoke`, { method: 'POST', body: {} });
    await state.reload();
  };
  return html`<h1>Devices</h1>
    <${Loaded} state=${state}>
      ${({ devices }) => {
        const online = devices.filter((d) => d.online && d.state !== 'revoked').length;
        return html`<div class="cards">
            <div class="card"><div class="n">${devices.filter((d) => d.state !== 'revoked').length}</div><div class="t">enrolled</div></div>
            <div class="card"><div class="n">${online}</div><div class="t">online</div></div>
            <div class="card"><div class="n">${devices.filter((d) => d.state === 'revoked').length}</div><div class="t">revoked</div></div>
          </div>
          <${Table}
            label="Devices"
            rows=${devices}
            rowKey=${(d) => d.id}
            empty="No device has enrolled yet."
            columns=${[
              ['Device', (d) => html`<code>${d.id}</code>`],
              ['Labels', (d) => html`<${Labels} labels=${d.labels} />`],
              ['State', (d) => html`<${Badge} state=${d.state} /> <${Badge} state=${d.state === 'revoked' ? 'revoked' : d.online ? 'online' : 'offline'} />`],
              ['Models', (d) => html`<${Models} models=${d.models} />`],
              ['Last contact', (d) => html`<${Time} at=${d.last_seen} />`],
              ['Certificate expires', (d) => html`<${Time} at=${d.certificate_expires} />`],
              ...(operator
                ? [['', (d) => d.state !== 'revoked' && html`<${Action} kind="danger" confirm=${`Revoke ${d.id}? It loses its certificate and its directive at once.`} run=${revoke(d.id)}>Revoke</${Action}>`]]
                : []),
            ]}
          />`;
      }}
    <//>
    <${EnrollmentTokens} operator=${operator} />`;
}
