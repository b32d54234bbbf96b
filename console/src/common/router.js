// Hash routes ("#/models/vibration-anomaly"): the daemon serves one page, links work offline and
// with the browser's back button, and nothing in the URL's path reaches the server.
import { signal, useSignal } from './signal.js';

const current = signal(parse());

function parse() {
  const hash = decodeURI(location.hash.replace(/^#/, '')) || '/';
  const [path, search = ''] = hash.split('?');
  return { path, parts: path.split('/').filter(Boolean), params: new URLSearchParams(search) };
}

window.addEventListener('hashchange', () => current.set(parse()));

export function useRoute() {
  return useSignal(current);
}

export function navigate(path) {
  location.hash = path;
}

export function href(path) {
  return `#${encodeURI(path)}`;
}
