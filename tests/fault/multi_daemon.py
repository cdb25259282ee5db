#!/usr/bin/env python3
"""Several daemons, one database (issue 8 item 5).

Two or three `tubeloopd serve` processes on one database behind HAProxy (Debian's haproxy, run
by this test as its child with a config of its own in a temporary folder, listening on
127.0.0.1 only). HAProxy works in TCP mode: TLS passes through to the daemons, which all hold
the same certificate (and the same PII keys file, so a person's HMAC is the same whichever
daemon wrote it). The sampling-point devices of the crash test (faultlib.device: tubes of 10,
every batch retried with the same ids until acknowledged, every attempt recorded) and a lab
that posts results for the tubes whose seal was acknowledged send through HAProxy, while the
test SIGKILLs one daemon at a time at random intervals, leaves it down a moment (the others
keep serving) and starts it again on the same port.

Health checks: `option httpchk` with `check-ssl verify none` — HAProxy's health check speaks
TLS to each daemon and asks GET /readyz, while the traffic itself stays TCP (TLS end to end,
HAProxy never holds the key). A plain TCP `check` would only see that the port accepts; a
daemon that listens but has no database yet (just restarted, or cut off from PostgreSQL)
answers /readyz 503 and is taken out of rotation, which a TCP check would not see. A killed
daemon's new connections are refused at once, and `retries 3` with `option redispatch 1` sends
them to another daemon before the health check has noticed.

After the load, checked:
  history     every acknowledged event is in the database, none applied twice
              (faultlib.check_history): lost = 0, duplicated = 0
  stats       GET /v1/stats for the county through each daemon directly: identical answers,
              and equal to SQL over the raw tables for persons_sampled, tubes (all, resulted)
              and negative results
  stream      an SSE client on daemon A (GET /v1/stream, reconnecting with Last-Event-ID when
              A is killed) ends with an event equal to the stats answer, after a last tube
              written through daemon B and the last results through daemon C

Figures: kills (per daemon), events sent / acknowledged / in the database, attempts that
failed, p99 from a kill to the next acknowledged batch (any device) and from a kill to the
acknowledgement of each batch it interrupted, HAProxy's retries and redispatches.

    multi_daemon.py [--daemons N] [--kills N] [--devices N] [--interval S]

Run through ctest (short form, fault_multi_daemon) or scripts/fault.sh multi (long form).
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402

T = F.T
ROUND = "RC"
STATS_PATH = "/v1/stats?region=%s&round=%s" % (T.COUNTY, ROUND)
STREAM_PATH = "/v1/stream?region=%s&round=%s" % (T.COUNTY, ROUND)

HAPROXY_CFG = """\
# written by tests/fault/multi_daemon.py for one run
global
    maxconn 2000
    stats socket {dir}/haproxy.sock mode 600 level user

defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    # a refused connection (a killed daemon) is tried again, each time on another server
    retries 3
    option redispatch 1

frontend tubeloop
    bind 127.0.0.1:{port}
    default_backend daemons

