// harness.js — what the browser test needs around the browser: a fresh database in the ctest
// PostgreSQL fixture, a private `tubeloopd serve` over TLS serving clients/web, an HTTPS client
// that trusts only that daemon's certificate, synthetic people, event builders and the standard
// registry (county 230126 巴彦县 with two townships). Same approach as tests/e2e/py/tubeloop_test.py.
//
// Environment (set by ctest, tests/CMakeLists.txt): TUBELOOPD, TUBELOOP_TEST_DB,
// TUBELOOP_TEST_PG_SH, TUBELOOP_TEST_PG_DIR, TUBELOOP_TEST_TMP, TUBELOOP_SOURCE_DIR.
// TUBELOOP_TEST_KEEP=1 keeps the database and the daemon's folder for a post-mortem.
'use strict';

const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const https = require('node:https');
const path = require('node:path');

function needEnv(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this test through ctest (ctest -R browser)`);
  return v;
}

const keep = () => process.env.TUBELOOP_TEST_KEEP === '1';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(argv, opts = {}) {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000, ...opts });
  } catch (e) {
    throw new Error(`${argv.slice(0, 2).join(' ')} failed (${e.status}): ${e.stderr || ''}${e.stdout || ''}`);
  }
}

// ------------------------------------------------------------------------------------------
// Database: one per run

class Database {
  constructor(label) {
    this.base = needEnv('TUBELOOP_TEST_DB');
    this.pgSh = needEnv('TUBELOOP_TEST_PG_SH');
    this.pgDir = needEnv('TUBELOOP_TEST_PG_DIR');
    if (!/\bdbname=\S+/.test(this.base)) throw new Error('TUBELOOP_TEST_DB has no dbname=');
    this.name = `tlbr_${label}_${crypto.randomBytes(5).toString('hex')}`;
    this.conninfo = this.base.replace(/\bdbname=\S+/, 'dbname=' + this.name);
    run([this.pgSh, 'psql', this.pgDir, '-q', '-c', `CREATE DATABASE "${this.name}"`]);
    run([needEnv('TUBELOOPD'), 'migrate', '--db', this.conninfo]);
  }

  drop() {
    if (keep()) {
      console.log('TUBELOOP_TEST_KEEP: database kept:', this.name);
      return;
    }
    try {
      run([this.pgSh, 'psql', this.pgDir, '-q', '-c', `DROP DATABASE IF EXISTS "${this.name}" WITH (FORCE)`]);
    } catch (e) {
      console.log('# could not drop the test database:', e.message);
    }
  }
}

// ------------------------------------------------------------------------------------------
// The daemon

class Daemon {
  constructor(db, webDir) {
    this.db = db;
    this.bin = needEnv('TUBELOOPD');
    const tmp = needEnv('TUBELOOP_TEST_TMP');
    fs.mkdirSync(tmp, { recursive: true });
    this.dir = fs.mkdtempSync(path.join(tmp, 'browser-daemon-'));
    this.webDir = webDir;
    this.cert = path.join(this.dir, 'cert.pem');
    this.key = path.join(this.dir, 'key.pem');
    this.keys = path.join(this.dir, 'keys');
    this.log = path.join(this.dir, 'daemon.log');
    this.proc = null;
    this.port = null;
  }

  prepare() {
    const keys = run([this.bin, 'gen-keys']);
    fs.writeFileSync(this.keys, keys, { mode: 0o600 });
    run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-days', '30', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', this.key, '-out', this.cert]);
    fs.chmodSync(this.key, 0o600);
    this.certPem = fs.readFileSync(this.cert, 'utf8');
  }

  /** base64 SHA-256 of the certificate's public key: what Chromium's
   * --ignore-certificate-errors-spki-list pins (this one certificate, nothing else). */
  spki() {
    const der = new crypto.X509Certificate(this.certPem).publicKey.export({ type: 'spki', format: 'der' });
    return crypto.createHash('sha256').update(der).digest('base64');
  }

  async start(extraArgs = []) {
    this.prepare();
    const env = { ...process.env };
    // flags come from the command line only: a stray variable must not redirect the daemon
    for (const k of ['TUBELOOP_DB', 'TUBELOOP_LISTEN', 'TUBELOOP_TLS_CERT', 'TUBELOOP_TLS_KEY', 'TUBELOOP_KEYS',
      'TUBELOOP_NO_TLS', 'TUBELOOP_LOG_LEVEL', 'TUBELOOP_WEB_DIR', 'TUBELOOP_TZ', 'TUBELOOP_SWEEP_INTERVAL']) delete env[k];
    const argv = ['serve', '--db', this.db.conninfo, '--listen', '127.0.0.1:0', '--tls-cert', this.cert,
      '--tls-key', this.key, '--keys', this.keys, '--web-dir', this.webDir, ...extraArgs];
    const out = fs.openSync(this.log, 'a');
    this.proc = spawn(this.bin, argv, { env, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => resolve(code === null ? sig : code)));
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`tubeloopd exited (${this.proc.exitCode}):\n${this.logTail()}`);
      if (!this.port) {
        const m = /msg=listening url=https:\/\/[^ ]*:(\d+)\//.exec(this.logText());
        if (m) this.port = Number(m[1]);
      }
      if (this.port) {
        try {
          if ((await this.request('GET', '/healthz')).status === 200 && (await this.request('GET', '/readyz')).status === 200) return this;
        } catch (e) {
          // not yet
        }
      }
      await sleep(50);
    }
    throw new Error('tubeloopd did not become ready:\n' + this.logTail());
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return this.proc ? this.proc.exitCode : null;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
    const rc = await this.exited;
    clearTimeout(timer);
    return rc;
  }

  cleanup() {
    if (keep()) console.log('TUBELOOP_TEST_KEEP: daemon folder kept:', this.dir);
    else fs.rmSync(this.dir, { recursive: true, force: true });
  }

  logText() {
    try {
      return fs.readFileSync(this.log, 'utf8');
    } catch (e) {
      return '';
    }
  }

  logTail(n = 30) {
    return this.logText().split('\n').slice(-n).join('\n');
  }

  url(p = '/') {
    return `https://localhost:${this.port}${p}`;
  }

  adminToken() {
    return run([this.bin, 'admin-token', '--db', this.db.conninfo, '--label', 'browser-test-admin']).trim();
  }

  /** One request over TLS, trusting only this daemon's certificate: {status, json, text}. */
  request(method, p, body, token) {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
      const headers = { Host: 'localhost', Accept: 'application/json' };
      if (token) headers.Authorization = 'Bearer ' + token;
      if (data) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = data.length;
      }
      const req = https.request({ host: '127.0.0.1', port: this.port, servername: 'localhost', method, path: p, headers,
        ca: this.certPem, agent: false, timeout: 30000 }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try {
            json = text ? JSON.parse(text) : null;
          } catch (e) {
            json = null;
          }
          resolve({ status: res.statusCode, json, text, headers: res.headers });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timed out`)));
      req.on('error', reject);
      if (data) req.write(data);
      req.end();
    });
  }
}

/** A caller with one token. */
class Client {
  constructor(daemon, token) {
    this.d = daemon;
    this.token = token;
  }

  get(p) {
    return this.d.request('GET', p, undefined, this.token);
  }

  post(p, body) {
    return this.d.request('POST', p, body === undefined ? {} : body, this.token);
  }

  async ok(method, p, body, want = 200) {
    const r = await this.d.request(method, p, body, this.token);
    if (r.status !== want) throw new Error(`${method} ${p}: want ${want}, got ${r.status} ${r.text.slice(0, 500)}`);
    return r.json;
  }

  /** POST /v1/events; every event must be accepted. */
  async send(events) {
    const r = await this.post('/v1/events', { events });
    if (r.status !== 200 || !r.json || r.json.results.length !== events.length) {
      throw new Error(`POST /v1/events: ${r.status} ${r.text.slice(0, 1000)}`);
    }
    const bad = r.json.results.map((x, i) => [events[i].type, x]).filter(([, x]) => x.status !== 'accepted');
    if (bad.length) throw new Error('events not accepted: ' + JSON.stringify(bad).slice(0, 2000));
    return r.json.results;
  }
}

// ------------------------------------------------------------------------------------------
// Synthetic people (never real ones): GB 11643-1999 resident IDs with a valid check character

const RID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RID_CHECK = '10X98765432';

function ridCheck(first17) {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * RID_WEIGHTS[i];
  return RID_CHECK[sum % 11];
}

/** A deterministic generator (mulberry32), so every run makes the same people. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SURNAMES = '赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜';
const GIVEN = '伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂兰玉萍红云飞鹏辉华建国';

function makePeople(seed) {
  const r = rng(seed);
  const pick = (s) => s[Math.floor(r() * s.length)];
  return function person() {
    const birth = new Date(Date.UTC(1945, 0, 1) + Math.floor(r() * 365 * 75) * 86400000);
    const ymd = birth.toISOString().slice(0, 10).replace(/-/g, '');
    const first = '230126' + ymd + String(1 + Math.floor(r() * 998)).padStart(3, '0');
    return {
      id_type: 'resident_id',
      id_number: first + ridCheck(first),
      name: pick(SURNAMES) + pick(GIVEN) + (r() < 0.6 ? pick(GIVEN) : ''),
      phone: pick(['138', '139', '150', '186']) + String(Math.floor(r() * 1e8)).padStart(8, '0'),
    };
  };
}

// ------------------------------------------------------------------------------------------
// Times and events (RFC 3339 in +08:00, the deployment's default zone)

const CST_MS = 8 * 3600 * 1000;

/** minutes from now → "2021-10-08T09:12:00+08:00" */
function at(minutesFromNow) {
  const ms = Math.floor((Date.now() + minutesFromNow * 60000) / 1000) * 1000;
  return new Date(ms + CST_MS).toISOString().replace(/\.\d+Z$/, '+08:00');
}

/** Today in Asia/Shanghai (no daylight saving there): the server's current_date. */
function todayCst() {
  return new Date(Date.now() + CST_MS).toISOString().slice(0, 10);
}

function ev(type, when, fields) {
  return { id: crypto.randomUUID(), type, at: at(when), ...fields };
}

const E = {
  tubeOpen: (when, tube, round) => ev('tube.open', when, { tube, round }),
  sample: (when, tube, person) => ev('sample.add', when, { tube, person }),
  tubeSeal: (when, tube, count) => ev('tube.seal', when, count === undefined ? { tube } : { tube, count }),
  boxPack: (when, box, tubes) => ev('box.pack', when, { box, tubes }),
  boxSeal: (when, box, lab) => ev('box.seal', when, { box, lab }),
  pickup: (when, box) => ev('box.pickup', when, { box }),
  deliver: (when, box, lab) => ev('box.deliver', when, lab ? { box, lab } : { box }),
  receive: (when, box, tubes) => ev('box.receive', when, { box, tubes }),
  result: (when, tube, result) => ev('tube.result', when, { tube, result }),
};

// ------------------------------------------------------------------------------------------
// The standard registry: county 230126 巴彦县 (GB/T 2260) with two townships

const COUNTY = '230126';
const TOWN1 = '230126101'; // 兴隆镇
const TOWN2 = '230126102'; // 西集镇

const REGISTRY = {
  regions: [
    { code: '23', name: '黑龙江省', parent: null },
    { code: '2301', name: '哈尔滨市', parent: '23' },
    { code: COUNTY, name: '巴彦县', parent: '2301' },
    { code: TOWN1, name: '兴隆镇', parent: COUNTY },
    { code: TOWN2, name: '西集镇', parent: COUNTY },
  ],
  sites: [
    { code: 'S1', name: '兴隆镇第一采样点', township: TOWN1 },
    { code: 'S2', name: '兴隆镇第二采样点', township: TOWN1 },
    { code: 'S3', name: '西集镇采样点', township: TOWN2 },
  ],
  labs: [{ code: 'L1', name: '巴彦县人民医院检验科', county: COUNTY }],
  couriers: [{ code: 'C1', name: '转运一组', county: COUNTY }],
};

async function loadRegistry(admin) {
  for (const [kind, items] of Object.entries(REGISTRY)) {
    const r = await admin.post('/v1/admin/' + kind, { [kind]: items });
    if (r.status !== 200 || !r.json || r.json.upserted !== items.length) {
      throw new Error(`POST /v1/admin/${kind}: ${r.status} ${r.text}`);
    }
  }
}

async function makeToken(admin, role, scope) {
  const body = { role, label: `browser ${role} ${scope || ''}` };
  if (scope) body.scope = scope;
  const j = await admin.ok('POST', '/v1/admin/tokens', body, 201);
  return j.token;
}

module.exports = { Database, Daemon, Client, E, at, todayCst, makePeople, makeToken, loadRegistry, sleep, needEnv,
  COUNTY, TOWN1, TOWN2 };
