// The admin API, as the operator's browser calls it. The token lives in
// this tab's sessionStorage (and in memory): never in a cookie, so the
// browser never attaches it to a request on its own and a forged
// cross-site request arrives without it (CSRF); never in a URL, so no
// history, log or Referer carries it.

const KEY = 'giftd.admin-token';
let token = sessionStorage.getItem(KEY) || '';
const listeners = [];

export function signedIn() { return token !== ''; }

export function signOut() {
  token = '';
  sessionStorage.removeItem(KEY);
}

// onUnauthorized registers fn, called when the API refuses the token.
export function onUnauthorized(fn) { listeners.push(fn); }

// APIError is an answer other than 2xx: status, the API's code and message.
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body, tok) {
  const headers = { 'Authorization': 'Bearer ' + tok, 'Accept': 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch { /* not JSON: data stays null */ }
  if (!res.ok) {
    throw new APIError(res.status, data?.error?.code || 'http_' + res.status, data?.error?.message || res.statusText);
  }
  return data;
}

// signIn checks tok against the API (the stats route, cheap and behind the
// token) and keeps it only if the API takes it.
export async function signIn(tok) {
  await call('GET', '/admin/v1/stats', undefined, tok);
  token = tok;
  sessionStorage.setItem(KEY, tok);
}

// api calls the admin API with the token; a 401 signs out.
export async function api(method, path, body) {
  try {
    return await call(method, path, body, token);
  } catch (e) {
    if (e instanceof APIError && e.status === 401) {
      signOut();
      for (const fn of listeners) fn(e);
    }
    throw e;
  }
}

// newKey makes an idempotency key for one operator action:
// console-<yyyymmdd>-<16 random hex digits>. (crypto.getRandomValues, not
// randomUUID: the admin listener may be plain HTTP on a private address,
// where randomUUID does not exist.)
export function newKey(prefix = 'console') {
  const b = crypto.getRandomValues(new Uint8Array(8));
  const hex = Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
  const d = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  return `${prefix}-${d}-${hex}`;
}

export const enc = encodeURIComponent;
