#!/usr/bin/env node
// dashboard.test.js — the officials' dashboard in a real browser (ctest browser_dashboard).
//
// Debian's chromium, driven by playwright-core, opens the dashboard that a private tubeloopd
// serves over TLS from clients/web, against a fresh database in the ctest PostgreSQL fixture.
// The registry (county 230126 巴彦县, two townships, three sites, a lab, a courier, a round) and
// a morning of events go in through the API with real tokens; then the test checks what a
// person at the screen would check:
//   - a bad token is refused in words, on a page that is Chinese by default;
//   - the county table shows exactly the figures of GET /v1/stats (every column, every row, the
//     totals), flags the overdue township and the low clearance, and draws the three charts;
//   - a sample posted meanwhile changes the number on screen within seconds, without a reload;
//   - drilling down to a township, then a site, shows GET /v1/stats's figures there too, and the
//     breadcrumb leads back;
//   - the English switch changes the labels (and back);
//   - a viewer of township A is told that township B is outside its scope and sees none of B's
//     figures; its anomaly buttons are disabled, and a forced try shows the server's 403;
//   - a supervisor acknowledges (owner) and resolves (note) an anomaly, and the list shows the
//     new state, as the API does;
//   - the lab arrival board counts down; the ledger names the open differences; the tube search
//     shows the custody timeline;
//   - no script error and no Content-Security-Policy violation on any page;
//   - the daemon, with live streams open, stops cleanly on SIGTERM (exit 0: sanitizers quiet).
// Chromium trusts exactly the daemon's fresh self-signed certificate (its SPKI pin).
// Screenshots of each step go to $TUBELOOP_TEST_TMP/browser-artifacts (kept as artifacts).
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it, before, after } = require('node:test');

const H = require('./harness.js');
const { E, COUNTY, TOWN1, TOWN2 } = H;

const SOURCE = process.env.TUBELOOP_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const WEB = path.join(SOURCE, 'clients', 'web');
const CHROMIUM = process.env.TUBELOOP_CHROMIUM || '/usr/bin/chromium';
const ROUND = 'BR-R1';
const FIELDS = ['persons_sampled', 'persons_returned', 'clearance', 'tubes.open', 'tubes.sealed', 'tubes.in_transit',
  'tubes.received', 'tubes.resulted', 'tubes.rejected', 'results.negative', 'results.positive', 'results.invalid',
  'overdue', 'anomalies_open', 'followups_open', 'tat_minutes.p50', 'tat_minutes.p90'];

let playwright;
let db;
let daemon;
let context;
let profileDir;
let artifacts;
let shot = 0;
const T = {}; // tokens by name
const problems = []; // console errors and CSP violations, from every page
const person = H.makePeople(20211008);

// ------------------------------------------------------------------------------------------
// helpers

async function poll(what, fn, timeoutMs = 10000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await H.sleep(everyMs);
  }
}

async function snap(page, name, fullPage = false) {
  shot += 1;
  const file = path.join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage });
  return file;
}

