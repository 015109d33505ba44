// Leaderboards: a room's top senders and top receivers by gold over a
// window ending now (the lists apps show in rooms), side by side. Reversed
// gifts are left out by the API. Every value goes in as text.
import { api, enc } from './api.js';
import { t, fmtNumber, fmtTime } from './i18n.js';
import { el, $, show, flash, errorText } from './dom.js';

const windows = ['1h', '24h', '7d'];

export function init() {
  $('board-find').addEventListener('submit', ev => {
    ev.preventDefault();
    location.hash = '#/leaderboards?' + new URLSearchParams({
      platform: $('board-platform').value, room: $('board-room').value.trim(), window: $('board-window').value,
    });
  });
}

export function open(params) {
  const platform = params.get('platform') === 'polyv' ? 'polyv' : 'linkv';
  const room = params.get('room') || '';
  const win = windows.includes(params.get('window')) ? params.get('window') : '24h';
  $('board-platform').value = platform;
  $('board-room').value = room;
  $('board-window').value = win;
  if (!room) { show($('board-view'), false); $('board-room').focus(); return; }
  load(platform, room, win);
}

async function load(platform, room, win) {
  const q = new URLSearchParams({ window: win, limit: 20 });
  const base = `/admin/v1/rooms/${platform}/${enc(room)}/leaderboard/`;
  try {
    const [s, r] = await Promise.all([api('GET', base + 'senders?' + q), api('GET', base + 'receivers?' + q)]);
    fill('board-senders', s.senders, x => el('a', { href: '#/wallet?' + new URLSearchParams({ user: x.sender_id }) }, x.sender_id));
    fill('board-receivers', r.receivers, x => x.receiver_id);
    $('board-span').textContent = t('board.span', { from: fmtTime(s.from), to: fmtTime(s.to) });
    show($('board-view'));
  } catch (e) {
    flash(errorText(e));
  }
}

function fill(id, leaders, who) {
  const rows = leaders.map(x => el('tr', {},
    el('td', { className: 'num' }, x.rank),
    el('td', {}, who(x)),
    el('td', { className: 'num' }, fmtNumber(x.gifts)),
    el('td', { className: 'num' }, fmtNumber(x.gold)),
    el('td', { className: 'num' }, fmtNumber(x.earnings))));
  $(id).tBodies[0].replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colSpan: 5 }, t('board.empty')))]));
}
