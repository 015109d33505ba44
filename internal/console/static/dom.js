import { APIError } from './api.js';
import { t } from './i18n.js';

// el builds an element: attrs are properties (className, href…) or
// dataset entries (data-x); children are nodes or text. Text always goes in
// as text, never as HTML, so nothing from the API can run as script.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export const $ = id => document.getElementById(id);

export function show(node, on = true) { node.hidden = !on; }

export function setText(id, text) { $(id).textContent = text; }

// kv fills a <dl> with [label, value] pairs.
export function kv(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

// flash shows a message above the page until the next navigation.
export function flash(text, kind = 'error') {
  const f = $('flash');
  f.textContent = text;
  f.className = 'flash ' + kind;
  show(f);
}

// errorText is what to tell the operator about a failed call.
export function errorText(e) {
  if (e instanceof APIError) return `${e.status} ${e.code}: ${e.message}`;
  return t('err.network', { msg: e.message });
}
