// Audit: runs the read-only audit and shows its report.
import { api } from './api.js';
import { t, fmtNumber, fmtTime } from './i18n.js';
import { el, $, show, kv, flash, errorText } from './dom.js';

export function init() {
  $('audit-run').addEventListener('click', run);
}

export function open() {}

async function run() {
  const btn = $('audit-run');
  btn.disabled = true;
  try {
    const a = await api('GET', '/admin/v1/audit');
    const v = $('audit-verdict');
    v.textContent = a.ok ? t('audit.ok') : t('audit.bad', { m: a.mismatched, n: a.negative });
    v.className = 'verdict ' + (a.ok ? 'good' : 'bad');
    kv($('audit-summary'), [
      [t('audit.wallets'), fmtNumber(a.wallets)], [t('audit.entries'), fmtNumber(a.entries)],
      [t('audit.total'), fmtNumber(a.total_gold)], [t('audit.mismatched'), fmtNumber(a.mismatched)],
      [t('audit.negative'), fmtNumber(a.negative)], [t('audit.at'), fmtTime(a.checked_at)],
    ]);
    $('audit-findings').tBodies[0].replaceChildren(...a.findings.map(f => el('tr', {},
      el('td', {}, el('a', { href: '#/wallet?' + new URLSearchParams({ user: f.user_id }) }, f.user_id)),
      el('td', { className: 'num' }, fmtNumber(f.gold)), el('td', { className: 'num' }, fmtNumber(f.ledger_sum)))));
    show($('audit-findings-card'), a.findings.length > 0);
    show($('audit-view'));
  } catch (e) {
    flash(errorText(e));
  } finally {
    btn.disabled = false;
  }
}
