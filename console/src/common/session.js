// Who is signed in. The token is kept in sessionStorage: it goes when the tab is closed, and other
// sites cannot read it. The role comes from GET /api/v1/whoami, which both daemons answer.
import { signal } from './signal.js';

const KEY = 'airlock.console.token';

// {name, role} of the signed-in user, or null; and why the last session ended, if it did.
export const user = signal(null);
export const signedOutBecause = signal('');

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signIn(secret, who) {
  sessionStorage.setItem(KEY, secret);
  signedOutBecause.set('');
  user.set(who);
}

export function signOut(reason = '') {
  sessionStorage.removeItem(KEY);
  signedOutBecause.set(reason);
  user.set(null);
}
