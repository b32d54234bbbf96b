// Who signed a document, in the words of the hub's root: each key id with the roles it holds.
import { api } from '../common/api.js';

let roots;

// The newest root's roles, {name: {keyids, threshold}}, fetched once per page load.
export async function rootRoles() {
  if (!roots) {
    roots = api('/api/v1/roots').then((r) => r.roots.at(-1)?.signed?.roles ?? {});
    roots.catch(() => {
      roots = undefined;
    });
  }
  return roots;
}

// "publisher", "release-manager, root", or "not in the root" for one key id.
export function rolesOf(roles, keyid) {
  const names = Object.entries(roles)
    .filter(([, role]) => role.keyids?.includes(keyid))
    .map(([name]) => name);
  return names.length ? names.join(', ') : 'not in the root';
}
