#!/usr/bin/env python3
"""Shared harness of the Python end-to-end tests (tests/e2e/py/test_*.py).

Each test module gets its own fresh database in the test cluster that ctest's `pg` fixture
started (created with pg.sh psql, migrated with the real `tubeloopd migrate`), and its own
`tubeloopd serve` over real TLS with a fresh self-signed certificate and PII keys file. The
daemon listens on 127.0.0.1:0 (the kernel picks a free port, so modules run in parallel) and
its port is read from the "listening" line of its log. Clients trust only that certificate.

Everything a test needs comes from the environment ctest sets (tests/CMakeLists.txt):
TUBELOOPD, TUBELOOP_TEST_DB, TUBELOOP_TEST_PG_DIR, TUBELOOP_TEST_PG_SH, TUBELOOP_TEST_TMP.
TUBELOOP_TEST_KEEP=1 keeps the database and the daemon's folder for a post-mortem.

Also here: synthetic personal data (GB 11643 resident IDs with a valid check character,
names, phones — never real people's), event builders, a standard registry (county 230126
巴彦县 with two townships) and tokens of every role. Python standard library only.
"""
import datetime
import errno
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

# ---------------------------------------------------------------------------------------------
# Environment


def need_env(name):
    v = os.environ.get(name)
    if not v:
        raise RuntimeError(f"{name} is not set: run this test through ctest (tests/e2e/CMakeLists.txt)")
    return v


def keep():
    return os.environ.get("TUBELOOP_TEST_KEEP") == "1"


# The PostgreSQL client programs; the same default as tests/harness/pg.sh (Debian's
# postgresql-client-15 location), overridable the same way.
PG_BIN = os.environ.get("TL_PG_BIN", "/usr/lib/postgresql/15/bin")


