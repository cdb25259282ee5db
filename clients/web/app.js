// app.js — the officials' dashboard (DESIGN §5–6): sign-in with a viewer or supervisor token,
// the county → township → site drill-down kept live by the stats stream, charts, the anomaly
// loop (acknowledge / resolve), the lab arrival board, the daily ledger and the tube/box search.
//
// Plain ES modules, no build step; served by tubeloopd from memory under a strict CSP, so no
// inline script or style anywhere: the DOM is built with createElement and textContent (never
// innerHTML with data), listeners are attached here, and the few computed widths are set through
// CSSOM. The token lives in sessionStorage (this tab only) and in the Authorization header,
// never in a URL. Where the page is (tab, region, day, round, lab, barcode) lives in the
// location hash, so the back button and bookmarks work and a reload lands on the same view.

import { t, has, lang, setLang, applyStatic, num } from './i18n.js';
import { makeApi, withQuery, ApiError, LiveStream } from './api.js';
import { renderCharts, clearCharts } from './charts.js';

const TABS = ['overview', 'anomalies', 'arrivals', 'ledger', 'search'];
const ANOMALY_STATES = ['open', 'acknowledged', 'resolved', 'auto_resolved'];
const ANOMALY_TYPES = ['person_repeat', 'seal_count_mismatch', 'custody_gap', 'wrong_lab', 'tube_missing',
  'tube_unexpected', 'orphan_result', 'overdue_transport', 'overdue_test', 'overdue_followup'];
const LOW_CLEARANCE = 0.9;
const PAGE = 50;

// ------------------------------------------------------------------------------------------
// Small helpers

const $ = (id) => document.getElementById(id);

/** A server code in words ("type_" + "wrong_lab" → 送错实验室); a code this page does not know
 * yet (a newer server) is shown as it is. */
const tc = (prefix, code) => (has(prefix + code) ? t(prefix + code) : String(code));

/** h('td', {class: 'num', dataset: {field: 'x'}}, child, ...) — attributes, then children. */
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const store = {
  get(k) {
    try {
      return sessionStorage.getItem('tubeloop.' + k) || '';
    } catch (e) {
      return '';
    }
  },
  set(k, v) {
    try {
      if (v === '' || v === null || v === undefined) sessionStorage.removeItem('tubeloop.' + k);
      else sessionStorage.setItem('tubeloop.' + k, v);
    } catch (e) {
      // storage disabled: the session simply is not remembered
    }
  },
};

const pct = (v) => (v === null || v === undefined ? '—' : (Number(v) * 100).toFixed(1) + '%');
const get = (obj, path) => path.split('.').reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);

/** "10-08 09:12" from the server's RFC 3339 text: the wall clock of the deployment's zone,
 * the same zone as the day boundaries and the hourly chart. */
function fmtTime(s, withSeconds) {
  if (!s) return '—';
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/.exec(s);
  if (!m) return s;
  return `${m[2]}-${m[3]} ${m[4]}:${m[5]}${withSeconds ? ':' + m[6] : ''}`;
}

function timeEl(s, withSeconds) {
  return s ? h('time', { datetime: s }, fmtTime(s, withSeconds)) : '—';
}

function parseTime(s) {
  return s ? Date.parse(String(s).replace(/(\.\d{3})\d+/, '$1')) : NaN;
}

function fmtDur(ms) {
  const total = Math.floor(Math.abs(ms) / 1000);
  const hrs = Math.floor(total / 3600);
  const mins = Math.floor((total % 3600) / 60);
  if (hrs > 0) return t('dur_hm', { h: hrs, m: mins });
  return t('dur_ms', { m: mins, s: total % 60 });
}

function randomUuid() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// ------------------------------------------------------------------------------------------
// Errors in words

function errorText(e, what) {
  if (!(e instanceof ApiError)) return t('err_generic', { status: '?' });
  if (e.code === 'network') return t('err_network');
  if (e.status === 401) return t('err_unauthorized');
  if (e.code === 'out_of_scope') return t('err_out_of_scope');
  if (e.code === 'forbidden' || e.status === 403) return t('err_forbidden');
  if (e.code === 'invalid_region') return t('err_invalid_region');
  if (e.status === 404) return what === 'region' ? t('err_region_not_found') : t('err_not_found');
  if (e.status === 409) return t('err_conflict');
  if (e.status === 429) return t('err_too_many');
  if (e.status === 503) return t('err_db');
  if (e.status === 400) return t('err_invalid');
  return t('err_generic', { status: e.status });
}

/** Shows e in the box el: our words, then the server's own message (kept in English as the
 * server wrote it, so that it can be quoted to the operators). */
function showError(el, e, what) {
  el.textContent = '';
  el.tlError = typeof e === 'string' ? null : { e, what }; // re-worded on a language switch
  if (typeof e === 'string') {
    el.append(h('strong', null, e));
  } else {
    el.append(h('strong', null, errorText(e, what)));
    if (e instanceof ApiError && e.serverMessage) {
      el.append(' ', h('span', { class: 'server-msg' }, t('server_said') + e.serverMessage + (e.status ? ` (HTTP ${e.status} ${e.code})` : '')));
    }
  }
  el.hidden = false;
}

function clearError(el) {
  el.hidden = true;
  el.textContent = '';
}

// ------------------------------------------------------------------------------------------
// State

const S = {
  token: '',
  api: null,
  role: 'unknown', // 'viewer' (read only), 'supervisor' (may act), 'unknown'
  tab: 'overview',
  region: '',
  day: '',
  round: '',
  trail: [], // [{code, name}] from the sign-in region down to the current one
  stats: null,
  statsSeq: 0,
  statsError: null,
  charts: null,
  stream: null,
  live: 'off',
  liveInfo: null,
  updatedAt: null,
  anomalies: [],
  anCursor: null,
  anState: '',
  anType: '',
  anSeq: 0,
  anLoaded: '',
  lab: '',
  arrivals: null,
  arrSeq: 0,
  ledger: null,
  ledgerSeq: 0,
  ledgerLoaded: '',
  code: '',
  found: null,
  searchSeq: 0,
  refreshTimer: null,
  pollTimer: null,
  tickTimer: null,
};

