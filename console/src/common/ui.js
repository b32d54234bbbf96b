// The pieces both consoles are built from: the page frame and sign-in, tables, state badges,
// times, sizes, and a hook that loads (and keeps reloading) what a page shows.
import { html } from 'htm/preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

import { api } from './api.js';
import { href, useRoute } from './router.js';
import { signIn, signOut, signedOutBecause, user } from './session.js';
import { useSignal } from './signal.js';

export { html };

// Loads load() now and every `every` ms while the page shows (0: once). Returns
// {data, error, loading, reload}; a failed reload keeps the last data and shows the error beside it.
export function useLoad(load, deps, every = 0) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const latest = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++latest.current;
    try {
      const data = await load();
      if (mine === latest.current) {
        setState({ data, error: null, loading: false });
      }
    } catch (error) {
      if (mine === latest.current) {
        setState((s) => ({ data: s.data, error, loading: false }));
      }
    }
  }, deps);
  useEffect(() => {
    setState({ data: undefined, error: null, loading: true });
    reload();
    if (!every) {
      return undefined;
    }
    const timer = setInterval(reload, every);
    return () => clearInterval(timer);
  }, [reload, every]);
  return { ...state, reload };
}

// What a page shows while it loads, when loading failed, or its content.
export function Loaded({ state, children }) {
  if (state.data === undefined) {
    return state.error ? html`<${Problem} error=${state.error} />` : html`<p class="muted" role="status">Loading…</p>`;
  }
  return html`${state.error && html`<${Problem} error=${state.error} />`}${children(state.data)}`;
}

export function Problem({ error }) {
  if (!error) {
    return null;
  }
  const text = typeof error === 'string' ? error : error.message;
  return html`<p class="problem" role="alert">${text}</p>`;
}

// A state as a coloured badge: green for what is done and well, amber for waiting, red for failed.
const tones = {
  good: /^(complete|done|available|approved|offer-approved|enrolled|online|ok|running|active|serving|healthy|open)$/,
  bad: /^(failed|rejected|cancelled|aborted|revoked|rolled-back|rolling-back|error|critical|offline|unhealthy|alert|expired)$/,
  wait: /^(pending|delivering|offered|ready|granted|downloading|awaiting-approval|held-offer|paused|shadowing|directed|activating|health-window|warning|watch)$/,
};

export function Badge({ state }) {
  const tone = Object.keys(tones).find((t) => tones[t].test(state ?? '')) ?? 'plain';
  return html`<span class=${`badge ${tone}`}>${state ?? '–'}</span>`;
}

export function Time({ at }) {
  if (!at) {
    return html`<span class="muted">–</span>`;
  }
  const date = new Date(at);
  return html`<time datetime=${at} title=${date.toLocaleString()}>${ago(date)}</time>`;
}