function pick(obj, dotted) {
  return dotted.split('.').reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

/** What the dashboard shows for a figure: integers as digits, clearance as "27.8%", no turnaround as "—". */
function expected(stats, field) {
  const v = pick(stats, field);
  if (field === 'clearance') return (Number(v) * 100).toFixed(1) + '%';
  if (v === null || v === undefined) return '—';
  return String(v);
}

function normalise(field, text) {
  if (field === 'clearance' || text === '—') return text.trim();
  return text.replace(/[^\d-]/g, '');
}

/** The stats table as the page shows it: {code: {name, cls, cells: {field: text}}}. */
function readTable(page) {
  return page.evaluate(() => {
    const out = {};
    for (const tr of document.querySelectorAll('#stats-table tr[data-code]')) {
      const cells = {};
      for (const td of tr.querySelectorAll('td[data-field]')) cells[td.dataset.field] = td.querySelector('.v').textContent;
      const th = tr.querySelector('th');
      out[tr.dataset.code] = { name: th.firstChild ? th.firstChild.textContent : '', cls: tr.className, cells,
        section: tr.parentElement.tagName.toLowerCase() };
    }
    return out;
  });
}

function assertRowEquals(row, stats, label) {
  assert.ok(row, `${label}: the row is on the page`);
  for (const f of FIELDS) {
    assert.equal(normalise(f, row.cells[f]), expected(stats, f), `${label}: ${f} on screen equals GET /v1/stats`);
  }
}

const openPages = new Set();

/** it() that, when the step fails, keeps a screenshot of every open page for the post-mortem. */
function step(name, fn) {
  it(name, async () => {
    try {
      await fn();
    } catch (e) {
      let i = 0;
      for (const p of openPages) {
        i += 1;
        await p.screenshot({ path: path.join(artifacts, `FAILED-${name.replace(/\W+/g, '-')}-${i}.png`) }).catch(() => {});
      }
      throw e;
    }
  });
}

async function newPage() {
  const page = await context.newPage();
  openPages.add(page);
  page.on('close', () => openPages.delete(page));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    // the browser logs every 4xx answer; those are expected (bad token, out of scope, the role probe)
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return;
    problems.push(`console: ${text}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  return page;
}

async function signIn(page, token, region) {
  await page.goto(daemon.url('/'));
  await page.fill('#login-token', token);
  await page.fill('#login-region', region);
  await page.click('#login-submit');
}

async function waitRow(page, code) {
  await page.waitForSelector(`#stats-table tr[data-code="${code}"] td[data-field="persons_sampled"] .v:not(:empty)`, { timeout: 10000 });
}

// ------------------------------------------------------------------------------------------
// set-up: database, daemon, registry, a morning of events, the browser

async function seed(admin) {
  await H.loadRegistry(admin);
  await admin.ok('POST', '/v1/admin/rounds', { code: ROUND, name: '全员核酸第一轮', region: COUNTY, day: H.todayCst(), pool_size: 10 }, 201);
  for (const [name, role, scope] of [['s1', 'collector', 'S1'], ['s2', 'collector', 'S2'], ['s3', 'collector', 'S3'],
    ['c1', 'courier', 'C1'], ['l1', 'lab', 'L1'], ['viewerCounty', 'viewer', COUNTY], ['viewerTown1', 'viewer', TOWN1],
    ['supervisor', 'supervisor', COUNTY]]) {
    T[name] = await H.makeToken(admin, role, scope);
  }
  const c = (name) => new H.Client(daemon, T[name]);
  const samples = (from, tube, n) => Array.from({ length: n }, (_, i) => E.sample(from + i, tube, person()));

  // S1 (兴隆镇): two tubes boxed, carried, received; one negative, one pooled positive
  await c('s1').send([E.tubeOpen(-180, 'BR-S1-T01', ROUND), ...samples(-179, 'BR-S1-T01', 5), E.tubeSeal(-174, 'BR-S1-T01', 5),
    E.tubeOpen(-170, 'BR-S1-T02', ROUND), ...samples(-169, 'BR-S1-T02', 3), E.tubeSeal(-165, 'BR-S1-T02', 3),
    E.boxPack(-160, 'BR-S1-B01', ['BR-S1-T01', 'BR-S1-T02']), E.boxSeal(-159, 'BR-S1-B01', 'L1')]);
  await c('c1').send([E.pickup(-150, 'BR-S1-B01'), E.deliver(-120, 'BR-S1-B01', 'L1')]);
  await c('l1').send([E.receive(-115, 'BR-S1-B01', ['BR-S1-T01', 'BR-S1-T02']),
    E.result(-60, 'BR-S1-T01', 'negative'), E.result(-50, 'BR-S1-T02', 'positive')]);
  // S1: a third tube on the road now (due in a few minutes), a fourth still open
  await c('s1').send([E.tubeOpen(-40, 'BR-S1-T03', ROUND), ...samples(-39, 'BR-S1-T03', 4), E.tubeSeal(-30, 'BR-S1-T03'),
    E.boxPack(-29, 'BR-S1-B02', ['BR-S1-T03']), E.boxSeal(-28, 'BR-S1-B02', 'L1'),
    E.tubeOpen(-10, 'BR-S1-T04', ROUND), ...samples(-9, 'BR-S1-T04', 2)]);
  await c('c1').send([E.pickup(-20, 'BR-S1-B02')]);
  // S2 (兴隆镇): all returned negative; one tube sealed with a wrong count (an anomaly)
  await c('s2').send([E.tubeOpen(-100, 'BR-S2-T01', ROUND), ...samples(-99, 'BR-S2-T01', 4), E.tubeSeal(-95, 'BR-S2-T01', 5),
    E.tubeOpen(-94, 'BR-S2-T02', ROUND), ...samples(-93, 'BR-S2-T02', 3), E.tubeSeal(-90, 'BR-S2-T02'),
    E.boxPack(-88, 'BR-S2-B01', ['BR-S2-T01', 'BR-S2-T02']), E.boxSeal(-87, 'BR-S2-B01', 'L1')]);
  await c('c1').send([E.pickup(-80, 'BR-S2-B01'), E.deliver(-60, 'BR-S2-B01', 'L1')]);
  await c('l1').send([E.receive(-58, 'BR-S2-B01', ['BR-S2-T01', 'BR-S2-T02']),
    E.result(-30, 'BR-S2-T01', 'negative'), E.result(-29, 'BR-S2-T02', 'negative')]);
  // S3 (西集镇): a box sealed five and a half hours ago, picked up, never received (overdue),
  // and a tube sealed an hour ago, not packed yet
  await c('s3').send([E.tubeOpen(-330, 'BR-S3-T01', ROUND), ...samples(-329, 'BR-S3-T01', 6), E.tubeSeal(-320, 'BR-S3-T01'),
    E.boxPack(-315, 'BR-S3-B01', ['BR-S3-T01']), E.boxSeal(-314, 'BR-S3-B01', 'L1'),
    E.tubeOpen(-60, 'BR-S3-T02', ROUND), ...samples(-59, 'BR-S3-T02', 2), E.tubeSeal(-55, 'BR-S3-T02')]);
  await c('c1').send([E.pickup(-300, 'BR-S3-B01')]);
}

before(async () => {
  try {
    await setUp();
  } catch (e) {
    // said first: otherwise it comes last, after a cancellation notice for every step
    console.error(`# set-up failed: ${e.stack || e}`);
    if (daemon && daemon.proc) console.error(`# tubeloopd log:\n${daemon.logTail(20)}`);
    throw e;
  }
});

async function setUp() {
  try {
    playwright = require('playwright-core');
  } catch (e) {
    throw new Error('playwright-core is not installed in tests/browser: run scripts/test.sh (or `npm ci` there)');
  }
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/test.sh (apt-get install chromium)`);
  for (const f of ['uPlot.iife.min.js', 'uPlot.min.css']) {
    if (!fs.existsSync(path.join(WEB, 'vendor', f))) throw new Error(`clients/web/vendor/${f} is missing: run scripts/test.sh (tl_web)`);
  }
  artifacts = path.join(H.needEnv('TUBELOOP_TEST_TMP'), 'browser-artifacts');
  fs.rmSync(artifacts, { recursive: true, force: true });
  fs.mkdirSync(artifacts, { recursive: true });

  db = new H.Database('dash');
  daemon = new H.Daemon(db, WEB);
  await daemon.start(['--sweep-interval', '1']);
  const admin = new H.Client(daemon, daemon.adminToken());
  await seed(admin);
  // the overdue sweep (every second here) flags 西集镇's box; wait for it so the figures hold still
  await poll('the overdue sweep', async () => {
    const r = await new H.Client(daemon, T.viewerCounty).get(`/v1/stats?region=${COUNTY}`);
    return r.status === 200 && r.json.totals.overdue >= 1;
  });

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tubeloop-chromium-'));
  context = await playwright.chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // trust exactly this daemon's certificate (self-signed, made above), nothing else
      `--ignore-certificate-errors-spki-list=${daemon.spki()}`],
  });
  profileDir = profile;
  context.setDefaultTimeout(10000);
}

after(async () => {
  if (context) await context.close().catch(() => {});
  if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
  if (daemon) {
    const rc = await daemon.stop();
    if (artifacts) fs.copyFileSync(daemon.log, path.join(artifacts, 'daemon.log'));
    daemon.cleanup();
    if (rc !== 0) console.log(`# tubeloopd exited with ${rc}`);
  }
  if (db) db.drop();
  if (artifacts) console.log(`# screenshots: ${artifacts}`);
});