function scopeParams() {
  return S.round ? { region: S.region, round: S.round } : { region: S.region, day: S.day };
}

function scopeKey() {
  return [S.region, S.day, S.round].join('|');
}

function childWord() {
  const level = S.stats && S.stats.region.level;
  if (level === 'county') return t('child_of_county');
  if (level === 'township') return t('child_of_township');
  return t('child_of_other');
}

// ------------------------------------------------------------------------------------------
// Location hash: #/tab?region=&day=&round=&lab=&code=

function parseHash() {
  const m = /^#\/(\w+)(?:\?(.*))?$/.exec(location.hash);
  const q = new URLSearchParams((m && m[2]) || '');
  return {
    tab: m && TABS.includes(m[1]) ? m[1] : 'overview',
    region: q.get('region') || '',
    day: q.get('day') || '',
    round: q.get('round') || '',
    lab: q.get('lab') || '',
    code: q.get('code') || '',
  };
}

function hashFor(over) {
  const st = Object.assign({ tab: S.tab, region: S.region, day: S.day, round: S.round, lab: S.lab, code: S.code }, over);
  const q = new URLSearchParams();
  for (const k of ['region', 'day', 'round', 'lab', 'code']) if (st[k]) q.set(k, st[k]);
  return '#/' + st.tab + '?' + q.toString();
}

function go(over) {
  const target = hashFor(over);
  if (location.hash === target) route();
  else location.hash = target;
}

// ------------------------------------------------------------------------------------------
// Sign-in and sign-out

function showLogin(error) {
  stopStream();
  stopTimers();
  $('app').hidden = true;
  $('logout').hidden = true;
  $('crumbs').hidden = true;
  $('login').hidden = false;
  const region = $('login-region');
  if (!region.value) region.value = parseHash().region || store.get('region');
  if (error) showError($('login-error'), error, 'region');
  (S.token ? region : $('login-token')).focus();
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  clearError($('login-error'));
}

async function onLogin(ev) {
  ev.preventDefault();
  const token = $('login-token').value.trim();
  const region = $('login-region').value.trim();
  const err = $('login-error');
  if (!token) return showError(err, t('err_need_token'));
  if (!region) return showError(err, t('err_need_region'));
  const btn = $('login-submit');
  btn.disabled = true;
  btn.textContent = t('login_checking');
  const api = makeApi(token);
  try {
    await api.get(withQuery('/v1/stats', { region })); // the token and the region, at once
  } catch (e) {
    showError(err, e, 'region');
    return;
  } finally {
    btn.disabled = false;
    btn.textContent = t('login_submit');
  }
  S.token = token;
  S.api = api;
  store.set('token', token);
  store.set('region', region);
  $('login-token').value = '';
  S.trail = [];
  S.region = '';
  probeRole();
  showApp();
  go({ tab: 'overview', region, day: '', round: '', code: '' });
}

function logout(error) {
  store.set('token', '');
  store.set('trail', '');
  S.token = '';
  S.api = null;
  S.role = 'unknown';
  S.stats = null;
  S.region = '';
  S.anomalies = [];
  S.anLoaded = '';
  S.ledger = null;
  S.ledgerLoaded = '';
  S.arrivals = null;
  S.found = null;
  clearCharts();
  showLogin(error);
}

/** A 401 anywhere sends the user back to sign in, saying why. */
function unauthorized(e) {
  if (e instanceof ApiError && e.status === 401) {
    logout(e);
    return true;
  }
  return false;
}

/** Whether this token may act on anomalies. There is no "who am I" call, so ask the server
 * about an anomaly that cannot exist: the role check comes before the lookup, so a viewer gets
 * 403 forbidden and a supervisor 404 (nothing is changed either way). */
async function probeRole() {
  S.role = 'unknown';
  const api = S.api;
  try {
    await api.post(`/v1/anomalies/${randomUuid()}/ack`, { owner: 'probe' });
    S.role = 'supervisor';
  } catch (e) {
    if (api !== S.api) return;
    if (e instanceof ApiError && e.status === 403) S.role = 'viewer';
    else if (e instanceof ApiError && [400, 404, 409].includes(e.status)) S.role = 'supervisor';
  }
  renderAnomalies();
}

// ------------------------------------------------------------------------------------------
// Routing

async function route() {
  if (!S.token) return showLogin();
  const hs = parseHash();
  if (!hs.region) {
    const region = store.get('region');
    if (!region) return showLogin();
    location.replace(hashFor({ tab: hs.tab, region }));
    return;
  }
  showApp();
  const changed = hs.region !== S.region || hs.day !== S.day || hs.round !== S.round;
  if (hs.region !== S.region) updateTrail(hs.region);
  Object.assign(S, { tab: hs.tab, region: hs.region, day: hs.day, round: hs.round, code: hs.code });
  if (hs.lab) S.lab = hs.lab;
  store.set('region', S.region);
  showTab(S.tab);
  syncFilters();
  renderCrumbs();
  if (changed) {
    S.stats = null;
    S.statsError = null;
    S.charts = null;
    S.anomalies = [];
    S.anLoaded = '';
    S.ledger = null;
    S.ledgerLoaded = '';
    clearError($('view-error'));
    renderOverview();
    loadStats();
    startStream();
  }
  loadTab();
}