def run(argv, timeout=120, check=True, env=None, stdout_path=None):
    """Runs argv to completion; returns (rc, stdout, stderr) as text."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
    try:
        for attempt in range(50):
            try:
                p = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, timeout=timeout, env=env)
                break
            except OSError as e:
                # a binary being relinked by a concurrent build: wait for it
                if e.errno not in (errno.ETXTBSY, errno.EACCES, errno.ENOENT) or attempt == 49:
                    raise
                time.sleep(0.2)
    finally:
        if stdout_path:
            out.close()
    so = "" if stdout_path else p.stdout.decode("utf-8", "replace")
    se = p.stderr.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed ({p.returncode}): {se}{so}")
    return p.returncode, so, se


# ---------------------------------------------------------------------------------------------
# Database: one per test module


class Database:
    """A fresh, migrated database in the test cluster."""

    def __init__(self, label, template=None):
        """template: the name of a migrated database to copy (faster than migrating again)."""
        self.base = need_env("TUBELOOP_TEST_DB")
        self.pg_sh = need_env("TUBELOOP_TEST_PG_SH")
        self.pg_dir = need_env("TUBELOOP_TEST_PG_DIR")
        self.name = "tlpy_%s_%s" % (re.sub(r"[^a-z0-9_]", "_", label.lower()), uuid.uuid4().hex[:10])
        if not re.search(r"\bdbname=\S+", self.base):
            raise RuntimeError("TUBELOOP_TEST_DB has no dbname=")
        self.conninfo = re.sub(r"\bdbname=\S+", "dbname=" + self.name, self.base)
        self._session = None
        if template:
            run([self.pg_sh, "psql", self.pg_dir, "-q", "-c",
                 'CREATE DATABASE "%s" TEMPLATE "%s"' % (self.name, template)])
        else:
            run([self.pg_sh, "psql", self.pg_dir, "-q", "-c", 'CREATE DATABASE "%s"' % self.name])
            run([need_env("TUBELOOPD"), "migrate", "--db", self.conninfo])

    def psql(self, sql):
        """Rows of the query as lists of strings (NULL is ''; values must be one line). One
        psql process serves every query of the module (spawning one per query would dominate
        tests that snapshot the database around hundreds of calls)."""
        if self._session is None or self._session.poll() is not None:
            self._session = subprocess.Popen(
                [PG_BIN + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t",
                 "-d", self.conninfo],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        marker = "--end-%s--" % uuid.uuid4().hex
        sql = sql.strip().rstrip(";")
        if "\n" in sql:
            sql = " ".join(sql.split("\n"))
        self._session.stdin.write(("%s;\n\\echo %s\n" % (sql, marker)).encode())
        self._session.stdin.flush()
        rows = []
        while True:
            line = self._session.stdout.readline()
            if not line:
                err = self._session.stderr.read().decode("utf-8", "replace")
                self._session = None
                raise RuntimeError("psql failed on %r: %s" % (sql[:200], err))
            line = line.decode("utf-8").rstrip("\n")
            if line == marker:
                return rows
            rows.append(line.split("\t"))

    def close_session(self):
        if self._session is not None:
            self._session.stdin.close()
            self._session.wait(10)
            self._session.stdout.close()
            self._session.stderr.close()
            self._session = None

    def scalar(self, sql):
        rows = self.psql(sql)
        return rows[0][0] if rows else None

    def json(self, sql):
        """The one JSON value the query returns (wrap it in to_jsonb/jsonb_agg)."""
        v = self.scalar(sql)
        return json.loads(v) if v else None

    def count(self, table, where="true"):
        return int(self.scalar("SELECT count(*) FROM %s WHERE %s" % (table, where)))

    def dump(self):
        """pg_dump of the whole database as text (data and schema)."""
        _, out, _ = run([PG_BIN + "/pg_dump", "--no-owner", "-d", self.conninfo], timeout=300)
        return out

    def drop(self):
        self.close_session()
        if keep():
            print("TUBELOOP_TEST_KEEP: database kept:", self.name)
            return
        run([self.pg_sh, "psql", self.pg_dir, "-q", "-c",
             'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name], check=False)


# ---------------------------------------------------------------------------------------------
# The daemon


class Daemon:
    """`tubeloopd serve` on 127.0.0.1 with TLS, in a private folder under TUBELOOP_TEST_TMP."""

    def __init__(self, db, name, log_level=None, extra_env=None, keys_from=None):
        self.db = db
        self.name = name
        self.bin = need_env("TUBELOOPD")
        tmp = need_env("TUBELOOP_TEST_TMP")
        os.makedirs(tmp, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="py-%s-" % name, dir=tmp)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.keys = os.path.join(self.dir, "keys")
        self.log = os.path.join(self.dir, "daemon.log")
        self.log_level = log_level
        self.extra_env = extra_env or {}
        self.keys_from = keys_from  # reuse this PII keys file (the same HMACs across databases)
        self.proc = None
        self.port = None
        self._ctx = None
        self.clients = []  # every client made by client(), closed with the daemon

    def prepare(self):
        old = os.umask(0o077)
        try:
            if self.keys_from:
                shutil.copyfile(self.keys_from, self.keys)
            else:
                run([self.bin, "gen-keys"], stdout_path=self.keys)
        finally:
            os.umask(old)
        os.chmod(self.keys, 0o600)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", self.key, "-out", self.cert])

    def start(self, timeout=30):
        if not os.path.exists(self.keys):
            self.prepare()
        env = dict(os.environ)
        # Flags come from the command line only: a stray TUBELOOP_DB or TUBELOOP_LISTEN in the
        # caller's environment must not redirect the daemon under test.
        for k in ("TUBELOOP_DB", "TUBELOOP_LISTEN", "TUBELOOP_TLS_CERT", "TUBELOOP_TLS_KEY",
                  "TUBELOOP_KEYS", "TUBELOOP_NO_TLS", "TUBELOOP_LOG_LEVEL"):
            env.pop(k, None)
        env.update(self.extra_env)
        argv = [self.bin, "serve", "--db", self.db.conninfo, "--listen", "127.0.0.1:0",
                "--tls-cert", self.cert, "--tls-key", self.key, "--keys", self.keys]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        logf = open(self.log, "ab")
        try:
            for attempt in range(50):
                try:
                    self.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, env=env)
                    break
                except OSError as e:
                    # the binary being relinked by a concurrent build (ETXTBSY, or briefly not
                    # executable): wait for the build, not a test failure
                    if e.errno not in (errno.ETXTBSY, errno.EACCES, errno.ENOENT) or attempt == 49:
                        raise
                    time.sleep(0.2)
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        self.port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("tubeloopd exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            if self.port is None:
                m = re.search(r"msg=listening url=https://[^ ]*:(\d+)/", self.log_text())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None:
                try:
                    if self.request("GET", "/healthz", token=None)[0] == 200 and \
                       self.request("GET", "/readyz", token=None)[0] == 200:
                        return self
                except (OSError, http.client.HTTPException):
                    pass
            time.sleep(0.05)
        raise RuntimeError("tubeloopd did not become ready:\n" + self.log_tail())

    def stop(self, timeout=20):
        """SIGTERM and wait: the exit status (a clean stop is 0)."""
        self.close_clients()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def close_clients(self):
        for c in self.clients:
            c.close()

    def cleanup(self):
        self.close_clients()
        self.stop()
        if keep():
            print("TUBELOOP_TEST_KEEP: daemon folder kept:", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_bytes(self):
        with open(self.log, "rb") as f:
            return f.read()

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])

    def ssl_context(self):
        if self._ctx is None:
            ctx = ssl.create_default_context(cafile=self.cert)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ctx = ctx
        return self._ctx

    def admin_token(self, label="py-admin"):
        _, out, _ = run([self.bin, "admin-token", "--db", self.db.conninfo, "--label", label])
        return out.strip()

    def request(self, method, path, body=None, token=None, headers=None, raw=None):
        """One request on a fresh connection: (status, parsed JSON or None, text)."""
        c = Client(self, token)
        try:
            return c.request(method, path, body, headers=headers, raw=raw)
        finally:
            c.close()

    def client(self, token):
        c = Client(self, token)
        self.clients.append(c)
        return c


class Response(tuple):
    """(status, json, text) with names."""

    def __new__(cls, status, data, text):
        return super().__new__(cls, (status, data, text))

    status = property(lambda s: s[0])
    json = property(lambda s: s[1])
    text = property(lambda s: s[2])

    @property
    def error_code(self):
        try:
            return self.json["error"]["code"]
        except (TypeError, KeyError):
            return None


class Client:
    """A keep-alive HTTPS client with one bearer token (None: no Authorization header)."""

    record = None  # a list to append every answer's text to (test_pii), or None

    def __init__(self, daemon, token):
        self.d = daemon
        self.token = token
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPSConnection("127.0.0.1", self.d.port, timeout=60,
                                                context=self.d.ssl_context())

    def request(self, method, path, body=None, headers=None, raw=None):
        h = {"Host": "localhost", "Accept": "application/json"}
        if self.token is not None:
            h["Authorization"] = "Bearer " + self.token
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
            h["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                text = r.read().decode("utf-8", "replace")
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine,
                    ssl.SSLEOFError, BrokenPipeError):
                # A kept-alive connection the server closed between requests: once more on a
                # fresh one (every call the tests repeat is idempotent: events carry their id).
                self.close()
                if attempt:
                    raise
        if Client.record is not None:
            Client.record.append(text)
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Response(r.status, parsed, text)

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None, raw=None):
        return self.request("POST", path, body, raw=raw)

    def delete(self, path):
        return self.request("DELETE", path)

    def send(self, events):
        """POST /v1/events; asserts 200 and one result per event, returns the results. A 503
        (DESIGN §5: database unavailable — retry) is retried as a phone would, and noted on
        stderr."""
        for attempt in range(20):
            r = self.post("/v1/events", {"events": events})
            if r.status != 503:
                break
            print("note: POST /v1/events answered 503 (%s); retrying" % r.error_code, file=sys.stderr)
            time.sleep(0.1 * (attempt + 1))
        if r.status != 200 or not isinstance(r.json, dict) or len(r.json.get("results", [])) != len(events):
            raise AssertionError("POST /v1/events: %s %s" % (r.status, r.text[:2000]))
        return r.json["results"]

    def send_ok(self, events):
        """send, and assert every event was accepted; returns the results."""
        res = self.send(events)
        bad = [(e["type"], x) for e, x in zip(events, res) if x["status"] != "accepted"]
        if bad:
            raise AssertionError("events not accepted: %s" % json.dumps(bad, ensure_ascii=False)[:3000])
        return res

    def tube(self, code):
        return self.get("/v1/tubes/" + code)

    def box(self, code):
        return self.get("/v1/boxes/" + code)

    def lookup(self, id_number, id_type="resident_id"):
        return self.post("/v1/persons/lookup", {"id_type": id_type, "id_number": id_number})

    def followups(self, region=None, state=None):
        q = []
        if region:
            q.append("region=" + region)
        if state:
            q.append("state=" + state)
        return self.get("/v1/followups" + ("?" + "&".join(q) if q else ""))

    def anomalies(self, region=None, state=None, type=None, limit=500):
        """Every anomaly (following next_cursor) as a list; asserts 200."""
        out, cursor = [], None
        while True:
            q = ["limit=%d" % limit]
            for k, v in (("region", region), ("state", state), ("type", type), ("cursor", cursor)):
                if v:
                    q.append("%s=%s" % (k, v))
            r = self.get("/v1/anomalies?" + "&".join(q))
            if r.status != 200:
                raise AssertionError("GET /v1/anomalies: %s %s" % (r.status, r.text[:500]))
            out += r.json["anomalies"]
            cursor = r.json.get("next_cursor")
            if not cursor:
                return out


# ---------------------------------------------------------------------------------------------
# Synthetic personal data (never real people's)

RID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
RID_CHECK = "10X98765432"


def rid_check(first17):
    return RID_CHECK[sum(int(c) * w for c, w in zip(first17, RID_WEIGHTS)) % 11]


def resident_id(rng, region="230126", want_x=None):
    """A synthetic 18-character resident ID with a plausible birth date and a valid check
    character. want_x=True makes one whose check character is X, False one without."""
    while True:
        birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=rng.randrange(0, 365 * 80))
        first = "%s%s%03d" % (region, birth.strftime("%Y%m%d"), rng.randrange(1, 1000))
        c = rid_check(first)
        if want_x is None or (c == "X") == want_x:
            return first + c


def bad_check(rid):
    """The same number with a wrong check character."""
    good = rid[-1]
    for c in "0123456789X":
        if c != good:
            return rid[:-1] + c
    raise AssertionError


def fullwidth(s):
    """Full-width form (U+FF10..) of an ASCII number, as a phone IME in full-width mode types it."""
    return "".join(chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else c for c in s)


SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜戚谢邹喻柏水窦章云苏潘葛奚范彭郎鲁韦昌马苗凤花方俞任袁柳"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂兰玉萍红云飞鹏辉华建国庆春梅海燕波宁斌浩宇晨阳欣怡子涵"


def person_name(rng, used=None):
    """A synthetic two- or three-character name, unique within `used` when given."""
    while True:
        n = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        if used is None or n not in used:
            if used is not None:
                used.add(n)
            return n


def phone(rng):
    return rng.choice(("138", "139", "150", "186", "137", "158")) + "%08d" % rng.randrange(0, 10 ** 8)


def mask_rid(rid):
    rid = rid.upper()
    return rid[:6] + "*" * 8 + rid[-4:]


def mask_name(name):
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else "*"


def mask_phone(p):
    return p[:3] + "****" + p[-4:]


# ---------------------------------------------------------------------------------------------
# Times and events

CST = datetime.timezone(datetime.timedelta(hours=8))


class Clock:
    """Event times: base + minutes, written as RFC 3339 with +08:00. The base lies hours in
    the past so every step of a scenario stays behind the daemon's 10-minute future limit."""

    def __init__(self, hours_back=10):
        now = datetime.datetime.now(CST).replace(microsecond=0)
        self.base = (now - datetime.timedelta(hours=hours_back)).replace(second=0)

    def at(self, minutes):
        return (self.base + datetime.timedelta(minutes=minutes)).isoformat()

    def day(self):
        return self.base.date().isoformat()


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def same_instant(a, b):
    return parse_time(a) == parse_time(b)


