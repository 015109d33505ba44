// Gifts: the catalogue per platform (price per item, the receiver's share,
// active or not), and its changes: create, edit (name, price, share),
// deactivate or activate again, each after a confirmation that says what
// will change; and a gift's versions, newest first. Every change is a new
// version kept by the database (docs/economy.md#the-catalogue).
import { api, enc } from './api.js';
import { t, fmtNumber, fmtTime } from './i18n.js';
import { el, $, show, flash, errorText } from './dom.js';

let gifts = [];
let pending = null; // the change the confirmation is about: { method, path, body, what }
let editing = null; // the gift the form edits; null: a new gift
let inFlight = false;

const platformName = p => (p === 'polyv' ? 'Polyv' : 'LinkV');
const share = bp => `${(bp / 100).toFixed(2)}% (${bp})`;

export function init() {
  $('gifts-platform').addEventListener('change', () => {
    location.hash = '#/gifts?' + new URLSearchParams({ platform: $('gifts-platform').value });
  });
  $('gifts-new').addEventListener('click', () => edit(null));
  $('gift-cancel').addEventListener('click', closeEdit);
  $('gift-form').addEventListener('submit', ev => { ev.preventDefault(); next(); });
  $('gift-confirm-cancel').addEventListener('click', () => {
    show($('gift-confirm'), false);
    pending = null;
    if (!$('gift-form').hidden) return;
    closeEdit();
  });
  $('gift-confirm').addEventListener('submit', ev => { ev.preventDefault(); apply(); });
}

// #/gifts?platform=linkv&history=linkv:10620
export function open(params) {
  const p = params.get('platform');
  $('gifts-platform').value = p === 'linkv' || p === 'polyv' ? p : '';
  load();
  const h = params.get('history') || '';
  const i = h.indexOf(':');
  if (i > 0) history(h.slice(0, i), h.slice(i + 1));
  else show($('gift-history'), false);
}

async function load() {
  const p = $('gifts-platform').value;
  try {
    const page = await api('GET', '/admin/v1/gifts' + (p ? '?' + new URLSearchParams({ platform: p }) : ''));
    gifts = page.gifts;
  } catch (e) {
    flash(errorText(e));
    return;
  }
  const rows = gifts.map(g => el('tr', { className: g.active ? '' : 'inactive', 'data-gift': g.platform + ':' + g.gift_id },
    el('td', {}, platformName(g.platform)),
    el('td', {}, g.gift_id),
    el('td', {}, g.name),
    el('td', { className: 'num' }, fmtNumber(g.price)),
    el('td', { className: 'num' }, share(g.share_bp)),
    el('td', { className: g.active ? 'good' : 'bad' }, t(g.active ? 'gifts.active' : 'gifts.inactive')),
    el('td', { className: 'num' }, g.version),
    el('td', {}, fmtTime(g.updated_at)),
    el('td', { className: 'actions' },
      action('gifts.edit', 'edit', () => edit(g)),
      el('a', { href: '#/gifts?' + new URLSearchParams({ platform: $('gifts-platform').value, history: g.platform + ':' + g.gift_id }), className: 'history' }, t('gifts.history')),
      g.active ? action('gifts.deactivate', 'deactivate', () => toggle(g, false)) : action('gifts.activate', 'activate', () => toggle(g, true)))));
  $('gifts').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 9 }, t('gifts.empty')))]));
}

function action(label, name, fn) {
  const b = el('button', { type: 'button', className: 'link', 'data-act': name }, t(label));
  b.addEventListener('click', fn);
  return b;
}

function closeEdit() {
  pending = null;
  editing = null;
  show($('gift-edit'), false);
}

// edit opens the form for g, or for a new gift (g null).
function edit(g) {
  editing = g;
  pending = null;
  show($('gift-result'), false);
  $('gift-edit-title').textContent = g ? t('gifts.title.edit', { platform: platformName(g.platform), id: g.gift_id }) : t('gifts.title.new');
  $('gift-platform').value = g ? g.platform : $('gifts-platform').value || 'linkv';
  $('gift-platform').disabled = !!g;
  $('gift-id').value = g ? g.gift_id : '';
  $('gift-id').disabled = !!g;
  $('gift-name').value = g ? g.name : '';
  $('gift-price').value = g ? g.price : '';
  $('gift-share').value = g ? g.share_bp : '';
  $('gift-share').required = !!g;
  show($('gift-form'));
  show($('gift-confirm'), false);
  show($('gift-edit'));
  (g ? $('gift-name') : $('gift-id')).focus();
}