function loadTab() {
  stopTimers();
  if (S.tab === 'anomalies' && S.anLoaded !== scopeKey() + S.anState + S.anType) loadAnomalies(false);
  if (S.tab === 'arrivals') {
    if (S.lab) loadArrivals();
    S.pollTimer = setInterval(() => { if (S.lab) loadArrivals(); }, 30000);
    S.tickTimer = setInterval(tickCountdowns, 1000);
  }
  if (S.tab === 'ledger' && S.ledgerLoaded !== scopeKey()) loadLedger();
  if (S.tab === 'search') {
    if (S.code && (!S.found || S.found.code !== S.code)) search(S.code);
    if (!S.code) renderSearch();
  }
}

function stopTimers() {
  clearInterval(S.pollTimer);
  clearInterval(S.tickTimer);
  S.pollTimer = S.tickTimer = null;
}

function showTab(tab) {
  for (const b of document.querySelectorAll('[role="tab"]')) {
    const on = b.dataset.tab === tab;
    b.setAttribute('aria-selected', on ? 'true' : 'false');
    b.tabIndex = on ? 0 : -1;
  }
  for (const name of TABS) $('panel-' + name).hidden = name !== tab;
}

function updateTrail(code) {
  if (!S.trail.length) {
    try {
      S.trail = JSON.parse(store.get('trail') || '[]');
    } catch (e) {
      S.trail = [];
    }
  }
  const i = S.trail.findIndex((e) => e.code === code);
  const child = S.stats && S.stats.children.find((c) => c.code === code);
  if (i >= 0) S.trail = S.trail.slice(0, i + 1);
  else if (child && S.trail.length && S.trail[S.trail.length - 1].code === S.stats.region.code) S.trail.push({ code, name: child.name });
  else S.trail = [{ code, name: '' }];
  store.set('trail', JSON.stringify(S.trail));
}

function renderCrumbs() {
  const nav = $('crumbs');
  nav.textContent = '';
  if (!S.trail.length) {
    nav.hidden = true;
    return;
  }
  const ol = h('ol');
  S.trail.forEach((e, i) => {
    const last = i === S.trail.length - 1;
    const label = e.name || e.code;
    ol.append(h('li', null, last ? h('span', { 'aria-current': 'page' }, label)
      : h('a', { href: hashFor({ tab: 'overview', region: e.code }) }, label)));
  });
  nav.append(ol);
  nav.hidden = false;
}

function syncFilters() {
  $('f-day').value = S.day || (S.stats && S.stats.day) || '';
  $('f-day').disabled = !!S.round;
  $('f-round').value = S.round;
  $('f-region').value = S.region;
}

function onFilters(ev) {
  ev.preventDefault();
  let day = $('f-day').value;
  // still the server's "today": leave the day out, so the view rolls over at midnight
  if (!S.day && S.stats && day === S.stats.day) day = '';
  const round = $('f-round').value.trim();
  const region = $('f-region').value.trim() || S.region;
  go({ region, day: round ? '' : day, round });
}

// ------------------------------------------------------------------------------------------
// Stats: the first answer over GET, then the stream

async function loadStats() {
  const seq = ++S.statsSeq;
  try {
    const data = await S.api.get(withQuery('/v1/stats', scopeParams()));
    if (seq !== S.statsSeq) return;
    applyStats(data);
    loadCharts();
  } catch (e) {
    if (seq !== S.statsSeq) return;
    if (unauthorized(e)) return;
    S.stats = null;
    S.statsError = e;
    S.updatedAt = null;
    stopStream();
    renderOverview();
    showError($('view-error'), e, 'region');
  }
}

function applyStats(data) {
  if (!data || !data.region || data.region.code !== S.region) return;
  const first = !S.stats;
  const prev = S.stats;
  S.stats = data;
  S.statsError = null;
  S.updatedAt = new Date();
  clearError($('view-error'));
  const last = S.trail[S.trail.length - 1];
  if (last && last.code === data.region.code && last.name !== data.region.name) {
    last.name = data.region.name;
    store.set('trail', JSON.stringify(S.trail));
    renderCrumbs();
  }
  if (first) syncFilters();
  renderOverview(prev);
}

function startStream() {
  stopStream();
  const url = withQuery('/v1/stream', scopeParams());
  const token = S.token;
  const stream = new LiveStream(url, token,
    (type, data) => {
      if (stream !== S.stream || type !== 'stats') return;
      applyStats(data);
      scheduleRefresh();
    },
    (state, info) => {
      if (stream !== S.stream) return;
      if (state === 'failed') {
        if (info && info.status === 401) return logout(info);
        S.live = 'off';
        S.stream = null;
      } else {
        S.live = state;
      }
      S.liveInfo = info;
      renderLive();
    });
  S.stream = stream;
  stream.start();
}

function stopStream() {
  if (S.stream) S.stream.stop();
  S.stream = null;
  S.live = 'off';
  renderLive();
}

function renderLive() {
  const box = $('live');
  box.hidden = !S.token;
  $('updated').hidden = !S.token;
  box.dataset.state = S.live;
  let text = t('live_off');
  if (S.live === 'live') text = t('live_on');
  else if (S.live === 'connecting') text = t('live_connecting');
  else if (S.live === 'retry') text = t('live_retry', { s: S.liveInfo });
  $('live-text').textContent = text;
  const up = $('updated');
  if (up) {
    const d = S.updatedAt;
    up.textContent = d ? t('updated', { t: d.toLocaleTimeString(lang() === 'en' ? 'en-GB' : 'zh-CN', { hour12: false }) }) : '';
  }
}

/** After a live change: the charts and the open tab's list follow, at most every 3 s. */
function scheduleRefresh() {
  if (S.refreshTimer) return;
  S.refreshTimer = setTimeout(() => {
    S.refreshTimer = null;
    if (!S.api) return;
    loadCharts();
    if (S.tab === 'anomalies') loadAnomalies(false, true);
    if (S.tab === 'ledger') loadLedger();
    if (S.tab === 'arrivals' && S.lab) loadArrivals();
  }, 3000);
}