def eid():
    return str(uuid.uuid4())


def ev(type_, at, **fields):
    e = {"id": eid(), "type": type_, "at": at}
    e.update(fields)
    return e


def person(id_number, name=None, phone_=None, id_type="resident_id"):
    p = {"id_type": id_type, "id_number": id_number}
    if name is not None:
        p["name"] = name
    if phone_ is not None:
        p["phone"] = phone_
    return p


def tube_open(at, tube, round_, capacity=None):
    e = ev("tube.open", at, tube=tube, round=round_)
    if capacity is not None:
        e["capacity"] = capacity
    return e


def sample_add(at, tube, p):
    return ev("sample.add", at, tube=tube, person=p)


def tube_seal(at, tube, count=None):
    e = ev("tube.seal", at, tube=tube)
    if count is not None:
        e["count"] = count
    return e


def box_pack(at, box, tubes):
    return ev("box.pack", at, box=box, tubes=list(tubes))


def box_seal(at, box, lab, count=None):
    e = ev("box.seal", at, box=box, lab=lab)
    if count is not None:
        e["count"] = count
    return e


def box_pickup(at, box):
    return ev("box.pickup", at, box=box)


def box_deliver(at, box, lab=None):
    e = ev("box.deliver", at, box=box)
    if lab is not None:
        e["lab"] = lab
    return e


