// The daemon's public REST API, as the signed-in user. Every action the consoles offer goes
// through here: the same routes, tokens and roles as the CLI (docs/console.md).
import { signOut, token } from './session.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// What an error answer says, in the words of its `detail` (the OCI error shape both daemons use).
async function errorOf(response) {
  let code = `HTTP ${response.status}`;
  let message = response.statusText || code;
  try {
    const body = await response.json();
    const first = body.errors?.[0];
    if (first) {
      code = first.code ?? code;
      message = first.detail || first.message || message;
    }
  } catch {
    // Not JSON: the status says enough.
  }
  return new ApiError(response.status, code, message);
}

// fetch for path ("/api/v1/…"); resolves to the parsed JSON answer (null for 204), or rejects with
// an ApiError. A 401 signs the user out: the token was revoked or has expired.
export async function api(path, { method = 'GET', body, bearer } = {}) {
  const headers = { Accept: 'application/json' };
  const credential = bearer ?? token();
  if (credential) {
    headers.Authorization = `Bearer ${credential}`;
  }
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'NETWORK', `cannot reach the server (${e.message})`);
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && bearer === undefined) {
      signOut(error.message);
    }
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') {
      q.set(k, String(v));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