async function loadCharts() {
  const key = scopeKey();
  try {
    const data = await S.api.get(withQuery('/v1/stats/charts', scopeParams()));
    if (key !== scopeKey()) return;
    S.charts = data;
    renderCharts(S.charts, childWord(), lang());
  } catch (e) {
    if (unauthorized(e)) return;
    // the table says what went wrong; the charts just stay as they were
  }
}

// ------------------------------------------------------------------------------------------
// Overview: cards, table, charts

const COLS = [
  { f: 'persons_sampled' },
  { f: 'persons_returned' },
  { f: 'clearance', fmt: pct },
  { f: 'tubes.open', g: 'tubes' },
  { f: 'tubes.sealed', g: 'tubes' },
  { f: 'tubes.in_transit', g: 'tubes' },
  { f: 'tubes.received', g: 'tubes' },
  { f: 'tubes.resulted', g: 'tubes' },
  { f: 'tubes.rejected', g: 'tubes' },
  { f: 'results.negative', g: 'results' },
  { f: 'results.positive', g: 'results' },
  { f: 'results.invalid', g: 'results' },
  { f: 'overdue' },
  { f: 'anomalies_open' },
  { f: 'followups_open' },
  { f: 'tat_minutes.p50', g: 'tat' },
  { f: 'tat_minutes.p90', g: 'tat' },
];
const colLabel = (c) => t('col_' + c.f.replace('.', '_').replace('tat_minutes', 'tat'));

function isLow(st) {
  return st.persons_sampled > 0 && st.clearance < LOW_CLEARANCE;
}

function statsRow(code, head, isTotal) {
  const tr = h('tr', { dataset: { code }, class: isTotal ? 'totals' : null }, head);
  for (const c of COLS) {
    const td = h('td', { class: 'num', dataset: { field: c.f } }, h('span', { class: 'v' }));
    if (c.f === 'clearance') td.append(h('span', { class: 'meter', 'aria-hidden': 'true' }, h('span')));
    tr.append(td);
  }
  return tr;
}

/** Writes st's figures into the row; flashes the cells that changed (live updates). */
function fillRow(tr, st, flash) {
  const overdue = st.overdue > 0;
  const low = isLow(st);
  tr.classList.toggle('row-overdue', overdue);
  tr.classList.toggle('row-low', low);
  for (const c of COLS) {
    const td = tr.querySelector(`td[data-field="${c.f}"]`);
    const raw = get(st, c.f);
    const text = c.fmt ? c.fmt(raw) : num(raw);
    const v = td.querySelector('.v');
    if (v.textContent !== text) {
      if (flash && v.textContent !== '') {
        td.classList.remove('changed');
        void td.offsetWidth; // restart the animation
        td.classList.add('changed');
      }
      v.textContent = text;
    }
    const oldFlag = td.querySelector('.flag');
    if (oldFlag) oldFlag.remove();
    if (c.f === 'overdue') {
      td.classList.toggle('flag-overdue', overdue);
      if (overdue) td.append(h('span', { class: 'flag sr-only' }, t('flag_overdue')));
    }
    if (c.f === 'clearance') {
      td.classList.toggle('flag-low', low);
      if (low) td.append(h('span', { class: 'flag sr-only' }, t('flag_low')));
      td.querySelector('.meter > span').style.width = Math.max(0, Math.min(1, Number(raw) || 0)) * 100 + '%';
    }
    if (c.f === 'results.positive') td.classList.toggle('flag-positive', raw > 0);
  }
}

function buildStatsTable(stats) {
  const table = $('stats-table');
  table.textContent = '';
  const isSite = stats.region.level === 'site';
  table.append(h('caption', null, isSite ? t('stats_caption_site', { name: stats.region.name })
    : t('stats_caption', { name: stats.region.name, child: childWord() })));
  // two header rows: groups (tubes, results, turnaround) span their columns
  const r1 = h('tr', null, h('th', { scope: 'col', rowspan: 2, class: 'area' }, t('col_area')));
  const r2 = h('tr');
  let i = 0;
  while (i < COLS.length) {
    const c = COLS[i];
    if (!c.g) {
      r1.append(h('th', { scope: 'col', rowspan: 2, dataset: { col: c.f } }, colLabel(c)));
      i++;
      continue;
    }
    let n = 0;
    while (i + n < COLS.length && COLS[i + n].g === c.g) {
      r2.append(h('th', { scope: 'col', dataset: { col: COLS[i + n].f } }, colLabel(COLS[i + n])));
      n++;
    }
    r1.append(h('th', { scope: 'colgroup', colspan: n, class: 'group' }, t('col_' + c.g)));
    i += n;
  }
  table.append(h('thead', null, r1, r2));
  const body = h('tbody');
  for (const ch of stats.children) {
    // every child (a site too) has a page of its own
    const name = h('a', { href: hashFor({ tab: 'overview', region: ch.code }), title: t('drill_hint', { name: ch.name }) }, ch.name);
    body.append(statsRow(ch.code, h('th', { scope: 'row', class: 'area' }, name, h('span', { class: 'code' }, ch.code)), false));
  }
  if (!stats.children.length && !isSite) {
    body.append(h('tr', { class: 'empty-row' }, h('td', { colspan: COLS.length + 1 }, t('no_children'))));
  }
  table.append(body);
  table.append(h('tfoot', null, statsRow(stats.region.code,
    h('th', { scope: 'row', class: 'area' }, isSite ? stats.region.name : t('total'), h('span', { class: 'code' }, stats.region.code)), true)));
  table.dataset.key = tableKey(stats);
}

function tableKey(stats) {
  return [lang(), stats.region.code, stats.children.map((c) => c.code + c.name).join(',')].join('|');
}