def box_receive(at, box, tubes):
    return ev("box.receive", at, box=box, tubes=list(tubes))


def tube_reject(at, tube, reason="leak"):
    return ev("tube.reject", at, tube=tube, reason=reason)


def tube_result(at, tube, result, ct=None, amend=None):
    e = ev("tube.result", at, tube=tube, result=result)
    if ct is not None:
        e["ct"] = ct
    if amend is not None:
        e["amend"] = amend
    return e


# ---------------------------------------------------------------------------------------------
# The standard registry: county 230126 巴彦县 (GB/T 2260) with two townships, three sites,
# two labs and a courier; and a second county for "elsewhere".

COUNTY = "230126"
TOWN1 = "230126101"   # 兴隆镇
TOWN2 = "230126102"   # 西集镇
OTHER_COUNTY = "230127"
OTHER_TOWN = "230127100"

REGIONS = [
    {"code": "23", "name": "黑龙江省", "parent": None},
    {"code": "2301", "name": "哈尔滨市", "parent": "23"},
    {"code": COUNTY, "name": "巴彦县", "parent": "2301"},
    {"code": TOWN1, "name": "兴隆镇", "parent": COUNTY},
    {"code": TOWN2, "name": "西集镇", "parent": COUNTY},
    {"code": OTHER_COUNTY, "name": "木兰县", "parent": "2301"},
    {"code": OTHER_TOWN, "name": "木兰镇", "parent": OTHER_COUNTY},
]
SITES = [
    {"code": "S1", "name": "兴隆镇第一采样点", "township": TOWN1},
    {"code": "S2", "name": "兴隆镇第二采样点", "township": TOWN1},
    {"code": "S3", "name": "西集镇采样点", "township": TOWN2},
    {"code": "S9", "name": "木兰镇采样点", "township": OTHER_TOWN},
]
LABS = [
    {"code": "L1", "name": "巴彦县人民医院检验科", "county": COUNTY},
    {"code": "L2", "name": "第三方检测实验室", "county": COUNTY},
]
COURIERS = [
    {"code": "C1", "name": "转运一组", "county": COUNTY},
    {"code": "C2", "name": "转运二组", "county": COUNTY},
]


