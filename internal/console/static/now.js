// Now: giftd's own metrics, from GET /admin/v1/stats every 2 s. The API
// gives totals since start; rates and quantiles come from the difference
// between two snapshots, over the last minute (or less, just after the page
// opened). Up to 5 minutes of snapshots are kept in memory.
import { api } from './api.js';
import { t, fmtNumber } from './i18n.js';
import { el, $, kv, flash, errorText } from './dom.js';

const every = 2000, keep = 5 * 60 * 1000, window1m = 60 * 1000;
let samples = [];
let timer = null;

export function init() {}

export function open() {
  if (timer) return;
  samples = [];
  tick();
  timer = setInterval(tick, every);
}

export function close() {
  clearInterval(timer);
  timer = null;
}

async function tick() {
  let s;
  try {
    s = await api('GET', '/admin/v1/stats');
  } catch (e) {
    if (timer) flash(errorText(e));
    return;
  }
  if (!timer) return; // left the page meanwhile
  s.t = Date.parse(s.at);
  samples.push(s);
  while (samples.length > 2 && s.t - samples[0].t > keep) samples.shift();
  render();
}

const sum = a => a.reduce((x, y) => x + y, 0);
const callbacks = (s, pred = () => true) => sum(s.callbacks.filter(pred).map(c => c.count));
const errors = s => callbacks(s, c => c.outcome === 'error') + s.http_5xx.public + s.http_5xx.admin + s.prune_errors;

// since is the oldest sample at most ms before the newest.
function since(ms) {
  const last = samples[samples.length - 1];
  return samples.find(x => last.t - x.t <= ms) || last;
}

// quantile estimates the q-quantile of the callbacks answered between a and
// b from their latency buckets, as PromQL's histogram_quantile does.
function quantile(q, a, b) {
  const n = b.callback_latency.count - a.callback_latency.count;
  if (n <= 0) return null;
  const rank = q * n;
  let prevLe = 0, prevCount = 0;
  for (let i = 0; i < b.callback_latency.buckets.length; i++) {
    const le = b.callback_latency.buckets[i].le;
    const c = b.callback_latency.buckets[i].count - (a.callback_latency.buckets[i]?.count || 0);
    if (c >= rank) return prevLe + (le - prevLe) * ((rank - prevCount) / Math.max(c - prevCount, 1e-9));
    prevLe = le;
    prevCount = c;
  }
  return Infinity; // above the largest bound
}

function ms(v) {
  if (v === null) return '—';
  if (v === Infinity) return '> 5 s';
  return v < 0.01 ? (v * 1000).toFixed(2) + ' ms' : (v * 1000).toFixed(0) + ' ms';
}

function render() {
  const last = samples[samples.length - 1];
  const a = since(window1m);
  const dt = (last.t - a.t) / 1000;
  const rate = f => dt > 0 ? (f(last) - f(a)) / dt : null;
  const r = v => v === null ? '—' : v.toFixed(v < 10 ? 2 : 0);
  const five = samples[0];

  const badge = $('now-ready');
  badge.textContent = last.ready ? t('now.ready') : t('now.notready', { err: last.ready_error });
  badge.className = 'badge ' + (last.ready ? 'good' : 'bad');
  $('now-window').textContent = dt > 0 ? t('now.since', { s: Math.round(dt) }) : t('now.waiting');
  $('now-rate').textContent = r(rate(s => callbacks(s)));
  $('now-ok').textContent = r(rate(s => callbacks(s, c => c.outcome === 'ok')));
  $('now-p50').textContent = dt > 0 ? ms(quantile(0.5, a, last)) : '—';
  $('now-p99').textContent = dt > 0 ? ms(quantile(0.99, a, last)) : '—';
  const errs = errors(last) - errors(five);
  $('now-errors').textContent = fmtNumber(errs);
  $('now-errors').className = errs > 0 ? 'bad' : '';

  const prev = (p, o) => five.callbacks.find(c => c.platform === p && c.outcome === o)?.count || 0;
  const rows = last.callbacks.filter(c => c.count > 0 || c.outcome === 'ok');
  $('now-outcomes').tBodies[0].replaceChildren(...rows.map(c => el('tr', { className: c.outcome === 'error' && c.count > prev(c.platform, c.outcome) ? 'bad' : '' },
    el('td', {}, c.platform), el('td', {}, c.outcome),
    el('td', { className: 'num' }, fmtNumber(c.count - prev(c.platform, c.outcome))), el('td', { className: 'num' }, fmtNumber(c.count)))));

  const forms = Object.entries(last.sign_forms).sort((x, y) => y[1] - x[1]);
  const total = sum(forms.map(f => f[1]));
  $('now-forms').tBodies[0].replaceChildren(...forms.map(([f, n]) => el('tr', {},
    el('td', {}, f), el('td', { className: 'num' }, fmtNumber(n)),
    el('td', { className: 'num' }, total ? (100 * n / total).toFixed(1) : '—'))));

  const poolKeys = ['acquired_connections', 'idle_connections', 'total_connections', 'max_connections',
    'empty_acquires_total', 'canceled_acquires_total', 'acquire_wait_seconds_total'];
  kv($('now-pool'), poolKeys.filter(k => k in last.pool).map(k => [t('pool.' + k),
    k === 'acquire_wait_seconds_total' ? last.pool[k].toFixed(3) : fmtNumber(last.pool[k])]));
  kv($('now-gold'), [
    ...Object.entries(last.gold_debited).map(([p, n]) => [t('gold.debited', { p }), fmtNumber(n)]),
    ...Object.entries(last.gold_credited).map(([k, n]) => [t('gold.' + k), fmtNumber(n)]),
    [t('gold.prune_errors'), fmtNumber(last.prune_errors)],
  ]);
  chart();
}

// chart draws callbacks/s between consecutive samples as an SVG line.
function chart() {
  const W = 600, H = 120, ns = 'http://www.w3.org/2000/svg';
  const pts = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    if (dt > 0) pts.push([samples[i].t, (callbacks(samples[i]) - callbacks(samples[i - 1])) / dt]);
  }
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const end = samples[samples.length - 1].t, max = Math.max(1, ...pts.map(p => p[1]));
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', pts.map(([x, y]) => `${(W * (1 - (end - x) / keep)).toFixed(1)},${(H - 4 - (H - 8) * y / max).toFixed(1)}`).join(' '));
  const label = document.createElementNS(ns, 'text');
  label.setAttribute('x', '4');
  label.setAttribute('y', '14');
  label.textContent = 'max ' + max.toFixed(max < 10 ? 2 : 0) + '/s';
  svg.append(line, label);
  $('now-chart').replaceChildren(svg);
}