backend daemons
    balance leastconn
    # the check speaks TLS to the daemon and asks /readyz; the traffic stays TCP
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server check check-ssl verify none inter 500ms fastinter 200ms downinter 300ms fall 2 rise 1
{servers}
"""


class HAProxy:
    """haproxy -db (foreground) with HAPROXY_CFG in a folder of its own; stop() ends it."""

    def __init__(self, folder, port, backends):
        self.bin = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.dir, self.port = folder, port
        self.cfg = os.path.join(folder, "haproxy.cfg")
        self.log = os.path.join(folder, "haproxy.log")
        servers = "\n".join("    server d%d 127.0.0.1:%d" % (i, p) for i, p in enumerate(backends))
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_CFG.format(dir=folder, port=port, servers=servers))
        T.run([self.bin, "-c", "-q", "-f", self.cfg])
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.bin, "-db", "-f", self.cfg], stdout=logf, stderr=logf)
        logf.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited: " + open(self.log).read()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def servers(self):
        """HAProxy's own counters per server ("show stat" on the stats socket): {name: row}."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(os.path.join(self.dir, "haproxy.sock"))
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        lines = data.decode().strip().splitlines()
        head = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(head, ln.split(","))) for ln in lines[1:]]
        return {r["svname"]: r for r in rows if r["pxname"] == "daemons" and r["svname"] != "BACKEND"}

    def wait_all_up(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(r["status"] == "UP" for r in self.servers().values()):
                    return True
            except OSError:
                pass  # the stats socket may come a moment after the frontend's port
            time.sleep(0.1)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Front:
    """What T.Client connects to: HAProxy's port, trusting the daemons' one certificate."""

    def __init__(self, port, daemon):
        self.port = port
        self.ssl_context = daemon.ssl_context


def sse_events(resp):
    """(id or None, data) of each event of a text/event-stream answer, read as the SSE spec
    reads it: fields until a blank line, `data` lines joined with newlines, comments
    (": ping") and events without data skipped. Ends when the connection does."""
    buf, data, eid = b"", [], None
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            return
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8").rstrip("\r")
            if not line:
                if data:
                    yield eid, "\n".join(data)
                data, eid = [], None
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "id":
                eid = value


class Stream(threading.Thread):
    """An SSE client of one daemon: GET STREAM_PATH, every event's data kept as `last`; when
    the daemon is killed it reconnects with Last-Event-ID (`connects` counts the answers 200)."""

    def __init__(self, daemon, token):
        super().__init__(daemon=True)
        self.d, self.token = daemon, token
        self.last = None
        self.events = 0
        self.connects = 0
        self.last_id = None
        self.conn = None
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.read_once()
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if not self.stop_ev.is_set():
                self.stop_ev.wait(0.2)

    def read_once(self):
        self.conn = http.client.HTTPSConnection("127.0.0.1", self.d.port, context=self.d.ssl_context(), timeout=30)
        h = {"Authorization": "Bearer " + self.token, "Host": "localhost", "Accept": "text/event-stream"}
        if self.last_id:
            h["Last-Event-ID"] = self.last_id
        self.conn.request("GET", STREAM_PATH, headers=h)
        resp = self.conn.getresponse()
        if resp.status != 200:
            resp.read()
            raise ValueError("stream: %d" % resp.status)
        self.connects += 1
        for eid, data in sse_events(resp):
            self.last = json.loads(data)
            self.events += 1
            if eid:
                self.last_id = eid
            if self.stop_ev.is_set():
                return

    def stop(self):
        self.stop_ev.set()
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        self.join(10)


class Rig:
    """What faultlib.device needs (daemon: here HAProxy; tokens, lock, restarted_at,
    first_ok_after) plus the daemons. restarted_at holds the kill times: first_ok_after is
    then the time from a kill to the next acknowledged batch of any device."""

    def __init__(self, n):
        self.db = T.Database("multi")
        self.daemons = []
        self.lock = threading.Lock()
        self.restarted_at, self.first_ok_after = [], []
        self.kills = []  # (daemon index, time of the kill, time it answered /readyz again)
        try:
            a = T.Daemon(self.db, "multi0")
            self.daemons.append(a)
            a.prepare()
            for i in range(1, n):
                d = T.Daemon(self.db, "multi%d" % i)
                self.daemons.append(d)
                # the same PII keys (one HMAC per person across daemons) and the same certificate
                shutil.copyfile(a.keys, d.keys)
                os.chmod(d.keys, 0o600)
                d.cert, d.key = a.cert, a.key
            for d in self.daemons:
                d.start()
        except BaseException:
            self.cleanup()
            raise
        self.ports = [d.port for d in self.daemons]

    def kill_and_restart(self, i, down):
        d = self.daemons[i]
        t_kill = time.monotonic()
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        with self.lock:
            self.restarted_at.append(t_kill)
        time.sleep(down)  # the others keep serving meanwhile
        F.restart_on_port(d, self.ports[i], self.db.conninfo, len(self.kills))
        self.kills.append((i, t_kill, time.monotonic()))

    def cleanup(self):
        for d in reversed(self.daemons):  # daemon 0's folder holds the shared certificate
            d.cleanup()
        self.db.drop()


def lab(rig, secret, history, stop, rng):
    """The lab: results (mostly negative, some invalid) for the tubes whose seal was
    acknowledged, up to 20 a batch, each batch sent until acknowledged. Returns at stop,
    with the tubes it has not resulted yet in rig.unresulted."""
    seen, pending, pos = set(), [], 0
    while True:
        while pos < len(history):
            kind, data = history[pos][0], history[pos][1]
            pos += 1
            if kind == "ack":
                for _eid, etype, tube, st, _code in data:
                    if etype == "tube.seal" and st in ("accepted", "duplicate") and tube not in seen:
                        seen.add(tube)
                        pending.append(tube)
        if stop.is_set():
            rig.unresulted = pending
            return
        if pending:
            batch_tubes, pending = pending[:20], pending[20:]
            c = T.Clock(hours_back=1)
            batch = [T.tube_result(c.at(40), t, "invalid" if rng.random() < 0.1 else "negative") for t in batch_tubes]
            F.send_until_acked(rig, secret, batch, history)
        else:
            stop.wait(0.2)


def kill_to_ack(history, kill_times):
    """For every batch that needed more than one attempt: seconds from the last kill before its
    first failed attempt ended to its acknowledgement."""
    first_fail, acked_at = {}, {}
    for kind, data, _st, _t0, t1 in history:
        key = data[0][0] if kind == "ack" else data[0]
        if kind == "ack":
            acked_at[key] = t1
        elif key not in first_fail:
            first_fail[key] = t1
    out = []
    for key, tf in first_fail.items():
        before = [k for k in kill_times if k <= tf]
        if before and key in acked_at:
            out.append(acked_at[key] - before[-1])
    return out


def stats_via(daemon, token):
    r = daemon.request("GET", STATS_PATH, token=token)
    if r.status != 200:
        raise AssertionError("GET %s on port %d: %s %s" % (STATS_PATH, daemon.port, r.status, r.text[:300]))
    return r.json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemons", type=int, default=3)
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--interval", type=float, default=1.5, help="mean seconds between kills")
    args = ap.parse_args()
    if args.daemons < 2:
        ap.error("--daemons: at least 2")
    if shutil.which("haproxy") is None and not os.path.exists("/usr/sbin/haproxy"):
        print("haproxy is not installed (scripts/lib.sh tl_fault_deps)", file=sys.stderr)
        return 1
    rng = random.Random(int(os.environ.get("TUBELOOP_FAULT_SEED", "7")))
    rig = Rig(args.daemons)
    folder = tempfile.mkdtemp(prefix="haproxy-", dir=T.need_env("TUBELOOP_TEST_TMP"))
    proxy = None
    stream = None
    failures = []
    try:
        proxy = HAProxy(folder, F.free_port(), rig.ports)
        if not proxy.wait_all_up():
            raise RuntimeError("HAProxy does not see every daemon up: %s" % proxy.servers())
        a = rig.daemons[0]
        env = T.Env.__new__(T.Env)
        env.db, env.daemon, env.tokens, env.clients = rig.db, a, {}, {}
        env.admin_secret = a.admin_token()
        env.admin = T.Client(a, env.admin_secret)
        sites = [{"code": "S%d" % i, "name": "压测采样点%d" % i, "township": T.TOWN1} for i in range(args.devices + 1)]
        env.admin.post("/v1/admin/regions", {"regions": T.REGIONS})
        env.admin.post("/v1/admin/sites", {"sites": sites})
        env.admin.post("/v1/admin/labs", {"labs": T.LABS})
        env.make_round(ROUND, day=T.Clock(hours_back=1).day())
        rig.tokens = {s["code"]: env.make_token("collector", s["code"])[1] for s in sites}
        lab_secret = env.make_token("lab", "L1")[1]
        viewer = env.make_token("viewer", T.COUNTY)[1]
        env.admin.close()
        rig.daemon = Front(proxy.port, a)

        stream = Stream(a, viewer)
        stream.start()
        persons = ["P%07d" % i for i in range(5000)]
        stop = threading.Event()
        history = []
        threads = [threading.Thread(target=F.device, args=(rig, i, ROUND, persons, stop, history, random.Random(i)))
                   for i in range(args.devices)]
        lab_stop = threading.Event()
        lab_thread = threading.Thread(target=lab, args=(rig, lab_secret, history, lab_stop, random.Random(99)))
        for t in threads + [lab_thread]:
            t.start()
        t_load = time.monotonic()
        for k in range(1, args.kills + 1):
            time.sleep(rng.uniform(0.3, 2 * args.interval))
            rig.kill_and_restart(rng.randrange(args.daemons), rng.uniform(0.1, 1.5))
            if k % 20 == 0:
                print("multi_daemon: %d kills, %.0fs, %d attempts" % (k, time.monotonic() - t_load, len(history)),
                      flush=True)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(120)
        lab_stop.set()  # after the devices: it sees every seal they had acknowledged
        lab_thread.join(120)
        load_s = time.monotonic() - t_load
        hap = proxy.servers()

        # the last writes go to daemons B and C directly, not through HAProxy: a last tube
        # through B, the last results through C (A's stream must show them)
        b, c = rig.daemons[1], rig.daemons[-1]
        direct_b = types.SimpleNamespace(daemon=b, lock=threading.Lock(), restarted_at=[], first_ok_after=[])
        direct_c = types.SimpleNamespace(daemon=c, lock=threading.Lock(), restarted_at=[], first_ok_after=[])
        ck = T.Clock(hours_back=1)
        last_tube = "CRLAST-000001"
        last = [T.tube_open(ck.at(0), last_tube, ROUND)]
        last += [T.sample_add(ck.at(1 + k), last_tube, T.person("Q%07d" % k, id_type="passport")) for k in range(3)]
        last.append(T.tube_seal(ck.at(5), last_tube))
        F.send_until_acked(direct_b, rig.tokens["S%d" % args.devices], last, history)
        rest = rig.unresulted + [last_tube]
        for k in range(0, len(rest), 50):
            F.send_until_acked(direct_c, lab_secret, [T.tube_result(ck.at(40), t, "negative") for t in rest[k:k + 50]],
                               history)

        # stats through each daemon directly: the same answer, and the raw tables' figures
        answers = [stats_via(d, viewer) for d in rig.daemons]
        for i, ans in enumerate(answers[1:], 1):
            if ans != answers[0]:
                failures.append("stats through daemon %d differ from daemon 0: %s vs %s"
                                % (i, json.dumps(ans["totals"]), json.dumps(answers[0]["totals"])))
        tot = answers[0]["totals"]
        q = lambda sql: int(rig.db.scalar(sql))  # noqa: E731
        sql = {
            # a person counts once in a region, however many of its sites sampled them (sql/015);
            # every site here is in the county
            "persons_sampled": q("SELECT count(DISTINCT person) FROM samples WHERE round = '%s'" % ROUND),
            "tubes": q("SELECT count(*) FROM tubes WHERE round = '%s'" % ROUND),
            "tubes resulted": q("SELECT count(*) FROM tubes WHERE round = '%s' AND result IS NOT NULL" % ROUND),
            "results negative": q("SELECT count(*) FROM tubes WHERE round = '%s' AND result = 'negative'" % ROUND),
        }
        api = {"persons_sampled": tot["persons_sampled"], "tubes": sum(tot["tubes"].values()),
               "tubes resulted": tot["tubes"]["resulted"], "results negative": tot["results"]["negative"]}
        for k in sql:
            if api[k] != sql[k]:
                failures.append("stats %s = %s, SQL over the raw tables says %s" % (k, api[k], sql[k]))
        if not sql["tubes resulted"]:
            failures.append("no tube was resulted")

        # A's stream ends on the same answer (it may take a flush or two to arrive)
        deadline = time.monotonic() + 15
        while stream.last != answers[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        if stream.last != answers[0]:
            failures.append("daemon 0's stream ends on %s, stats say %s"
                            % (json.dumps((stream.last or {}).get("totals")), json.dumps(tot)))
        stream.stop()
        rig.db.close_session()

        h = F.check_history(history, rig.db)
        attempts = len(history)
        failed = [e for e in history if e[0] != "ack"]
        # events answered "duplicate": a batch committed by a daemon killed before it answered,
        # then sent again (T.Client also resends once on a connection cut under it)
        dup_acks = sum(1 for e in history if e[0] == "ack" for x in e[1] if x[3] == "duplicate")
        statuses = {}
        for e in failed:
            statuses[e[2]] = statuses.get(e[2], 0) + 1
        per = [sum(1 for k in rig.kills if k[0] == i) for i in range(args.daemons)]
        p99_any = F.percentile(rig.first_ok_after, 99)
        affected = kill_to_ack(history, [k[1] for k in rig.kills])
        down = [k[2] - k[1] for k in rig.kills]
        print("multi_daemon: daemons=%d devices=%d kills=%d (per daemon %s) load=%.0fs sent=%d acknowledged=%d "
              "in_db=%d lost=%d duplicated=%d orphan_rows=%d"
              % (args.daemons, args.devices, len(rig.kills), per, load_s, len(h["sent"]), len(h["acked"]),
                 len(h["stored"]), len(h["lost"]), len(h["duplicated"]), h["orphan_rows"]))
        print("multi_daemon: attempts=%d failed=%d %s duplicate_answers=%d; kill->next ack (any device) p99=%s; kill->ack of an "
              "interrupted batch: n=%d p99=%s max=%s; daemon down (kill->ready) p50=%s max=%s"
              % (attempts, len(failed), json.dumps(statuses), dup_acks, F.ms(p99_any), len(affected),
                 F.ms(F.percentile(affected, 99)), F.ms(max(affected) if affected else None),
                 F.ms(F.percentile(down, 50)), F.ms(max(down) if down else None)))
        print("multi_daemon: haproxy " + " ".join(
            "%s(retries=%s redispatches=%s checks_down=%s sessions=%s)"
            % (n, r["wretr"], r["wredis"], r["chkdown"], r["stot"]) for n, r in sorted(hap.items())))
        print("multi_daemon: stats identical through %d daemons; persons_sampled=%d tubes=%d resulted=%d "
              "negative=%d (= SQL); stream on daemon 0: %d events, %d reconnects, last = stats: %s"
              % (args.daemons, api["persons_sampled"], api["tubes"], api["tubes resulted"], api["results negative"],
                 stream.events, stream.connects - 1, stream.last == answers[0]))
        if h["lost"] or h["duplicated"] or h["orphan_rows"]:
            failures.append("lost=%s duplicated=%s orphan_rows=%d" % (h["lost"][:5], h["duplicated"][:5], h["orphan_rows"]))
        if not h["acked"]:
            failures.append("nothing was acknowledged")
        return F.verdict(failures, a)
    finally:
        if stream:
            stream.stop()
        if proxy:
            proxy.stop()
        rig.cleanup()
        if not T.keep():
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
