// Receivers: a receiver's earnings account (balance, payable, held, owed),
// a period report, the earnings ledger (paged, newest first), and payouts;
// the receivers of the last 24 hours to pick from; Polyv channels mapped
// to receivers. A payout carries an idempotency key made here and shown:
// every confirmation of the same key pays once (a double click or a retry
// replays), until the operator asks for a new key. The amount is checked
// against the payable amount shown; the API decides (422, 409 shown as it
// says them).
import { api, newKey, enc, APIError } from './api.js';
import { t, fmtNumber, fmtTime } from './i18n.js';
import { el, $, show, kv, flash, errorText } from './dom.js';
import { debitLink } from './ledger.js';

const pageSize = 20;
let receiver = '';
let account = null; // the earnings account shown; null: none yet
let befores = ['']; // the "before" of each ledger page seen
let nextBefore = null;
let key = '';
let payInFlight = false;
let chanPending = null; // { method, channel, body }
let chanInFlight = false;

function newPayoutKey() {
  key = newKey('console-pay');
  $('payout-key').textContent = key;
}

// A date input's value for d (UTC).
const day = d => d.toISOString().slice(0, 10);

export function init() {
  newPayoutKey();
  const now = new Date();
  $('recv-from').value = day(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)));
  $('recv-to').value = day(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)));
  $('recv-find').addEventListener('submit', ev => {
    ev.preventDefault();
    location.hash = '#/receivers?' + new URLSearchParams({ receiver: $('recv-id').value.trim() });
  });
  $('recv-period').addEventListener('submit', ev => { ev.preventDefault(); loadReport(); });
  $('recv-ledger-newest').addEventListener('click', () => { befores = ['']; loadLedger(); });
  $('recv-ledger-older').addEventListener('click', () => {
    if (nextBefore) { befores.push(nextBefore); loadLedger(); }
  });
  $('payout').addEventListener('submit', ev => { ev.preventDefault(); openPayout(); });
  $('payout-newkey').addEventListener('click', () => {
    newPayoutKey();
    show($('payout-result'), false);
    show($('payout-confirm'), false);
    $('payout-amount').focus();
  });
  $('payout-cancel').addEventListener('click', () => show($('payout-confirm'), false));
  $('payout-confirm').addEventListener('submit', ev => { ev.preventDefault(); payOut(); });
  $('chan-set').addEventListener('submit', ev => {
    ev.preventDefault();
    const channel = $('chan-id').value.trim(), r = $('chan-receiver').value.trim();
    confirmChannel({ method: 'PUT', channel, body: { receiver_id: r } }, t('chan.what.set', { channel, receiver: r }));
  });
  $('chan-cancel').addEventListener('click', () => { chanPending = null; show($('chan-confirm'), false); });
  $('chan-confirm').addEventListener('submit', ev => { ev.preventDefault(); applyChannel(); });
}

// #/receivers?receiver=host-1
export function open(params) {
  const r = params.get('receiver') || '';
  $('recv-id').value = r;
  loadTop();
  loadChannels();
  if (!r) { show($('recv-view'), false); $('recv-id').focus(); return; }
  if (r !== receiver) {
    receiver = r;
    befores = [''];
    newPayoutKey();
    $('payout-amount').value = '';
    $('payout-note').value = '';
    show($('payout-result'), false);
    show($('payout-confirm'), false);
  }
  load();
}

async function load() {
  show($('recv-view'));
  await Promise.all([loadAccount(), loadReport(), loadLedger()]);
}

async function loadAccount() {
  try {
    account = await api('GET', `/admin/v1/earnings/${enc(receiver)}`);
  } catch (e) {
    account = null;
    for (const id of ['recv-balance', 'recv-payable', 'recv-held', 'recv-owed', 'recv-updated']) $(id).textContent = '—';
    show($('recv-missing'), e instanceof APIError && e.status === 404);
    show($('payout-card'), false);
    if (!(e instanceof APIError && e.status === 404)) flash(errorText(e));
    return;
  }
  $('recv-balance').textContent = fmtNumber(account.balance);
  $('recv-payable').textContent = fmtNumber(account.payable);
  $('recv-held').textContent = fmtNumber(account.held);
  $('recv-owed').textContent = fmtNumber(account.owed);
  $('recv-updated').textContent = fmtTime(account.updated_at);
  $('payout-amount').max = String(Math.max(account.payable, 1));
  show($('recv-missing'), false);
  show($('payout-card'));
}

async function loadReport() {
  const q = new URLSearchParams({ from: $('recv-from').value, to: $('recv-to').value });
  try {
    const p = await api('GET', `/admin/v1/earnings/${enc(receiver)}/report?${q}`);
    kv($('recv-report'), [
      [t('rep.period'), `${fmtTime(p.from)} – ${fmtTime(p.to)}`],
      ...['gifts', 'gold', 'earned', 'taken_back', 'shortfall', 'net', 'recovered', 'paid_out'].map(k => [t('rep.' + k), fmtNumber(p[k])]),
    ]);
  } catch (e) {
    kv($('recv-report'), [[t('rep.period'), errorText(e)]]); // a bad period's 400 says what is wrong
  }
}

function source(e) {
  if (e.kind === 'gift') return debitLink(e.platform, e.app_id, e.request_id, `${e.platform} · ${e.app_id} · ${e.request_id}`);
  return e.ref || '';
}

function details(e) {
  if (e.kind === 'gift') {
    return `sender_id=${e.sender_id} room_id=${e.room_id} gift_id=${e.gift_id} gold=${e.gold}` + (e.share_bp != null ? ` share_bp=${e.share_bp}` : '');
  }
  return [e.account !== 'earnings' ? 'account=' + e.account : '', e.gift_entry ? 'gift_entry=' + e.gift_entry : ''].filter(Boolean).join(' ');
}

