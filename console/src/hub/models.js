// Models, their versions with lineage and test results, releases with their signers, channels.
import { api } from '../common/api.js';
import { href } from '../common/router.js';
import { Badge, Digest, KeyValues, Loaded, Table, Time, bytes, html, useLoad } from '../common/ui.js';
import { may } from './roles.js';
import { rolesOf, rootRoles } from './trust.js';

const m = encodeURIComponent;

export function ModelsPage() {
  const state = useLoad(() => api('/api/v1/models'), []);
  return html`<h1>Models</h1>
    <${Loaded} state=${state}>
      ${({ models }) => html`<${Table}
        label="Models"
        rows=${models}
        rowKey=${(r) => r.name}
        empty="No models yet: airlock push sends one (docs/registry.md)."
        columns=${[
          ['Model', (r) => html`<a href=${href(`/models/${r.name}`)}>${r.name}</a>`],
          ['Description', (r) => r.description || html`<span class="muted">–</span>`],
          ['Latest', (r) => r.latest ?? '–'],
          ['Versions', (r) => r.versions],
          ['Channels', (r) => Object.entries(r.channels ?? {}).map(([c, v]) => html`<span class="label">${c} → ${v}</span>`)],
          ['Updated', (r) => html`<${Time} at=${r.updated_at} />`],
        ]}
      />`}
    <//>`;
}

const tabs = [
  ['versions', 'Versions'],
  ['releases', 'Releases'],
  ['channels', 'Channels'],
];

export function ModelPage({ name, tab = 'versions', who }) {
  const state = useLoad(() => api(`/api/v1/models/${m(name)}`), [name]);
  return html`<p><a href=${href('/models')}>Models</a> /</p>
    <div class="spread">
      <h1>${name}</h1>
      <span class="row">
        ${may(who, 'release-manager') && html`<a href=${href(`/deployments/new?model=${m(name)}`)}>Deploy…</a>`}
        <a href=${href(`/monitor/${name}`)}>Monitoring</a>
      </span>
    </div>
    <${Loaded} state=${state}>
      ${(model) => html`<p>${model.description}</p>
        <nav class="tabs" aria-label="Model sections">
          ${tabs.map(
            ([t, title]) => html`<a href=${href(`/models/${name}/${t}`)} aria-current=${tab === t ? 'page' : undefined}>${title}</a>`,
          )}
        </nav>
        ${tab === 'releases'
          ? html`<${Releases} name=${name} />`
          : tab === 'channels'
            ? html`<${Channels} name=${name} channels=${Object.keys(model.channels ?? {})} />`
            : html`<${Versions} versions=${model.versions} />`}`}
    <//>`;
}

