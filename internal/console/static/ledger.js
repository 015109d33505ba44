// ledgerRows renders ledger entries as table rows; a debit's source links
// to the Debit page, a reversal's to the debit it gave back.
import { t, fmtNumber, fmtTime } from './i18n.js';
import { el } from './dom.js';

export function debitLink(platform, appID, id, text) {
  const q = new URLSearchParams({ platform, app_id: appID, id });
  return el('a', { href: '#/debit?' + q }, text ?? id);
}

// details are an entry's details, less what the table shows already (a
// reversal's debit, LinkV's raw reason beside its parsed fields) and empty
// values.
function details(e) {
  const skip = e.kind === 'reversal' ? ['platform', 'app_id', 'request_id'] : e.details?.gift_id ? ['reason'] : [];
  return Object.entries(e.details || {}).filter(([k, v]) => !skip.includes(k) && v !== '' && v !== null)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
}

function source(e) {
  if (e.kind === 'debit') return [e.platform + ' · ' + e.app_id + ' · ', debitLink(e.platform, e.app_id, e.ref)];
  if (e.kind === 'reversal' && e.details?.request_id) {
    return [e.ref + ' ← ', debitLink(e.details.platform, e.details.app_id, e.details.request_id)];
  }
  return [e.ref];
}

export function ledgerRows(entries) {
  return entries.map(e => el('tr', { className: 'kind-' + e.kind, 'data-entry': e.id },
    el('td', {}, e.id),
    el('td', {}, fmtTime(e.created_at)),
    el('td', {}, t('kind.' + e.kind)),
    el('td', { className: 'num' }, (e.amount > 0 ? '+' : '') + fmtNumber(e.amount)),
    el('td', { className: 'num' }, fmtNumber(e.balance_after)),
    el('td', { className: 'ref' }, source(e)),
    el('td', { className: 'details' }, details(e))));
}