class Env:
    """A started database + daemon + admin client, with the registry loaded."""

    def __init__(self, label, log_level=None, registry=True, keys_from=None, template=None,
                 extra_env=None):
        self.db = Database(label, template=template)
        self.daemon = None
        try:
            self.daemon = Daemon(self.db, label, log_level=log_level, keys_from=keys_from,
                                 extra_env=extra_env).start()
            self.admin_secret = self.daemon.admin_token()
            self.admin = self.daemon.client(self.admin_secret)
            self.tokens = {}
            self.clients = {}
            if registry:
                self.load_registry()
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.daemon:
            self.daemon.cleanup()
        self.db.drop()

    def load_registry(self):
        for path, key, items in (("regions", "regions", REGIONS), ("sites", "sites", SITES),
                                 ("labs", "labs", LABS), ("couriers", "couriers", COURIERS)):
            r = self.admin.post("/v1/admin/" + path, {key: items})
            if r.status != 200 or r.json.get("upserted") != len(items):
                raise AssertionError("POST /v1/admin/%s: %s %s" % (path, r.status, r.text))

    def make_round(self, code, pool_size=10, region=COUNTY, day=None, name=None):
        r = self.admin.post("/v1/admin/rounds", {"code": code, "name": name or ("轮次 " + code),
                                                 "region": region, "day": day or Clock().day(),
                                                 "pool_size": pool_size})
        if r.status != 201:
            raise AssertionError("POST /v1/admin/rounds: %s %s" % (r.status, r.text))
        return r.json

    def make_token(self, role, scope=None, label=None):
        """(id, secret) of a new token."""
        body = {"role": role, "label": label or "py %s %s" % (role, scope or "")}
        if scope is not None:
            body["scope"] = scope
        r = self.admin.post("/v1/admin/tokens", body)
        if r.status != 201:
            raise AssertionError("POST /v1/admin/tokens %s: %s %s" % (body, r.status, r.text))
        return r.json["id"], r.json["token"]

    def client(self, role, scope=None):
        """A client with a new token of role/scope (cached per role and scope)."""
        k = (role, scope)
        if k not in self.tokens:
            self.tokens[k] = self.make_token(role, scope)
        if k not in self.clients:
            self.clients[k] = self.daemon.client(self.tokens[k][1])
        return self.clients[k]