function Metrics({ metrics }) {
  const entries = Object.entries(metrics ?? {});
  if (!entries.length) {
    return html`<span class="muted">none recorded</span>`;
  }
  return html`<dl class="kv">${entries.map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === 'number' ? +v.toFixed(4) : String(v)}</dd>`)}</dl>`;
}

function Versions({ versions }) {
  if (!versions.length) {
    return html`<p class="muted">No versions.</p>`;
  }
  return html`<h2>Versions</h2>
    ${versions.map(
      (v) => html`<section class="panel" aria-label=${`version ${v.version}`} key=${v.version}>
        <div class="spread">
          <h3>${v.version} ${v.channels?.map((c) => html` <span class="badge good">${c}</span>`)}</h3>
          <span class="muted">pushed by ${v.pushed_by} <${Time} at=${v.pushed_at} /></span>
        </div>
        <div class="grid">
          <${KeyValues}
            rows=${[
              ['Index', html`<${Digest} value=${v.index_digest} /> (${bytes(v.index_size)})`],
              ['Platforms', v.platforms?.join(', ') || '–'],
              ['Release', v.release ? html`counter ${v.release.release_counter}, ${v.release.signatures} signature(s)` : html`<span class="muted">not released</span>`],
              ...Object.entries(v.lineage ?? {})
                .filter(([k]) => k !== 'metrics')
                .map(([k, val]) => [k.replaceAll('_', ' '), typeof val === 'object' ? JSON.stringify(val) : String(val)]),
            ]}
          />
          <div><strong>Test results</strong><${Metrics} metrics=${v.lineage?.metrics} /></div>
        </div>
      </section>`,
    )}`;
}

function Releases({ name }) {
  const state = useLoad(async () => {
    const [{ releases }, roles] = await Promise.all([api(`/api/v1/models/${m(name)}/releases`), rootRoles()]);
    const signed = await Promise.all(releases.map((r) => api(`/api/v1/models/${m(name)}/releases/${m(r.version)}`)));
    return releases.map((r, i) => ({ ...r, document: signed[i], roles }));
  }, [name]);
  return html`<h2>Releases</h2>
    <${Loaded} state=${state}>
      ${(releases) => html`<${Table}
        label="Releases"
        rows=${releases}
        rowKey=${(r) => r.id}
        empty="No releases: airlock sign, then airlock push (docs/promotion.md)."
        columns=${[
          ['Version', (r) => r.version],
          ['Counter', (r) => r.release_counter],
          ['Signed by', (r) => html`<ul class="plain">${r.document.signatures.map((s) => html`<li><code title=${s.keyid}>${s.keyid.slice(0, 12)}</code> (${rolesOf(r.roles, s.keyid)})</li>`)}</ul>`],
          ['Expires', (r) => html`<${Time} at=${r.document.signed.expires} />`],
          ['Uploaded', (r) => html`${r.uploaded_by} <${Time} at=${r.uploaded_at} />`],
          ['Id', (r) => html`<${Digest} value=${r.id} />`],
        ]}
      />`}
    <//>`;
}

function Channels({ name, channels }) {
  const state = useLoad(async () => {
    const [docs, roles] = await Promise.all([
      Promise.all(channels.map((c) => api(`/api/v1/models/${m(name)}/channels/${m(c)}`))),
      rootRoles(),
    ]);
    return { docs, roles };
  }, [name, channels.join()]);
  if (!channels.length) {
    return html`<p class="muted">No channel holds a release of this model yet: airlock promote makes one (docs/promotion.md).</p>`;
  }
  return html`<${Loaded} state=${state}>
    ${({ docs, roles }) => docs.map((c) => html`<${Channel} channel=${c} roles=${roles} key=${c.channel} />`)}
  <//>`;
}

function Signers({ document, roles }) {
  return document.signatures.map((s) => html`<span class="label" title=${s.keyid}>${s.keyid.slice(0, 12)} · ${rolesOf(roles, s.keyid)}</span>`);
}

function Channel({ channel, roles }) {
  const current = channel.current;
  const releases = current?.document?.signed?.releases ?? [];
  return html`<section class="panel" aria-label=${`channel ${channel.channel}`}>
    <h2>${channel.channel}</h2>
    <${KeyValues}
      rows=${[
        ['Current', current ? html`version ${current.version}: <strong>${current.release}</strong>, made current by ${current.updated_by} <${Time} at=${current.updated_at} />` : html`<span class="muted">none</span>`],
        ['Rollback targets', releases.slice(1).map((r) => r.version).join(', ') || 'none'],
        ['Signed by', current ? html`<${Signers} document=${current.document} roles=${roles} />` : '–'],
        ['Signing role', `${channel.signing_role}, ${channel.threshold} signature(s) needed`],
        ['Expires', current ? html`<${Time} at=${current.document.signed.expires} />` : '–'],
        channel.pending && [
          'Pending proposal',
          html`version ${channel.pending.version} → ${channel.pending.release}, ${channel.pending.signatures} of ${channel.threshold} signatures, by ${channel.pending.proposed_by} <${Time} at=${channel.pending.proposed_at} /> <${Badge} state="pending" />`,
        ],
      ]}
    />
    ${channel.history?.length > 0 &&
    html`<h3>History</h3>
      <${Table}
        label=${`history of ${channel.channel}`}
        rows=${channel.history}
        columns=${[
          ['Version', (h) => h.version],
          ['Release', (h) => h.current_release],
          ['Signatures', (h) => h.signatures],
          ['Made current', (h) => html`${h.updated_by} <${Time} at=${h.updated_at} />`],
        ]}
      />`}
  </section>`;
}
