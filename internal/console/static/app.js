// The console's shell: sign-in, navigation, language, and the pages.
import { signedIn, signIn, signOut, onUnauthorized, APIError } from './api.js';
import { t, setLanguage, language, translate } from './i18n.js';
import { el, $, show, flash, errorText } from './dom.js';
import * as now from './now.js';
import * as wallet from './wallet.js';
import * as debit from './debit.js';
import * as audit from './audit.js';
import * as leaderboard from './leaderboard.js';
import * as gifts from './gifts.js';
import * as receivers from './receivers.js';

// The navigation. A page not there yet is an entry with ready: false (shown
// greyed, opening a "soon" page). Payouts are made on the Receivers page.
const pages = [
  { id: 'now', page: now, ready: true },
  { id: 'wallet', page: wallet, ready: true },
  { id: 'debit', page: debit, ready: true },
  { id: 'audit', page: audit, ready: true },
  { id: 'receivers', page: receivers, ready: true },
  { id: 'gifts', page: gifts, ready: true },
  { id: 'leaderboards', page: leaderboard, ready: true },
];

let current = null;

function buildNav() {
  $('nav').replaceChildren(...pages.map(p => el('a', {
    href: '#/' + p.id, id: 'nav-' + p.id, className: p.ready ? '' : 'soon', 'data-i18n': 'nav.' + p.id,
  }, t('nav.' + p.id))));
}

// params of the hash: #/wallet?user=u1 → ['wallet', URLSearchParams]
function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  return [path || 'now', new URLSearchParams(query || '')];
}

function render() {
  const [id, params] = route();
  for (const s of document.querySelectorAll('main > .page')) s.hidden = true;
  show($('flash'), false);
  if (!signedIn()) {
    if (current?.page?.close) current.page.close();
    current = null;
    show($('nav'), false);
    show($('signout'), false);
    show($('signin'));
    $('token').focus();
    return;
  }
  show($('nav'));
  show($('signout'));
  const p = pages.find(x => x.id === id) || pages[0];
  for (const a of $('nav').children) a.classList.toggle('active', a.id === 'nav-' + p.id);
  if (current && current !== p && current.page?.close) current.page.close();
  current = p;
  if (!p.ready) {
    $('soon-title').textContent = t('nav.' + p.id);
    show($('page-soon'));
    return;
  }
  show($('page-' + p.id));
  p.page.open(params);
}

function init() {
  setLanguage(language());
  buildNav();
  $('lang').textContent = language() === 'zh' ? 'English' : '中文';
  $('lang').addEventListener('click', () => {
    setLanguage(language() === 'zh' ? 'en' : 'zh');
    $('lang').textContent = language() === 'zh' ? 'English' : '中文';
    translate(document);
    for (const el of document.querySelectorAll('[role=status]')) el.hidden = true; // said in the other language
    render();
  });
  $('signin-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const input = $('token');
    const btn = $('signin-submit');
    btn.disabled = true;
    show($('signin-error'), false);
    try {
      await signIn(input.value.trim());
      input.value = '';
      render();
    } catch (e) {
      $('signin-error').textContent = e instanceof APIError ? t('signin.wrong', { msg: e.message }) : errorText(e);
      show($('signin-error'));
      input.select();
    } finally {
      btn.disabled = false;
    }
  });
  $('signout').addEventListener('click', () => { signOut(); render(); });
  onUnauthorized(() => { render(); flash(t('signin.expired')); });
  for (const p of pages) p.page?.init?.();
  window.addEventListener('hashchange', render);
  render();
}

init();