const CARDS = [
  { k: 'persons_sampled', v: (s) => num(s.persons_sampled) },
  { k: 'persons_returned', v: (s) => num(s.persons_returned) },
  { k: 'clearance', v: (s) => pct(s.clearance), warn: (s) => isLow(s) },
  { k: 'positive', v: (s) => num(s.results.positive), warn: (s) => s.results.positive > 0 },
  { k: 'overdue', v: (s) => num(s.overdue), warn: (s) => s.overdue > 0 },
  { k: 'anomalies_open', v: (s) => num(s.anomalies_open), warn: (s) => s.anomalies_open > 0 },
  { k: 'followups_open', v: (s) => num(s.followups_open) },
  { k: 'tat', v: (s) => (s.tat_minutes.p50 === null ? '—' : `${num(s.tat_minutes.p50)} / ${num(s.tat_minutes.p90)}`) },
];

function renderCards(st, flash) {
  const box = $('cards');
  if (!st) {
    box.textContent = '';
    return;
  }
  if (box.dataset.lang !== lang() || !box.children.length) {
    box.textContent = '';
    for (const c of CARDS) {
      box.append(h('div', { class: 'stat-card', dataset: { card: c.k } },
        h('div', { class: 'stat-label' }, t('card_' + c.k)), h('div', { class: 'stat-value' })));
    }
    box.dataset.lang = lang();
  }
  for (const c of CARDS) {
    const card = box.querySelector(`[data-card="${c.k}"]`);
    const v = card.querySelector('.stat-value');
    const text = c.v(st);
    if (flash && v.textContent && v.textContent !== text) {
      card.classList.remove('changed');
      void card.offsetWidth;
      card.classList.add('changed');
    }
    v.textContent = text;
    card.classList.toggle('warn', !!(c.warn && c.warn(st)));
  }
}

function renderOverview(prev) {
  const st = S.stats;
  const table = $('stats-table');
  if (!st) {
    $('region-title').textContent = S.statsError ? S.region : '…';
    $('region-sub').textContent = '';
    renderCards(null);
    table.textContent = '';
    delete table.dataset.key;
    table.parentElement.hidden = true;
    $('stats-legend').hidden = true;
    $('charts').hidden = true;
    renderLive();
    return;
  }
  $('region-title').textContent = st.region.name;
  const scope = st.round ? t('scope_round', { round: st.round }) : t('scope_day', { day: st.day });
  $('region-sub').textContent = t('region_sub', { level: tc('level_', st.region.level), code: st.region.code, scope });
  const flash = !!prev && prev.region.code === st.region.code;
  renderCards(st.totals, flash);
  table.parentElement.hidden = false;
  if (table.dataset.key !== tableKey(st)) buildStatsTable(st);
  for (const ch of st.children) {
    const tr = table.querySelector(`tbody tr[data-code="${CSS.escape(ch.code)}"]`);
    if (tr) fillRow(tr, ch, flash);
  }
  fillRow(table.querySelector('tfoot tr'), st.totals, flash);
  $('stats-legend').hidden = false;
  $('charts').hidden = false;
  renderLive();
}

// ------------------------------------------------------------------------------------------
// Anomalies

function anomalyRegion() {
  // The list takes a GB/T 2260 region; a site's anomalies are listed with its township.
  if (/^\d+$/.test(S.region)) return S.region;
  const up = S.trail.length > 1 ? S.trail[S.trail.length - 2].code : '';
  return /^\d+$/.test(up) ? up : '';
}

async function loadAnomalies(more, keepCount) {
  const seq = ++S.anSeq;
  const err = $('an-error');
  const limit = keepCount ? Math.min(500, Math.max(PAGE, S.anomalies.length)) : PAGE;
  const q = { region: anomalyRegion(), state: S.anState, type: S.anType, limit, cursor: more ? S.anCursor : '' };
  try {
    const data = await S.api.get(withQuery('/v1/anomalies', q));
    if (seq !== S.anSeq) return;
    S.anomalies = more ? S.anomalies.concat(data.anomalies) : data.anomalies;
    S.anCursor = data.next_cursor || null;
    S.anLoaded = scopeKey() + S.anState + S.anType;
    clearError(err);
  } catch (e) {
    if (seq !== S.anSeq || unauthorized(e)) return;
    S.anomalies = [];
    S.anCursor = null;
    showError(err, e, 'region');
  }
  renderAnomalies();
}

function fillSelect(sel, values, labelKey, current) {
  sel.textContent = '';
  sel.append(h('option', { value: '' }, t('all')));
  for (const v of values) sel.append(h('option', { value: v }, t(labelKey + v)));
  sel.value = current;
}

/** "兴隆镇" for a code the page has seen (the stats' region and children, the trail), else the code. */
function regionLabel(code) {
  if (!code) return '—';
  const st = S.stats;
  const hit = (st && (st.region.code === code ? st.region : st.children.find((c) => c.code === code))) ||
    S.trail.find((e) => e.code === code && e.name);
  return hit ? [hit.name, ' ', h('span', { class: 'code' }, code)] : h('span', { class: 'mono' }, code);
}

function subjectCell(a) {
  const kind = tc('kind_', a.subject_kind);
  if (a.subject_kind === 'tube' || a.subject_kind === 'box') {
    return [h('span', { class: 'kind' }, kind), ' ',
      h('a', { href: hashFor({ tab: 'search', code: a.subject }), class: 'mono' }, a.subject)];
  }
  return [h('span', { class: 'kind' }, kind), ' ', h('span', { class: 'mono' }, a.subject)];
}