export function ago(date) {
  const s = Math.round((Date.now() - date.getTime()) / 1000);
  if (Math.abs(s) < 45) {
    return s >= 0 ? 'just now' : 'in a moment';
  }
  const units = [
    ['d', 86400],
    ['h', 3600],
    ['min', 60],
  ];
  for (const [unit, size] of units) {
    if (Math.abs(s) >= size) {
      const n = Math.round(Math.abs(s) / size);
      return s >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`;
    }
  }
  return `${s} s ago`;
}

export function bytes(n) {
  if (n === undefined || n === null) {
    return '–';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function Digest({ value }) {
  if (!value) {
    return html`<span class="muted">–</span>`;
  }
  return html`<code title=${value}>${value.replace(/^sha256:/, '').slice(0, 12)}</code>`;
}

// A table of rows; columns are [heading, row => cell]. `empty` is what an empty table says.
export function Table({ columns, rows, empty, label, rowKey }) {
  if (!rows.length) {
    return html`<p class="muted">${empty}</p>`;
  }
  return html`<div class="table-wrap" role="region" aria-label=${label} tabindex="0">
    <table>
      <thead><tr>${columns.map(([h]) => html`<th scope="col">${h}</th>`)}</tr></thead>
      <tbody>
        ${rows.map(
          (row, i) => html`<tr key=${rowKey ? rowKey(row) : i}>${columns.map(([, cell]) => html`<td>${cell(row)}</td>`)}</tr>`,
        )}
      </tbody>
    </table>
  </div>`;
}

// A button that runs an action, shows that it is busy, and reports the action's error beside it.
export function Action({ run, children, kind = '', confirm, disabled }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const onClick = async () => {
    if (confirm && !window.confirm(confirm)) {
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await run();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="action">
    <button type="button" class=${kind} onClick=${onClick} disabled=${busy || disabled} aria-busy=${busy}>${children}</button>
    <${Problem} error=${error} />
  </span>`;
}

// "line=3, cell=a" or one label=value a line → {line: "3", cell: "a"}; throws, naming the part,
// on one that is not label=value.
export function parseLabels(text) {
  const out = {};
  for (const raw of text.split(/[\n,]/)) {
    const item = raw.trim();
    if (!item) {
      continue;
    }
    const eq = item.indexOf('=');
    if (eq <= 0) {
      throw new Error(`"${item}" is not label=value`);
    }
    out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return out;
}

// The device states of a rollout (docs/device-states.md), in the order a device goes through them.
const deviceStates = ['pending', 'shadowing', 'directed', 'activating', 'health-window', 'done', 'failed', 'rolling-back', 'rolled-back'];

// A rollout's device counts ({pending: 2, done: 1, …, offline}) as badges with numbers.
export function DeviceCounts({ counts }) {
  const shown = deviceStates.filter((s) => counts?.[s]);
  if (!shown.length) {
    return html`<span class="muted">no devices</span>`;
  }
  return html`<span class="row">${shown.map((s) => html`<span><${Badge} state=${s} /> ${counts[s]}</span>`)}${counts.offline ? html`<span class="muted">(${counts.offline} offline)</span>` : ''}</span>`;
}

export function KeyValues({ rows }) {
  return html`<dl class="kv">
    ${rows.filter(Boolean).map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
  </dl>`;
}

export function Labels({ labels }) {
  const entries = Object.entries(labels ?? {});
  if (!entries.length) {
    return html`<span class="muted">none</span>`;
  }
  return html`<span class="labels">${entries.map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}</span>`;
}

function SignIn({ product, tokenHint }) {
  const reason = useSignal(signedOutBecause);
  const [secret, setSecret] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const who = await api('/api/v1/whoami', { bearer: secret.trim() });
      signIn(secret.trim(), who);
    } catch (err) {
      setError(err.status === 401 ? `${err.message}: check the token, or ask for a new one.` : err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="signin" id="main">
    <form onSubmit=${submit} aria-labelledby="signin-title">
      <h1 id="signin-title">${product}</h1>
      ${reason && html`<p class="notice" role="status">Signed out: ${reason}</p>`}
      <label for="token">API token</label>
      <input id="token" type="password" autocomplete="off" required value=${secret}
        onInput=${(e) => setSecret(e.currentTarget.value)} autofocus />
      <p class="hint">${tokenHint}</p>
      <button type="submit" class="primary" disabled=${busy}>Sign in</button>
      <${Problem} error=${error} />
    </form>
  </main>`;
}

// The frame of a console: sign-in until there is a user, then a navigation bar of `sections`
// ([path, title, visible(user)]) and the page `render(route, user)` gives.
export function Console({ product, tokenHint, sections, render }) {
  const who = useSignal(user);
  const route = useRoute();
  useEffect(() => {
    document.title = product;
  }, [product]);
  if (!who) {
    return html`<${SignIn} product=${product} tokenHint=${tokenHint} />`;
  }
  const visible = sections.filter(([, , shown]) => !shown || shown(who));
  const active = `/${route.parts[0] ?? ''}`;
  return html`<a class="skip" href="#main" onClick=${(e) => {
    e.preventDefault();
    document.getElementById('main')?.focus();
  }}>Skip to content</a>
    <header class="top">
      <span class="product">${product}</span>
      <nav aria-label="Sections">
        ${visible.map(
          ([path, title]) => html`<a href=${href(path)} aria-current=${active === path ? 'page' : undefined}>${title}</a>`,
        )}
      </nav>
      <span class="who">
        <span title="your token's name and role">${who.name} · ${who.role}</span>
        <button type="button" onClick=${() => signOut()}>Sign out</button>
      </span>
    </header>
    <main id="main" tabindex="-1">${render(route, who)}</main>`;
}
