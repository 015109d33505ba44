// Wallet: a user's balance and ledger (paged, newest first), and top-ups.
// A top-up carries an idempotency key made here and shown: every submit of
// the same form sends the same key, so a double click or a retry tops up
// once; the operator asks for a new key to make another top-up.
import { api, newKey, enc, APIError } from './api.js';
import { t, fmtNumber, fmtTime } from './i18n.js';
import { el, $, show, flash, errorText, kv } from './dom.js';
import { ledgerRows } from './ledger.js';

const pageSize = 20;
let user = '';
let befores = [0]; // the "before" of each page seen: befores.at(-1) is the current page's
let nextBefore = null;
let key = newKey();
let inFlight = false;

export function init() {
  $('topup-key').textContent = key;
  $('wallet-find').addEventListener('submit', ev => {
    ev.preventDefault();
    location.hash = '#/wallet?' + new URLSearchParams({ user: $('wallet-user').value.trim() });
  });
  $('topup').addEventListener('submit', ev => { ev.preventDefault(); topUp(); });
  $('topup-newkey').addEventListener('click', () => {
    key = newKey();
    $('topup-key').textContent = key;
    show($('topup-result'), false);
    $('topup-amount').focus();
  });
  $('ledger-newest').addEventListener('click', () => { befores = [0]; loadLedger(); });
  $('ledger-older').addEventListener('click', () => {
    if (nextBefore) { befores.push(nextBefore); loadLedger(); }
  });
}

export function open(params) {
  const u = params.get('user') || '';
  $('wallet-user').value = u;
  if (!u) { show($('wallet-view'), false); $('wallet-user').focus(); return; }
  if (u !== user) {
    user = u;
    befores = [0];
    show($('topup-result'), false);
  }
  load();
}

async function load() {
  show($('wallet-view'));
  try {
    const w = await api('GET', `/admin/v1/wallets/${enc(user)}`);
    $('wallet-balance').textContent = fmtNumber(w.gold);
    $('wallet-updated').textContent = fmtTime(w.updated_at);
    show($('wallet-missing'), false);
  } catch (e) {
    if (e instanceof APIError && e.status === 404) {
      $('wallet-balance').textContent = '—';
      $('wallet-updated').textContent = '—';
      show($('wallet-missing'));
      $('ledger').tBodies[0].replaceChildren();
      show($('ledger-older'), false);
      return;
    }
    flash(errorText(e));
    return;
  }
  await Promise.all([loadLedger(), loadSafeguards()]);
}

// The user's safeguards, read-only: their own policy (fields they leave
// unset are the app's or the defaults) and their counters.
async function loadSafeguards() {
  try {
    const [defaults, spent] = await Promise.all([
      api('GET', '/admin/v1/policies/defaults'),
      api('GET', `/admin/v1/spending/${enc(user)}`),
    ]);
    const rec = spent.policy;
    const p = rec ? rec.policy : {};
    const amount = (v, d) => v === null || v === undefined ? `${fmtNumber(d)} (${t('safe.inherit')})` : fmtNumber(v);
    const flags = [p.minor && t('safe.minor'), p.blocked && t('safe.blocked'), p.consent && t('safe.consent')].filter(Boolean);
    const pairs = [[t('safe.enforced'), defaults.enforced ? '✓' : t('safe.off')]];
    if (!rec) pairs.push(['', t('safe.none')]);
    pairs.push([t('safe.flags'), flags.length ? flags.join(', ') : '—']);
    pairs.push([t('safe.caps'), [amount(p.max_debit, defaults.max_debit), amount(p.cap_24h, defaults.cap_24h),
      amount(p.cap_month, defaults.cap_month)].join(' / ')]);
    if (p.suspended_until) pairs.push([t('safe.suspended'), fmtTime(p.suspended_until)]);
    pairs.push([t('safe.spent'), [spent.last_24h, spent.day_gold, spent.month_gold].map(fmtNumber).join(' / ')]);
    if (spent.cool_until) pairs.push([t('safe.cool'), fmtTime(spent.cool_until)]);
    kv($('safe-policy'), pairs);
  } catch (e) {
    flash(errorText(e));
  }
}

async function loadLedger() {
  const before = befores[befores.length - 1];
  const q = new URLSearchParams({ limit: pageSize });
  if (before) q.set('before', before);
  try {
    const page = await api('GET', `/admin/v1/wallets/${enc(user)}/ledger?${q}`);
    const rows = ledgerRows(page.entries);
    $('ledger').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 7 }, t('wallet.empty')))]));
    nextBefore = page.next_before;
    show($('ledger-older'), nextBefore !== null);
    show($('ledger-newest'), befores.length > 1);
  } catch (e) {
    flash(errorText(e));
  }
}

async function topUp() {
  if (inFlight) return; // the same key would replay anyway; no need to ask twice at once
  inFlight = true;
  const btn = $('topup-submit');
  btn.disabled = true;
  const amount = Number($('topup-amount').value);
  try {
    const c = await api('POST', `/admin/v1/wallets/${enc(user)}/topups`, {
      amount, idempotency_key: key, note: $('topup-note').value,
    });
    const r = $('topup-result');
    r.textContent = t('wallet.done', { amount: fmtNumber(amount), entry: c.entry_id, gold: fmtNumber(c.gold) });
    r.className = 'ok';
    show(r);
    befores = [0];
    await load();
  } catch (e) {
    const r = $('topup-result');
    r.textContent = e instanceof APIError && e.code === 'idempotency_key_reused' ? t('wallet.reused') : errorText(e);
    r.className = 'error';
    show(r);
  } finally {
    inFlight = false;
    btn.disabled = false;
  }
}