function renderAnomalies() {
  fillSelect($('an-state'), ANOMALY_STATES, 'state_', S.anState);
  fillSelect($('an-type'), ANOMALY_TYPES, 'type_', S.anType);
  const readOnly = S.role === 'viewer';
  $('an-readonly').hidden = !readOnly;
  $('an-scope').hidden = !S.token || /^\d+$/.test(S.region);
  const table = $('an-table');
  table.textContent = '';
  const list = S.anomalies;
  $('an-empty').hidden = !!list.length || !S.anLoaded;
  $('an-more').hidden = !S.anCursor;
  if (!list.length) return;
  const cols = ['opened_at', 'type', 'subject', 'region', 'round', 'state', 'owner', 'note', 'actions'];
  table.append(h('caption', { class: 'sr-only' }, t('anomalies_title')));
  table.append(h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, t('col_' + c))))));
  const body = h('tbody');
  for (const a of list) {
    const open = a.state === 'open' || a.state === 'acknowledged';
    const actions = h('td', { class: 'actions' });
    if (open) {
      const ack = h('button', { type: 'button', class: 'btn btn-small', dataset: { action: 'ack' } }, t('ack'));
      const res = h('button', { type: 'button', class: 'btn btn-small btn-primary', dataset: { action: 'resolve' } }, t('resolve'));
      ack.disabled = readOnly || a.state !== 'open';
      res.disabled = readOnly;
      if (readOnly) {
        ack.title = res.title = t('readonly_button');
      }
      ack.addEventListener('click', () => openAnomalyDialog(a, 'ack'));
      res.addEventListener('click', () => openAnomalyDialog(a, 'resolve'));
      actions.append(ack, ' ', res);
    }
    body.append(h('tr', { dataset: { id: a.id, state: a.state, type: a.type } },
      h('td', null, timeEl(a.opened_at)),
      h('td', null, tc('type_', a.type)),
      h('td', null, subjectCell(a)),
      h('td', null, regionLabel(a.region)),
      h('td', { class: 'mono' }, a.round || '—'),
      h('td', { dataset: { field: 'state' } }, h('span', { class: 'badge state-' + a.state }, tc('state_', a.state))),
      h('td', { dataset: { field: 'owner' } }, a.owner || '—'),
      h('td', { dataset: { field: 'note' }, class: 'note-cell' }, a.note || '—'),
      actions));
  }
  table.append(body);
}

let dialogTarget = null;

function openAnomalyDialog(a, action) {
  dialogTarget = { a, action };
  $('an-dialog-title').textContent = t(action === 'ack' ? 'ack_title' : 'resolve_title');
  $('an-dialog-sub').textContent = `${tc('type_', a.type)} · ${tc('kind_', a.subject_kind)} ${a.subject}`;
  $('an-dialog-label').textContent = t(action === 'ack' ? 'owner_label' : 'note_label');
  const input = $('an-dialog-input');
  input.value = '';
  input.maxLength = action === 'ack' ? 100 : 2000;
  input.rows = action === 'ack' ? 1 : 3;
  clearError($('an-dialog-error'));
  $('an-dialog').showModal();
  input.focus();
}

async function submitAnomalyDialog(ev) {
  ev.preventDefault();
  if (!dialogTarget) return;
  const { a, action } = dialogTarget;
  const text = $('an-dialog-input').value.trim();
  const err = $('an-dialog-error');
  if (!text) return showError(err, t('need_text'));
  const btn = $('an-dialog-submit');
  btn.disabled = true;
  try {
    const body = action === 'ack' ? { owner: text } : { note: text };
    const updated = await S.api.post(`/v1/anomalies/${encodeURIComponent(a.id)}/${action}`, body);
    const i = S.anomalies.findIndex((x) => x.id === a.id);
    if (i >= 0 && updated && updated.id) S.anomalies[i] = updated;
    $('an-dialog').close();
    dialogTarget = null;
    renderAnomalies();
    loadAnomalies(false, true);
  } catch (e) {
    if (unauthorized(e)) return;
    if (e instanceof ApiError && e.status === 403 && e.code === 'forbidden') {
      S.role = 'viewer';
      renderAnomalies();
    }
    showError(err, e, 'anomaly');
  } finally {
    btn.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------
// Lab arrivals

async function loadArrivals() {
  const seq = ++S.arrSeq;
  const err = $('arr-error');
  const lab = S.lab;
  try {
    const data = await S.api.get(`/v1/labs/${encodeURIComponent(lab)}/arrivals`);
    if (seq !== S.arrSeq) return;
    S.arrivals = data;
    store.set('lab', lab);
    clearError(err);
  } catch (e) {
    if (seq !== S.arrSeq || unauthorized(e)) return;
    S.arrivals = null;
    showError(err, e, 'lab');
  }
  renderArrivals();
}

function renderArrivals() {
  $('lab-code').value = S.lab;
  const table = $('arr-table');
  table.textContent = '';
  const data = S.arrivals;
  $('arr-empty').hidden = !data || data.arrivals.length > 0;
  if (!data || !data.arrivals.length) return;
  const cols = ['box', 'site', 'courier', 'tube_count', 'state', 'picked_up_at', 'expected_at', 'countdown', 'eta_basis'];
  table.append(h('caption', null, t('arrivals_for', { lab: data.lab })));
  table.append(h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, t('col_' + c))))));
  const body = h('tbody');
  for (const a of data.arrivals) {
    body.append(h('tr', { dataset: { box: a.box } },
      h('td', null, h('a', { class: 'mono', href: hashFor({ tab: 'search', code: a.box }) }, a.box)),
      h('td', { class: 'mono' }, a.site || '—'),
      h('td', { class: 'mono' }, a.courier || '—'),
      h('td', { class: 'num' }, num(a.tubes)),
      h('td', null, h('span', { class: 'badge arr-' + a.state }, tc('arr_', a.state))),
      h('td', null, timeEl(a.picked_up_at)),
      h('td', null, timeEl(a.expected_at)),
      h('td', { class: 'countdown', dataset: { expected: a.expected_at || '', state: a.state } }),
      h('td', null, tc('basis_', a.eta_basis))));
  }
  table.append(body);
  tickCountdowns();
}