async function loadLedger() {
  const before = befores[befores.length - 1];
  const q = new URLSearchParams({ limit: pageSize });
  if (before) q.set('before', before);
  try {
    const page = await api('GET', `/admin/v1/earnings/${enc(receiver)}/ledger?${q}`);
    const rows = page.entries.map(e => el('tr', { className: 'kind-' + e.kind },
      el('td', {}, fmtTime(e.created_at)),
      el('td', {}, t('ekind.' + e.kind)),
      el('td', { className: 'num' }, (e.amount > 0 ? '+' : '') + fmtNumber(e.amount)),
      el('td', { className: 'num' }, e.balance_after == null ? '' : fmtNumber(e.balance_after)),
      el('td', { className: 'ref' }, source(e)),
      el('td', { className: 'details' }, details(e))));
    $('recv-ledger').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 6 }, t('wallet.empty')))]));
    nextBefore = page.next_before;
    show($('recv-ledger-older'), nextBefore !== null);
    show($('recv-ledger-newest'), befores.length > 1);
  } catch (e) {
    flash(errorText(e));
  }
}

// openPayout checks the amount (the form is novalidate: the page says why,
// in its language) and opens the confirmation.
function openPayout() {
  show($('payout-result'), false);
  const amount = Number($('payout-amount').value);
  if (!account || !Number.isInteger(amount) || amount < 1 || amount > account.payable) {
    const r = $('payout-result');
    r.textContent = t('recv.over', { payable: fmtNumber(account ? account.payable : 0) });
    r.className = 'error';
    show(r);
    return;
  }
  $('payout-what').textContent = t('recv.what', { amount: fmtNumber(amount), receiver, payable: fmtNumber(account.payable) });
  show($('payout-confirm'));
  $('payout-submit').focus();
}

async function payOut() {
  if (payInFlight) return; // the same key would replay anyway; no need to ask twice at once
  payInFlight = true;
  const btn = $('payout-submit');
  btn.disabled = true;
  const amount = Number($('payout-amount').value);
  const r = $('payout-result');
  try {
    const p = await api('POST', `/admin/v1/earnings/${enc(receiver)}/payouts`, {
      amount, idempotency_key: key, note: $('payout-note').value,
    });
    r.textContent = t('recv.done', { amount: fmtNumber(p.amount), recovered: fmtNumber(p.recovered), entry: p.entry_id, balance: fmtNumber(p.balance) });
    r.className = 'ok';
    show($('payout-confirm'), false);
    befores = [''];
    await load();
  } catch (e) {
    r.textContent = e instanceof APIError && e.code === 'idempotency_key_reused' ? `${errorText(e)} — ${t('recv.reused')}` : errorText(e);
    r.className = 'error';
    show($('payout-confirm'), false);
    befores = [''];
    await load(); // a 422 says the account moved: show it as it is now
  } finally {
    show(r);
    payInFlight = false;
    btn.disabled = false;
  }
}

async function loadTop() {
  try {
    const page = await api('GET', '/admin/v1/reports/gifts?' + new URLSearchParams({ group: 'receiver', limit: 20 }));
    const rows = page.rows.map(x => el('tr', {},
      el('td', {}, x.receiver_id == null ? t('recv.none') : el('a', { href: '#/receivers?' + new URLSearchParams({ receiver: x.receiver_id }) }, x.receiver_id)),
      el('td', { className: 'num' }, fmtNumber(x.gifts)),
      el('td', { className: 'num' }, fmtNumber(x.gold)),
      el('td', { className: 'num' }, fmtNumber(x.earnings))));
    $('recv-top').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 4 }, t('recv.notop')))]));
  } catch (e) {
    flash(errorText(e));
  }
}

async function loadChannels() {
  try {
    const page = await api('GET', '/admin/v1/polyv/channels');
    const rows = page.channels.map(c => {
      const b = el('button', { type: 'button', className: 'link', 'data-act': 'unmap' }, t('chan.unmap'));
      b.addEventListener('click', () => confirmChannel({ method: 'DELETE', channel: c.channel_id }, t('chan.what.remove', { channel: c.channel_id })));
      return el('tr', { 'data-channel': c.channel_id },
        el('td', {}, c.channel_id),
        el('td', {}, el('a', { href: '#/receivers?' + new URLSearchParams({ receiver: c.receiver_id }) }, c.receiver_id)),
        el('td', {}, fmtTime(c.updated_at)),
        el('td', {}, b));
    });
    $('channels').tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 4 }, t('chan.empty')))]));
  } catch (e) {
    flash(errorText(e));
  }
}

function confirmChannel(p, what) {
  chanPending = p;
  show($('chan-result'), false);
  $('chan-what').textContent = what;
  show($('chan-confirm'));
  $('chan-submit').focus();
}

async function applyChannel() {
  if (chanInFlight || !chanPending) return;
  chanInFlight = true;
  const p = chanPending;
  chanPending = null;
  $('chan-submit').disabled = true;
  const r = $('chan-result');
  try {
    await api(p.method, `/admin/v1/polyv/channels/${enc(p.channel)}/receiver`, p.body);
    r.textContent = t('chan.done');
    r.className = 'ok';
    show($('chan-confirm'), false);
    await loadChannels();
  } catch (e) {
    r.textContent = errorText(e);
    r.className = 'error';
    chanPending = p;
  } finally {
    show(r);
    chanInFlight = false;
    $('chan-submit').disabled = false;
  }
}