def is_overdue(anomaly_type):
    """overdue_* anomalies are opened by a wall-clock sweep, not by events: tests about the
    event-derived anomalies leave them out (their presence depends on when the sweep ran)."""
    return anomaly_type.startswith("overdue_")


def event_anomalies(anomalies):
    return [a for a in anomalies if not is_overdue(a["type"])]


def results_summary(results):
    return [(r["status"], r.get("code"), sorted(r.get("anomalies", []))) for r in results]


# ---------------------------------------------------------------------------------------------
# "Nothing changed": a fingerprint of every table a request could write.

FP_TABLES = ("tubes", "boxes", "samples", "receipts", "events", "persons", "followups", "anomalies",
             "rounds", "tokens", "regions", "sites", "labs", "couriers")


# Rows that a background job writes on the wall clock, not because of a request: the overdue
# sweep opens and closes overdue_* anomalies whenever it runs.
FP_FILTERS = {"anomalies": "x.type NOT LIKE 'overdue%'"}


def fingerprint(db, tables=FP_TABLES):
    """{table: (rows, md5 of all rows)}: equal fingerprints mean equal contents."""
    sql = " UNION ALL ".join(
        "SELECT '%s', count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
        " FROM %s x WHERE %s" % (t, t, FP_FILTERS.get(t, "true")) for t in tables)
    return {r[0]: (int(r[1]), r[2]) for r in db.psql(sql)}


def wait_for(pred, what, timeout=10, every=0.2):
    """Polls pred until it returns a true value, which it returns; fails after timeout s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError("timed out waiting for " + what)


def fingerprint_diff(a, b):
    return ["%s: %s rows -> %s rows%s" % (t, a[t][0], b[t][0], "" if a[t][0] != b[t][0] else " (contents)")
            for t in a if a[t] != b.get(t)]


class EnvCase(unittest.TestCase):
    """A test class with its own Env (database + daemon + registry), made once for the class.
    Subclasses set `label` and put their fixtures in prepare(); a failing prepare still stops
    the daemon and drops the database."""

    label = "py"
    log_level = None
    env = None

    @classmethod
    def setUpClass(cls):
        cls.env = Env(cls.label, log_level=cls.log_level)
        try:
            cls.prepare()
        except BaseException:
            cls.env.close()
            cls.env = None
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.env:
            cls.env.close()
            cls.env = None

    @classmethod
    def prepare(cls):
        pass
