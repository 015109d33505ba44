// Debit: one debit by its platform, app and request id (LinkV's
// request_id, Polyv's ledger ref): what was asked, what was answered, its
// ledger entries; and its reversal, once, after a confirmation with a
// reason. The reversal's idempotency key is made when the confirmation
// opens, so a double click on "confirm" reverses once.
import { api, newKey, enc } from './api.js';
import { t, fmtNumber, fmtTime } from './i18n.js';
import { el, $, show, kv, flash, errorText } from './dom.js';
import { ledgerRows } from './ledger.js';

let current = null; // the debit shown
let key = '';
let inFlight = false;

export function init() {
  $('debit-app').value = localStorage.getItem('giftd.app_id') || '';
  $('debit-platform').addEventListener('change', label);
  $('debit-find').addEventListener('submit', ev => {
    ev.preventDefault();
    localStorage.setItem('giftd.app_id', $('debit-app').value.trim());
    location.hash = '#/debit?' + new URLSearchParams({
      platform: $('debit-platform').value, app_id: $('debit-app').value.trim(), id: $('debit-id').value.trim(),
    });
  });
  $('reverse-open').addEventListener('click', () => {
    key = newKey('console-rev');
    $('reverse-key').textContent = key;
    $('reverse-what').textContent = t('debit.what', { gold: fmtNumber(-current.entry.amount), user: current.user_id });
    $('reverse-reason').value = '';
    show($('reverse'));
    show($('reverse-open'), false);
    $('reverse-reason').focus();
  });
  $('reverse-cancel').addEventListener('click', () => { show($('reverse'), false); show($('reverse-open')); });
  $('reverse').addEventListener('submit', ev => { ev.preventDefault(); reverse(); });
}

function label() {
  $('debit-id-label').textContent = t($('debit-platform').value === 'polyv' ? 'debit.ref' : 'debit.id');
}

export function open(params) {
  if (params.get('platform')) $('debit-platform').value = params.get('platform');
  if (params.get('app_id')) $('debit-app').value = params.get('app_id');
  $('debit-id').value = params.get('id') || '';
  label();
  if (!params.get('id') || !$('debit-app').value) { show($('debit-view'), false); return; }
  load();
}

async function load() {
  const q = new URLSearchParams({ app_id: $('debit-app').value, platform: $('debit-platform').value });
  try {
    current = await api('GET', `/admin/v1/debits/${enc($('debit-id').value)}?${q}`);
  } catch (e) {
    show($('debit-view'), false);
    flash(errorText(e));
    return;
  }
  render();
}

function render() {
  const d = current, r = d.record, e = d.entry;
  const walletLink = el('a', { href: '#/wallet?' + new URLSearchParams({ user: d.user_id }) }, d.user_id);
  const gift = Object.entries(e?.details || {}).map(([k, v]) => [k, String(v)]);
  kv($('debit-asked'), [
    [t('col.platform'), d.platform + ' · ' + d.app_id],
    ['request_id', d.request_id],
    [t('debit.user'), walletLink],
    [t('debit.gold'), r ? fmtNumber(r.gold) : e ? fmtNumber(-e.amount) : '—'],
    ...gift,
  ]);
  kv($('debit-answered'), r ? [
    [t('debit.status'), t('debit.status.' + r.status)],
    [t('debit.balance'), fmtNumber(r.balance)],
    [t('debit.at'), fmtTime(r.created_at)],
    [t('debit.expires'), fmtTime(r.expires_at)],
  ] : [[t('debit.status'), t('debit.pruned')]]);
  $('debit-entries').tBodies[0].replaceChildren(...ledgerRows([e, d.reversal].filter(Boolean)));
  const rev = d.reversal;
  if (rev) {
    $('debit-reversed').textContent = t('debit.reversed', {
      at: fmtTime(rev.created_at), entry: rev.id, key: rev.ref, note: rev.details?.note || '—',
    });
  }
  show($('debit-reversed'), !!rev);
  show($('debit-not-reversible'), !e);
  show($('reverse-open'), !!e && !rev);
  show($('reverse'), false);
  show($('debit-view'));
}

async function reverse() {
  if (inFlight) return;
  inFlight = true;
  $('reverse-submit').disabled = true;
  try {
    await api('POST', `/admin/v1/debits/${enc(current.request_id)}/reversal`, {
      platform: current.platform, app_id: current.app_id, idempotency_key: key, note: $('reverse-reason').value.trim(),
    });
    await load();
  } catch (e) {
    flash(errorText(e)); // already_reversed: the load below shows the earlier reversal
    await load();
  } finally {
    inFlight = false;
    $('reverse-submit').disabled = false;
  }
}
