// The approval queue: what arrived from the hub (or a bundle), signed by whom, how big, with its
// test results; an operator approves or rejects it with a comment.
import { useState } from 'preact/hooks';

import { api } from '../common/api.js';
import { href } from '../common/router.js';
import { Badge, Digest, KeyValues, Loaded, Problem, Table, Time, bytes, html, useLoad } from '../common/ui.js';

const waiting = new Set(['awaiting-approval', 'held-offer']);

export function ApprovalsPage() {
  const state = useLoad(() => api('/api/v1/approvals'), [], 3000);
  return html`<h1>Approvals</h1>
    <${Loaded} state=${state}>
      ${({ approvals }) => {
        const open = approvals.filter((a) => waiting.has(a.state));
        return html`<h2>Waiting for a decision (${open.length})</h2>
          <${List} rows=${open} empty="Nothing waits for you." />
          <h2>Decided and earlier</h2>
          <${List} rows=${approvals.filter((a) => !waiting.has(a.state))} empty="Nothing yet." />`;
      }}
    <//>`;
}

function List({ rows, empty }) {
  return html`<${Table}
    label="Approvals"
    rows=${rows}
    rowKey=${(a) => a.id}
    empty=${empty}
    columns=${[
      ['Package', (a) => html`<a href=${href(`/approvals/${a.id}`)}>${a.model} ${a.version}</a>`],
      ['State', (a) => html`<${Badge} state=${a.state} />`],
      ['From', (a) => (a.source === 'hub' ? `deployment ${a.deployment}` : a.source)],
      ['Size', (a) => bytes(a.size)],
      ['Platforms', (a) => a.platforms?.join(', ')],
      ['Decided', (a) => (a.decided_by ? html`${a.decided_by} <${Time} at=${a.decided_at} />${a.comment ? html`: “${a.comment}”` : ''}` : '–')],
      ['Updated', (a) => html`<${Time} at=${a.updated_at} />`],
    ]}
  />`;
}

function TestResults({ results }) {
  if (!results) {
    return html`<p class="muted">Test results are shown once the package has arrived.</p>`;
  }
  const metrics = Object.entries(results.metrics ?? {});
  return html`<${KeyValues}
    rows=${[
      results.training_run && ['Training run', results.training_run],
      ...metrics.map(([k, v]) => [k, typeof v === 'number' ? +v.toFixed(4) : String(v)]),
      results.sample_layers !== undefined && ['Validation samples', `${results.sample_layers} sample layer(s) the devices check before serving`],
    ]}
  />`;
}

export function ApprovalPage({ id, who }) {
  const state = useLoad(() => api(`/api/v1/approvals/${encodeURIComponent(id)}`), [id], 3000);
  const [comment, setComment] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const decide = (verb) => async () => {
    setBusy(true);
    setError(null);
    try {
      await api(`/api/v1/approvals/${encodeURIComponent(id)}/${verb}`, { method: 'POST', body: { comment } });
      await state.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<p><a href=${href('/approvals')}>Approvals</a> /</p>
    <${Loaded} state=${state}>
      ${(a) => html`<h1>${a.model} ${a.version} <${Badge} state=${a.state} /></h1>
        <div class="grid">
          <section class="panel" aria-label="What arrived">
            <h2>What arrived</h2>
            <${KeyValues}
              rows=${[
                ['From', a.source === 'hub' ? html`${a.hub}, deployment <code>${a.deployment}</code>` : a.source],
                ['Delivery', html`<${Badge} state=${a.delivery} /> ${bytes(a.bytes_done)} of ${bytes(a.size)}`],
                ['Platforms', a.platforms?.join(', ')],
                ['Received', html`<${Time} at=${a.received_at} />`],
                a.failure && ['Failure', html`<span class="problem">${a.failure}: ${a.message}</span>`],
                a.reject_reason && ['Rejected because', a.reject_reason],
              ]}
            />
          </section>
          <section class="panel" aria-label="Signed by">
            <h2>Signed by</h2>
            <${KeyValues}
              rows=${[
                ...(a.signed_by ?? []).map((s) => [html`<code title=${s.keyid}>${s.keyid.slice(0, 12)}</code>`, s.roles_in_root.length ? s.roles_in_root.join(', ') : 'not in this site’s root']),
                ['Release counter', a.release_counter],
                ['Created', html`<${Time} at=${a.release_created} />`],
                ['Expires', html`<${Time} at=${a.release_expires} />`],
                ['Index', html`<${Digest} value=${a.index_digest} />`],
              ]}
            />
          </section>
          <section class="panel" aria-label="Test results">
            <h2>Test results</h2>
            <${TestResults} results=${a.test_results} />
          </section>
        </div>
        ${a.decided_by && html`<p>Decided by <strong>${a.decided_by}</strong> <${Time} at=${a.decided_at} />${a.comment ? html`: “${a.comment}”` : ''}</p>`}
        ${waiting.has(a.state) &&
        (who.role === 'operator'
          ? html`<section class="panel" aria-label="Decide">
              <h2>Decide</h2>
              <label for="comment">Comment (kept with the decision)</label>
              <textarea id="comment" value=${comment} onInput=${(e) => setComment(e.currentTarget.value)} placeholder="line 3 checked"></textarea>
              <div class="row" style="margin-top:0.5rem">
                <button type="button" class="primary" disabled=${busy} onClick=${decide('approve')}>Approve</button>
                <button type="button" class="danger" disabled=${busy} onClick=${decide('reject')}>Reject</button>
              </div>
              <${Problem} error=${error} />
            </section>`
          : html`<p class="muted">An operator decides; your token is a ${who.role} token.</p>`)}`}
    <//>`;
}
