// The audit log (admin): who did what, newest first, a page at a time.
import { useState } from 'preact/hooks';

import { api, query } from '../common/api.js';
import { Badge, Loaded, Table, Time, html, useLoad } from '../common/ui.js';

export function AuditPage() {
  const [before, setBefore] = useState([]);
  const state = useLoad(() => api(`/api/v1/audit${query({ limit: 50, before: before.at(-1) })}`), [before.join()]);
  return html`<h1>Audit log</h1>
    <${Loaded} state=${state}>
      ${(page) => html`<${Table}
          label="Audit log"
          rows=${page.entries}
          rowKey=${(e) => e.id}
          empty="Nothing recorded."
          columns=${[
            ['When', (e) => html`<${Time} at=${e.time} />`],
            ['Who', (e) => `${e.token || 'anonymous'} (${e.role})`],
            ['Action', (e) => e.action],
            ['Target', (e) => e.target],
            ['Result', (e) => html`<${Badge} state=${e.result === 'ok' ? 'ok' : 'error'} /> ${e.reason}`],
            ['From', (e) => e.remote],
          ]}
        />
        <div class="row" style="margin-top:0.5rem">
          ${before.length > 0 && html`<button type="button" onClick=${() => setBefore(before.slice(0, -1))}>Newer</button>`}
          ${page.entries.length > 0 && page.next && html`<button type="button" onClick=${() => setBefore([...before, page.entries.at(-1).id])}>Older</button>`}
        </div>`}
    <//>`;
}