// next checks the form and opens the confirmation of what it will change.
function next() {
  const name = $('gift-name').value.trim();
  const price = Number($('gift-price').value);
  const shareRaw = $('gift-share').value.trim();
  if (!editing) {
    const platform = $('gift-platform').value, id = $('gift-id').value.trim();
    const body = { gift_id: id, name, price };
    if (shareRaw !== '') body.share_bp = Number(shareRaw);
    pending = {
      method: 'POST', path: `/admin/v1/gifts/${platform}`, body, platform, id,
      what: t('gifts.what.new', { platform: platformName(platform), id, name, price: fmtNumber(price),
        share: shareRaw === '' ? t('gifts.share.default') : share(Number(shareRaw)) }),
    };
  } else {
    const g = editing, body = {}, changes = [];
    if (name !== g.name) { body.name = name; changes.push(`${t('gifts.name')}: ${g.name} → ${name}`); }
    if (price !== g.price) { body.price = price; changes.push(`${t('gifts.price')}: ${fmtNumber(g.price)} → ${fmtNumber(price)}`); }
    const bp = Number(shareRaw);
    if (bp !== g.share_bp) { body.share_bp = bp; changes.push(`${t('gifts.sharecol')}: ${share(g.share_bp)} → ${share(bp)}`); }
    if (!changes.length) {
      $('gift-confirm-what').textContent = t('gifts.what.same');
      show($('gift-confirm'));
      $('gift-confirm-submit').hidden = true;
      return;
    }
    pending = {
      method: 'PATCH', path: `/admin/v1/gifts/${g.platform}/${enc(g.gift_id)}`, body, platform: g.platform, id: g.gift_id,
      what: t('gifts.what.edit', { platform: platformName(g.platform), id: g.gift_id, changes: changes.join('; ') }),
    };
  }
  confirm();
}

function toggle(g, on) {
  editing = g;
  show($('gift-result'), false);
  $('gift-edit-title').textContent = t(on ? 'gifts.title.activate' : 'gifts.title.deactivate', { platform: platformName(g.platform), id: g.gift_id });
  const path = `/admin/v1/gifts/${g.platform}/${enc(g.gift_id)}`;
  pending = on
    ? { method: 'PATCH', path, body: { active: true }, platform: g.platform, id: g.gift_id }
    : { method: 'POST', path: path + '/deactivate', body: {}, platform: g.platform, id: g.gift_id };
  pending.what = t(on ? 'gifts.what.activate' : 'gifts.what.deactivate', { platform: platformName(g.platform), id: g.gift_id, name: g.name });
  show($('gift-form'), false);
  show($('gift-edit'));
  confirm();
}

function confirm() {
  $('gift-confirm-what').textContent = pending.what;
  $('gift-confirm-submit').hidden = false;
  show($('gift-confirm'));
  $('gift-confirm-submit').focus();
}

// apply sends the confirmed change once: the change is taken and the
// button disabled while it is in flight, so a double click sends one. A
// failed change stays confirmable (a retried create answers 409 if the
// first one was made after all).
async function apply() {
  if (inFlight || !pending) return;
  inFlight = true;
  const p = pending;
  pending = null;
  $('gift-confirm-submit').disabled = true;
  const r = $('gift-result');
  try {
    const g = await api(p.method, p.path, p.body);
    r.textContent = t('gifts.done', { platform: platformName(g.platform), id: g.gift_id, version: g.version });
    r.className = 'ok';
    closeEdit();
    await load();
    const h = g.platform + ':' + g.gift_id;
    if (!$('gift-history').hidden && $('gift-history').dataset.gift === h) history(g.platform, g.gift_id);
  } catch (e) {
    r.textContent = errorText(e); // 409 gift_exists, 400 …: as the API says
    r.className = 'error';
    pending = p;
  } finally {
    show(r);
    inFlight = false;
    $('gift-confirm-submit').disabled = false;
  }
}

async function history(platform, id) {
  let page;
  try {
    page = await api('GET', `/admin/v1/gifts/${platform}/${enc(id)}`);
  } catch (e) {
    show($('gift-history'), false);
    flash(errorText(e));
    return;
  }
  $('gift-history').dataset.gift = platform + ':' + id;
  $('gift-history-title').textContent = t('gifts.history.title', { platform: platformName(platform), id });
  $('gift-versions').tBodies[0].replaceChildren(...page.versions.map(v => el('tr', {},
    el('td', { className: 'num' }, v.version),
    el('td', {}, v.name),
    el('td', { className: 'num' }, fmtNumber(v.price)),
    el('td', { className: 'num' }, share(v.share_bp)),
    el('td', { className: v.active ? 'good' : 'bad' }, t(v.active ? 'gifts.active' : 'gifts.inactive')),
    el('td', {}, fmtTime(v.updated_at)))));
  show($('gift-history'));
}