function tickCountdowns() {
  const now = Date.now();
  for (const td of document.querySelectorAll('#arr-table td.countdown')) {
    if (td.dataset.state === 'delivered') {
      td.textContent = t('awaiting_receipt');
      td.className = 'countdown arrived';
      continue;
    }
    const at = parseTime(td.dataset.expected);
    if (Number.isNaN(at)) {
      td.textContent = '—';
      continue;
    }
    const left = at - now;
    td.textContent = left >= 0 ? t('due_in', { d: fmtDur(left) }) : t('late_by', { d: fmtDur(left) });
    td.className = 'countdown ' + (left >= 0 ? 'due' : 'late');
  }
}

function onLabForm(ev) {
  ev.preventDefault();
  const lab = $('lab-code').value.trim();
  if (!lab) return showError($('arr-error'), t('need_lab'));
  S.lab = lab;
  go({ tab: 'arrivals', lab });
  loadArrivals();
}

// ------------------------------------------------------------------------------------------
// Daily ledger

async function loadLedger() {
  const seq = ++S.ledgerSeq;
  const err = $('ledger-error');
  try {
    const data = await S.api.get(withQuery('/v1/ledger', scopeParams()));
    if (seq !== S.ledgerSeq) return;
    S.ledger = data;
    S.ledgerLoaded = scopeKey();
    clearError(err);
  } catch (e) {
    if (seq !== S.ledgerSeq || unauthorized(e)) return;
    S.ledger = null;
    showError(err, e, 'region');
  }
  renderLedger();
}

const DIFFS = ['tubes_not_sealed', 'tubes_sealed_not_received', 'tubes_received_not_resulted', 'tubes_rejected', 'boxes_not_received'];