// ------------------------------------------------------------------------------------------

describe('officials dashboard', () => {
  let page;

  step('is Chinese by default and refuses an unknown token in words', async () => {
    page = await newPage();
    const res = await page.goto(daemon.url('/'));
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-security-policy'] || '', /script-src 'self'/, 'the page comes with the strict CSP');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal((await page.textContent('#login-title')).trim(), '登录看板');
    await signIn(page, 'tl_' + '0'.repeat(64), COUNTY);
    await page.waitForSelector('#login-error:not([hidden])');
    assert.match(await page.textContent('#login-error'), /令牌无效或已被吊销/);
    assert.ok(await page.isHidden('#app'), 'nothing behind the sign-in is shown');
    await snap(page, 'login-refused');
  });

  step('shows the county table with the figures of GET /v1/stats, flags and charts', async () => {
    await signIn(page, T.viewerCounty, COUNTY);
    await waitRow(page, TOWN2);
    const api = (await new H.Client(daemon, T.viewerCounty).ok('GET', `/v1/stats?region=${COUNTY}`));
    const shown = await readTable(page);
    assert.equal(api.children.length, 2);
    for (const ch of api.children) {
      assertRowEquals(shown[ch.code], ch, ch.name);
      assert.equal(shown[ch.code].name, ch.name);
    }
    assertRowEquals(shown[COUNTY], api.totals, 'county totals');
    assert.equal(shown[COUNTY].section, 'tfoot');
    assert.equal(api.totals.persons_sampled, 29, 'the seeded persons are all counted');
    // 西集镇 has the overdue box: its row is flagged red; both townships are below 90%
    assert.ok(api.children.find((c) => c.code === TOWN2).overdue >= 1);
    assert.match(shown[TOWN2].cls, /row-overdue/);
    assert.ok(await page.isVisible(`#stats-table tr[data-code="${TOWN2}"] td[data-field="overdue"].flag-overdue`));
    assert.match(shown[TOWN1].cls, /row-low/);
    assert.equal(await page.textContent('#region-title'), '巴彦县');
    assert.equal(await page.textContent('[data-card="persons_sampled"] .stat-value'), String(api.totals.persons_sampled));
    // three charts drawn by uPlot
    await poll('three charts', async () => (await page.locator('#charts canvas').count()) === 3);
    const url = page.url();
    assert.ok(!url.includes(T.viewerCounty), 'the token is never in the address');
    await snap(page, 'county');
    await snap(page, 'county-full', true);
  });

  step('updates a figure live when a sample is added, without a reload', async () => {
    let navigations = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });
    await page.evaluate(() => { window.__sameDocument = 'still here'; });
    await poll('the live stream', async () => (await page.getAttribute('#live', 'data-state')) === 'live');
    const cell = `#stats-table tr[data-code="${TOWN1}"] td[data-field="persons_sampled"] .v`;
    const total = `#stats-table tr[data-code="${COUNTY}"] td[data-field="persons_sampled"] .v`;
    const before = Number(await page.textContent(cell));
    const beforeTotal = Number(await page.textContent(total));
    const t0 = Date.now();
    await new H.Client(daemon, T.s1).send([E.sample(0, 'BR-S1-T04', person())]);
    await poll('the new sample on screen', async () => Number(await page.textContent(cell)) === before + 1, 8000, 50);
    const took = Date.now() - t0;
    assert.equal(Number(await page.textContent(total)), beforeTotal + 1);
    assert.equal(await page.evaluate(() => window.__sameDocument), 'still here', 'the page was not reloaded');
    assert.equal(navigations, 0, 'no navigation happened');
    const api = await new H.Client(daemon, T.viewerCounty).ok('GET', `/v1/stats?region=${COUNTY}`);
    assert.equal(api.children.find((c) => c.code === TOWN1).persons_sampled, before + 1);
    console.log(`# live update on screen after ${took} ms`);
    await snap(page, 'live-update');
  });

  step('drills down from the county to a township and its sites', async () => {
    await page.click(`#stats-table tr[data-code="${TOWN1}"] th a`);
    await waitRow(page, 'S1');
    const api = await new H.Client(daemon, T.viewerCounty).ok('GET', `/v1/stats?region=${TOWN1}`);
    const shown = await readTable(page);
    for (const ch of api.children) assertRowEquals(shown[ch.code], ch, ch.name);
    assertRowEquals(shown[TOWN1], api.totals, 'township totals');
    assert.deepEqual(await page.locator('#crumbs li').allTextContents(), ['巴彦县', '兴隆镇']);
    // S2 is all returned: no low-clearance flag; S1 has the pooled positive waiting
    assert.doesNotMatch(shown.S2.cls, /row-low/);
    assert.match(shown.S1.cls, /row-low/);
    await snap(page, 'township');
    // a site: its own figures in the totals row, no children
    await page.click('#stats-table tr[data-code="S1"] th a');
    await page.waitForSelector('#stats-table tfoot tr[data-code="S1"] td[data-field="persons_sampled"] .v:not(:empty)');
    const site = await new H.Client(daemon, T.viewerCounty).ok('GET', '/v1/stats?region=S1');
    assert.equal(site.region.level, 'site');
    assertRowEquals((await readTable(page)).S1, site.totals, 'site S1');
    assert.equal(await page.locator('#stats-table tbody tr').count(), 0);
    assert.deepEqual(await page.locator('#crumbs li').allTextContents(), ['巴彦县', '兴隆镇', '兴隆镇第一采样点']);
    await page.click('#crumbs a >> text=巴彦县');
    await waitRow(page, TOWN1);
    assert.deepEqual(await page.locator('#crumbs li').allTextContents(), ['巴彦县']);
  });

  step('switches the labels to English and back', async () => {
    const th = '#stats-table th[data-col="persons_sampled"]';
    assert.equal(await page.textContent(th), '采样人数');
    await page.click('#lang-switch');
    await poll('English labels', async () => (await page.textContent(th)) === 'Persons sampled');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    assert.equal(await page.textContent('#tab-anomalies'), 'Anomalies');
    assert.equal(await page.textContent('#live-text'), 'Live');
    assert.equal(await page.textContent('#lang-switch'), '中文');
    const head = await page.textContent('#stats-table thead');
    assert.doesNotMatch(head, /[\u4e00-\u9fff]/, 'no Chinese left in the table header');
    await snap(page, 'english');
    await page.click('#lang-switch');
    await poll('Chinese labels', async () => (await page.textContent(th)) === '采样人数');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  });

  step('keeps a township viewer out of the other township', async () => {
    const viewer = await newPage(); // a new tab: its own sessionStorage, so signed out
    // straight at sign-in
    await signIn(viewer, T.viewerTown1, TOWN2);
    await viewer.waitForSelector('#login-error:not([hidden])');
    assert.match(await viewer.textContent('#login-error'), /不在您的令牌权限范围内/);
    // signed in to its own township, then asking for the other one
    await signIn(viewer, T.viewerTown1, TOWN1);
    await waitRow(viewer, 'S1');
    await viewer.fill('#f-region', TOWN2);
    await viewer.click('#filters button[type="submit"]');
    await viewer.waitForSelector('#view-error:not([hidden])');
    const msg = await viewer.textContent('#view-error');
    assert.match(msg, /该区域不在您的令牌权限范围内/);
    assert.match(msg, /outside this token's scope/, "the server's own message is quoted");
    const api = await new H.Client(daemon, T.viewerTown1).get(`/v1/stats?region=${TOWN2}`);
    assert.equal(api.status, 403);
    assert.equal(await viewer.locator('#stats-table tr').count(), 0, 'no table of the other township');
    assert.equal(await viewer.locator('[data-code="S3"], [data-code="230126102"]').count(), 0);
    const text = await viewer.textContent('#panel-overview');
    assert.doesNotMatch(text, /西集镇/, "the other township's name is not shown");
    assert.equal(await viewer.locator('#cards .stat-card').count(), 0, 'no figures of the other township');
    await snap(viewer, 'viewer-out-of-scope');
    // the anomaly list is read-only for a viewer
    await viewer.fill('#f-region', TOWN1);
    await viewer.click('#filters button[type="submit"]');
    await waitRow(viewer, 'S1');
    await viewer.click('#tab-anomalies');
    await viewer.waitForSelector('#an-table tbody tr');
    await poll('read-only note', async () => viewer.isVisible('#an-readonly'));
    const buttons = viewer.locator('#an-table button[data-action]');
    assert.ok((await buttons.count()) > 0);
    for (const b of await buttons.all()) assert.ok(await b.isDisabled(), 'anomaly actions are disabled for a viewer');
    await snap(viewer, 'viewer-anomalies');
    // had the page not known (say the role check failed), the server's refusal is shown in words
    const id = await viewer.getAttribute('#an-table tbody tr', 'data-id');
    await viewer.evaluate(() => { document.querySelector('#an-table button[data-action="ack"]').disabled = false; });
    await viewer.click('#an-table button[data-action="ack"]');
    await viewer.fill('#an-dialog-input', '李科长');
    await viewer.click('#an-dialog-submit');
    await viewer.waitForSelector('#an-dialog-error:not([hidden])');
    const refusal = await viewer.textContent('#an-dialog-error');
    assert.match(refusal, /您的令牌角色无权执行此操作/);
    assert.match(refusal, /may not make this call/, "the server's 403 message is quoted");
    await snap(viewer, 'viewer-refused');
    const still = (await new H.Client(daemon, T.viewerTown1).ok('GET', `/v1/anomalies?region=${TOWN1}`)).anomalies.find((a) => a.id === id);
    assert.equal(still.state, 'open', 'nothing changed');
    await viewer.close();
  });

  step('lets a supervisor acknowledge and resolve an anomaly', async () => {
    const sup = await newPage();
    const api = new H.Client(daemon, T.supervisor);
    const list = (await api.ok('GET', `/v1/anomalies?region=${COUNTY}&type=seal_count_mismatch`)).anomalies;
    const target = list.find((a) => a.subject === 'BR-S2-T01');
    assert.ok(target, 'the seal count mismatch of BR-S2-T01 is open');
    assert.equal(target.state, 'open');
    await signIn(sup, T.supervisor, COUNTY);
    await waitRow(sup, TOWN1);
    await sup.click('#tab-anomalies');
    const row = `#an-table tr[data-id="${target.id}"]`;
    await sup.waitForSelector(row);
    assert.equal(await sup.textContent(`${row} [data-field="state"]`), '待处理');
    await sup.click(`${row} button[data-action="ack"]`);
    await sup.waitForSelector('#an-dialog[open]');
    await sup.fill('#an-dialog-input', '王主任');
    await snap(sup, 'anomaly-ack-dialog');
    await sup.click('#an-dialog-submit');
    await poll('acknowledged on screen', async () => (await sup.textContent(`${row} [data-field="state"]`)) === '已认领');
    assert.equal(await sup.textContent(`${row} [data-field="owner"]`), '王主任');
    await snap(sup, 'anomaly-acknowledged');
    await sup.click(`${row} button[data-action="resolve"]`);
    await sup.waitForSelector('#an-dialog[open]');
    await sup.fill('#an-dialog-input', '已核实：封管时漏数一人，现场已更正');
    await sup.click('#an-dialog-submit');
    await poll('resolved on screen', async () => (await sup.textContent(`${row} [data-field="state"]`)) === '已办结');
    assert.equal(await sup.textContent(`${row} [data-field="note"]`), '已核实：封管时漏数一人，现场已更正');
    assert.equal(await sup.locator(`${row} button`).count(), 0, 'a resolved anomaly offers no more actions');
    const after = (await api.ok('GET', `/v1/anomalies?region=${COUNTY}&type=seal_count_mismatch`)).anomalies
      .find((a) => a.id === target.id);
    assert.equal(after.state, 'resolved');
    assert.equal(after.owner, '王主任');
    assert.equal(after.note, '已核实：封管时漏数一人，现场已更正');
    await snap(sup, 'anomaly-resolved');
    await sup.close();
  });

  step('counts down on the lab arrival board', async () => {
    await page.click('#tab-arrivals');
    await page.fill('#lab-code', 'L1');
    await page.click('#lab-form button[type="submit"]');
    const api = await new H.Client(daemon, T.viewerCounty).ok('GET', '/v1/labs/L1/arrivals');
    assert.deepEqual(api.arrivals.map((a) => a.box).sort(), ['BR-S1-B02', 'BR-S3-B01']);
    await page.waitForSelector('#arr-table tr[data-box="BR-S1-B02"] td.countdown:not(:empty)');
    const due = `#arr-table tr[data-box="BR-S1-B02"] td.countdown`;
    const late = `#arr-table tr[data-box="BR-S3-B01"] td.countdown`;
    assert.match(await page.textContent(due), /^还有 /);
    assert.match(await page.textContent(late), /^已超时 /);
    const first = await page.textContent(due);
    await poll('the countdown to tick', async () => (await page.textContent(due)) !== first, 3000);
    await snap(page, 'arrivals');
  });

  step('names the open differences in the daily ledger', async () => {
    await page.click('#tab-ledger');
    await page.waitForSelector('#ledger-table tr[data-code="S3"]');
    const api = await new H.Client(daemon, T.viewerCounty).ok('GET', `/v1/ledger?region=${COUNTY}`);
    for (const s of api.sites) {
      for (const [k, v] of Object.entries(s.counts)) {
        assert.equal(await page.textContent(`#ledger-table tr[data-code="${s.code}"] td[data-field="${k}"]`), String(v), `${s.code} ${k}`);
      }
    }
    const s3 = await page.textContent('#ledger-table tr[data-code="S3"] [data-diff="tubes_sealed_not_received"]');
    assert.match(s3, /BR-S3-T01/);
    assert.match(s3, /BR-S3-T02/);
    assert.match(await page.textContent('#ledger-table tr[data-code="S3"] [data-diff="boxes_not_received"]'), /BR-S3-B01/);
    assert.match(await page.textContent('#ledger-table tr[data-code="S2"]'), /账实相符/);
    await snap(page, 'ledger');
  });

  step('shows a tube\'s custody timeline in the search', async () => {
    await page.click('#ledger-table a.chip >> text=BR-S3-T01'); // a difference links to its tube
    await page.waitForSelector('#search-result article[data-code="BR-S3-T01"]');
    await page.fill('#search-code', 'BR-S1-T02');
    await page.click('#search-form button[type="submit"]');
    await page.waitForSelector('#search-result article[data-code="BR-S1-T02"]');
    const api = await new H.Client(daemon, T.viewerCounty).ok('GET', '/v1/tubes/BR-S1-T02');
    const items = page.locator('#search-result .timeline li');
    assert.equal(await items.count(), api.timeline.length);
    assert.deepEqual(await items.evaluateAll((els) => els.map((e) => e.dataset.type)), api.timeline.map((e) => e.type));
    assert.match(await items.first().textContent(), /开管/);
    assert.match(await items.last().textContent(), /出结果/);
    assert.match(await page.textContent('#search-result'), /阳性/);
    // persons are masked, as the API gives them
    const masked = await page.locator('#search-result .persons li .mono').allTextContents();
    assert.deepEqual(masked, api.persons.map((p) => p.id_number));
    assert.ok(masked.every((m) => /\*{8}/.test(m)));
    await snap(page, 'tube-search');
  });

  step('raised no script error and no CSP violation', () => {
    assert.deepEqual(problems, []);
  });

  step('leaves a daemon that stops cleanly (live streams open, sanitizers quiet)', async () => {
    await context.close();
    context = null;
    const rc = await daemon.stop();
    assert.equal(rc, 0, `tubeloopd exit status after SIGTERM; its log ends:\n${daemon.logTail(40)}`);
  });
});