function renderLedger() {
  const table = $('ledger-table');
  table.textContent = '';
  const data = S.ledger;
  const st = S.stats;
  const scope = S.round ? t('scope_round', { round: S.round }) : t('scope_day', { day: (st && st.day) || S.day || '' });
  $('ledger-sub').textContent = t('ledger_sub', { name: st ? st.region.name : S.region, scope });
  $('ledger-empty').hidden = !data || data.sites.length > 0;
  if (!data || !data.sites.length) return;
  const cols = ['site', 'persons_sampled', 'tubes_sealed_l', 'tubes_received_l', 'tubes_resulted_l', 'persons_returned_l', 'differences'];
  table.append(h('caption', { class: 'sr-only' }, t('ledger_title')));
  table.append(h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col' }, t('col_' + c))))));
  const body = h('tbody');
  for (const s of data.sites) {
    const d = s.differences;
    const diffs = h('div', { class: 'diffs' });
    for (const k of DIFFS) {
      if (!d[k] || !d[k].length) continue;
      diffs.append(h('div', { class: 'diff', dataset: { diff: k } },
        h('span', { class: 'diff-name' }, `${t('diff_' + k)} · ${d[k].length}`),
        d[k].map((code) => h('a', { class: 'chip mono', href: hashFor({ tab: 'search', code }) }, code))));
    }
    if (d.persons_not_returned > 0) {
      diffs.append(h('div', { class: 'diff', dataset: { diff: 'persons_not_returned' } },
        h('span', { class: 'diff-name' }, t('diff_persons_not_returned', { n: num(d.persons_not_returned) }))));
    }
    if (!diffs.children.length) diffs.append(h('span', { class: 'balanced' }, '✓ ' + t('ledger_balanced')));
    const c = s.counts;
    body.append(h('tr', { dataset: { code: s.code } },
      h('th', { scope: 'row', class: 'area' }, s.name, h('span', { class: 'code' }, s.code)),
      h('td', { class: 'num', dataset: { field: 'persons_sampled' } }, num(c.persons_sampled)),
      h('td', { class: 'num', dataset: { field: 'tubes_sealed' } }, num(c.tubes_sealed)),
      h('td', { class: 'num', dataset: { field: 'tubes_received' } }, num(c.tubes_received)),
      h('td', { class: 'num', dataset: { field: 'tubes_resulted' } }, num(c.tubes_resulted)),
      h('td', { class: 'num', dataset: { field: 'persons_returned' } }, num(c.persons_returned)),
      h('td', null, diffs)));
  }
  table.append(body);
}

// ------------------------------------------------------------------------------------------
// Tube / box search

async function search(code) {
  const seq = ++S.searchSeq;
  const err = $('search-error');
  $('search-code').value = code;
  clearError(err);
  let found = null;
  let failure = null;
  for (const kind of ['tube', 'box']) {
    try {
      found = { kind, code, data: await S.api.get(`/v1/${kind}s/${encodeURIComponent(code)}`) };
      break;
    } catch (e) {
      if (unauthorized(e)) return;
      if (!(e instanceof ApiError && e.status === 404)) {
        failure = e;
        break;
      }
    }
  }
  if (seq !== S.searchSeq) return;
  S.found = found;
  if (failure) showError(err, failure);
  else if (!found) showError(err, t('not_found_code', { code }));
  renderSearch();
}

function dl(rows) {
  const list = h('dl', { class: 'facts' });
  for (const [k, v] of rows) {
    if (v === null || v === undefined || v === '' || (Array.isArray(v) && !v.length)) continue;
    list.append(h('div', { dataset: { fact: k } }, h('dt', null, t('f_' + k)), h('dd', null, v)));
  }
  return list;
}

function codes(list) {
  return list.map((c) => h('a', { class: 'chip mono', href: hashFor({ tab: 'search', code: c }) }, c));
}

function timeline(events) {
  if (!events.length) return h('p', { class: 'muted' }, t('no_timeline'));
  const ol = h('ol', { class: 'timeline', 'aria-label': t('timeline_title') });
  for (const e of events) {
    const label = tc('ev_', e.type.replace('.', '_'));
    ol.append(h('li', { dataset: { type: e.type } },
      h('span', { class: 'tl-time' }, timeEl(e.at, true)),
      h('span', { class: 'tl-what' }, label),
      h('span', { class: 'tl-who' }, t('by', { role: tc('role_', e.sender_role), who: e.sender })),
      (e.anomalies || []).map((a) => h('span', { class: 'badge state-open' }, tc('type_', a)))));
  }
  return ol;
}

function anomalyList(list) {
  if (!list || !list.length) return null;
  return h('div', { class: 'found-anomalies' }, h('h4', null, t('anomalies_of')),
    h('ul', null, list.map((a) => h('li', null, h('span', { class: 'badge state-' + a.state }, tc('state_', a.state)), ' ',
      tc('type_', a.type), ' · ', timeEl(a.opened_at), a.owner ? ' · ' + a.owner : '', a.note ? ' · ' + a.note : ''))));
}

function renderSearch() {
  const out = $('search-result');
  out.textContent = '';
  const f = S.found;
  if (!f) return;
  const d = f.data;
  if (f.kind === 'tube') {
    const res = d.result ? h('span', { class: 'badge res-' + d.result }, tc('res_', d.result)) : null;
    out.append(h('article', { class: 'card found', dataset: { kind: 'tube', code: d.code } },
      h('h3', null, t('tube_title', { code: d.code }), ' ', h('span', { class: 'badge' }, tc('ts_', d.state))),
      dl([['round', d.round], ['site', d.site], ['capacity', d.capacity === 1 ? t('capacity_1') : t('capacity_n', { n: d.capacity })],
        ['sampled', num(d.sampled)], ['seal_count', d.seal_count === null ? null : num(d.seal_count)],
        ['box', d.box ? codes([d.box]) : null], ['destination_lab', d.destination_lab], ['lab', d.lab], ['result', res],
        ['reject_reason', d.reject_reason ? tc('reason_', d.reject_reason) : null]]),
      d.persons && d.persons.length ? h('div', null, h('h4', null, t('persons_title')),
        h('ul', { class: 'persons' }, d.persons.map((p) => h('li', null, h('span', { class: 'mono' }, p.id_number), p.name ? ' ' + p.name : '',
          p.phone ? ' ' + p.phone : '', ' · ', timeEl(p.sampled_at))))) : null,
      h('h4', null, t('timeline_title')), timeline(d.timeline), anomalyList(d.anomalies)));
  } else {
    out.append(h('article', { class: 'card found', dataset: { kind: 'box', code: d.code } },
      h('h3', null, t('box_title', { code: d.code }), ' ', h('span', { class: 'badge' }, tc('ts_', d.state))),
      dl([['site', d.site], ['destination_lab', d.destination_lab], ['receiving_lab', d.receiving_lab], ['courier', d.courier],
        ['seal_count', d.seal_count === null ? null : num(d.seal_count)], ['manifest', codes(d.manifest)],
        ['received', codes(d.received)], ['missing', codes(d.missing)], ['unexpected', codes(d.unexpected)]]),
      h('h4', null, t('timeline_title')), timeline(d.timeline), anomalyList(d.anomalies)));
  }
}

function onSearchForm(ev) {
  ev.preventDefault();
  const code = $('search-code').value.trim();
  if (!code) return showError($('search-error'), t('need_code'));
  if (code === S.code) search(code);
  else go({ tab: 'search', code });
}

// ------------------------------------------------------------------------------------------
// Language

function switchLang() {
  setLang(lang() === 'en' ? 'zh-CN' : 'en');
  applyStatic();
  delete $('stats-table').dataset.key;
  delete $('cards').dataset.lang;
  renderOverview();
  if (S.charts) renderCharts(S.charts, childWord(), lang());
  renderCrumbs();
  renderAnomalies();
  renderArrivals();
  renderLedger();
  renderSearch();
  renderLive();
  for (const box of document.querySelectorAll('.error')) {
    if (box.hidden) continue;
    if (box.tlError) showError(box, box.tlError.e, box.tlError.what);
    else clearError(box); // a hint about the form, said again at the next submit
  }
}

// ------------------------------------------------------------------------------------------
// Start

function init() {
  applyStatic();
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', () => logout());
  $('lang-switch').addEventListener('click', switchLang);
  $('filters').addEventListener('submit', onFilters);
  $('lab-form').addEventListener('submit', onLabForm);
  $('search-form').addEventListener('submit', onSearchForm);
  $('an-filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadAnomalies(false);
  });
  $('an-state').addEventListener('change', (ev) => {
    S.anState = ev.target.value;
    loadAnomalies(false);
  });
  $('an-type').addEventListener('change', (ev) => {
    S.anType = ev.target.value;
    loadAnomalies(false);
  });
  $('an-more').addEventListener('click', () => loadAnomalies(true));
  $('an-dialog-form').addEventListener('submit', submitAnomalyDialog);
  $('an-dialog-cancel').addEventListener('click', () => {
    dialogTarget = null;
    $('an-dialog').close();
  });
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  for (const b of tabs) {
    b.addEventListener('click', () => go({ tab: b.dataset.tab }));
    b.addEventListener('keydown', (ev) => {
      const i = tabs.indexOf(b);
      let j = -1;
      if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
      else if (ev.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = tabs.length - 1;
      if (j < 0) return;
      ev.preventDefault();
      tabs[j].focus();
      go({ tab: tabs[j].dataset.tab });
    });
  }
  window.addEventListener('hashchange', route);
  S.lab = store.get('lab');
  renderAnomalies();
  const token = store.get('token');
  if (token) {
    S.token = token;
    S.api = makeApi(token);
    probeRole();
    route();
  } else {
    showLogin();
  }
}

init();
