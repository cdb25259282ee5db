"""Shared pieces of the fault tests (tests/fault/*.py): a database + daemon with the standard
registry and extra daemon settings, the daemon's resources from /proc, percentiles, and a
control client that measures its own latency while something else attacks or breaks the
system. Python standard library only; the environment is the one ctest gives every test
(see tests/e2e/py/tubeloop_test.py)."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "py"))
import tubeloop_test as T  # noqa: E402


def make_env(label, extra_env=None, registry=True):
    """T.Env, with the daemon started under extra environment variables (TUBELOOP_* flags)."""
    env = T.Env.__new__(T.Env)
    env.db = T.Database(label)
    env.daemon = None
    try:
        env.daemon = T.Daemon(env.db, label, extra_env=extra_env).start()
        env.admin_secret = env.daemon.admin_token()
        env.admin = env.daemon.client(env.admin_secret)
        env.tokens, env.clients = {}, {}
        if registry:
            env.load_registry()
    except BaseException:
        env.close()
        raise
    return env


def free_port():
    """A loopback TCP port that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def verdict(failures, daemon):
    """The exit status of a fault test: 0 without failures, else 1 after printing them and the
    end of the daemon's log."""
    if not failures:
        return 0
    print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
    print(daemon.log_tail(20), file=sys.stderr)
    return 1


def pii_in_clear(needles, pattern, daemon, db):
    """Issue 7 item 10 over a long run: none of the test's ID numbers in the daemon's whole
    log (every restart appends to it) or in a pg_dump of the database. `needles` are the IDs as
    bytes (for resident IDs: their 17 leading digits, which no masked form keeps); `pattern`
    a regex with one lookahead group that yields every candidate in a text, so the search is
    one pass per text, not one per ID. Returns failure lines that count hits, never quote them."""
    found = []
    for where, text in (("daemon log", daemon.log_bytes()), ("pg_dump", db.dump())):
        if isinstance(text, str):
            text = text.encode()
        hits = needles.intersection(m.group(1) for m in re.finditer(pattern, text))
        if hits:
            found.append("%s: %d of the test's ID numbers in clear" % (where, len(hits)))
    return found


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of values, or None when there are none."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def ms(v):
    return "-" if v is None else "%.1fms" % (v * 1000.0)


def proc_fds(pid):
    """Open file descriptors of a process."""
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kib(pid):
    """Resident set size of a process in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """Samples a process's fd count and RSS every `every` seconds; max_fds/max_rss are the peaks
    since the last reset()."""

    def __init__(self, pid, every=0.2):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.stop_ev = threading.Event()
        self.reset()

    def reset(self):
        self.max_fds = 0
        self.max_rss = 0

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.max_fds = max(self.max_fds, proc_fds(self.pid))
                self.max_rss = max(self.max_rss, proc_rss_kib(self.pid))
            except OSError:
                pass
            self.stop_ev.wait(self.every)

    def stop(self):
        self.stop_ev.set()
        self.join(5)


class Control(threading.Thread):
    """The control client: a user who keeps working normally. Every `pace` seconds one call
    on its kept-alive connection (GET `path` with `token`), and every `fresh_every`-th call on a
    new TLS connection instead (a new user arriving, the thing slowloris tries to starve).
    Each call is recorded as (monotonic start, kind, seconds, status or exception name)."""

    def __init__(self, daemon, token, path="/v1/whoami", pace=0.02, fresh_every=5, timeout=10.0):
        super().__init__(daemon=True)
        self.d, self.token, self.path = daemon, token, path
        self.pace, self.fresh_every, self.timeout = pace, fresh_every, timeout
        self.samples = []
        self.stop_ev = threading.Event()

    def _call(self, client):
        t0 = time.monotonic()
        try:
            st = client.request("GET", self.path).status
        except Exception as e:  # noqa: BLE001 — a failure is a figure, not a crash of the test
            client.close()
            st = type(e).__name__
        return t0, time.monotonic() - t0, st

    def run(self):
        kept = T.Client(self.d, self.token)
        n = 0
        while not self.stop_ev.is_set():
            n += 1
            if n % self.fresh_every == 0:
                c = T.Client(self.d, self.token)
                t0, dt, st = self._call(c)
                c.close()
                kind = "fresh"
            else:
                t0, dt, st = self._call(kept)
                kind = "kept"
            self.samples.append((t0, kind, dt, st))
            self.stop_ev.wait(self.pace)
        kept.close()

    def stop(self):
        self.stop_ev.set()
        self.join(self.timeout + 5)

    def window(self, t_from, t_to, kind=None):
        return [s for s in self.samples if t_from <= s[0] < t_to and (kind is None or s[1] == kind)]

    @staticmethod
    def summary(samples):
        """(count, p50, p99, max, failures) of samples; a failure is anything but 200."""
        lat = [s[2] for s in samples]
        bad = [s for s in samples if s[3] != 200]
        return len(lat), percentile(lat, 50), percentile(lat, 99), (max(lat) if lat else None), len(bad)


# ---------------------------------------------------------------------------------------------
# Devices and the history checker (crash_history.py, pg_outage.py)


def device(h, idx, round_code, persons, stop, history, rng):
    """One sampling point: tubes of 10 (open, 10 samples, seal), each batch sent with
    send_until_acked (h as there; tokens {"S<idx>": secret})."""
    col = h.tokens["S%d" % idx]
    tube_no = 0
    while not stop.is_set():
        tube = "CR%02d-%06d" % (idx, tube_no)
        tube_no += 1
        c = T.Clock(hours_back=1)
        evs = [T.tube_open(c.at(0), tube, round_code)]
        for k in range(10):
            evs.append(T.sample_add(c.at(1 + k), tube, T.person(persons[rng.randrange(len(persons))], id_type="passport")))
        evs.append(T.tube_seal(c.at(12), tube))
        # two requests per tube, as a phone would upload
        for batch in (evs[:6], evs[6:]):
            send_until_acked(h, col, batch, history)
            if stop.is_set():
                break


def send_until_acked(h, secret, batch, history):
    """POST /v1/events with batch to h.daemon (anything with port and ssl_context(): a daemon,
    or a proxy in front of several) on a fresh connection, again with the same ids until it is
    acknowledged; returns the per-event outcomes (id, type, tube, status, code). h has lock,
    restarted_at and first_ok_after (seconds from the last restart to the first
    acknowledgement after it). Every attempt goes to history as (kind, data, status, t0, t1):
    kind "ack" (data: the outcomes), "status" (an HTTP status other than 200; data: the ids)
    or "error" (no answer; status: the exception's name)."""
    while True:
        t0 = time.monotonic()
        try:
            client = T.Client(h.daemon, secret)
            r = client.request("POST", "/v1/events", {"events": batch})
            client.close()
        except Exception as e:  # noqa: BLE001 — the daemon is being killed: retry
            history.append(("error", [e_["id"] for e_ in batch], str(type(e).__name__), t0, time.monotonic()))
            time.sleep(0.05)
            continue
        if r.status != 200:
            history.append(("status", [e_["id"] for e_ in batch], r.status, t0, time.monotonic()))
            time.sleep(0.05)
            continue
        outcomes = [(e_["id"], e_["type"], e_.get("tube"), x["status"], x.get("code")) for e_, x in zip(batch, r.json["results"])]
        history.append(("ack", outcomes, 200, t0, time.monotonic()))
        with h.lock:
            if h.restarted_at and len(h.first_ok_after) < len(h.restarted_at):
                h.first_ok_after.append(time.monotonic() - h.restarted_at[-1])
        return outcomes


def restart_on_port(d, port, conninfo, tag, timeout=30):
    """Starts the killed daemon d (T.Daemon) again on its port with the same certificate and
    keys (the old log kept as daemon.log.TAG) and waits until /readyz answers 200 (or timeout
    seconds)."""
    open(d.log, "ab").close()
    os.rename(d.log, d.log + ".%s" % tag)
    argv = [d.bin, "serve", "--db", conninfo, "--listen", "127.0.0.1:%d" % port,
            "--tls-cert", d.cert, "--tls-key", d.key, "--keys", d.keys]
    logf = open(d.log, "ab")
    d.proc = subprocess.Popen(argv, stdout=logf, stderr=logf, env=dict(os.environ))
    logf.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if d.request("GET", "/readyz", token=None)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.02)


def check_history(history, db):
    """Compares the devices' history with the database. Returns a dict: sent (ids), acked
    ({id: (type, tube)} acknowledged as accepted or duplicate), stored (ids in events), lost
    (acknowledged, not stored), duplicated (tubes whose stored samples exceed their
    acknowledged sample.add events, or disagree with the tube's own count) and orphan_rows
    (samples rows without their event)."""
    acked = {}
    sent = set()
    for kind, data, _status, _t0, _t1 in history:
        if kind == "ack":
            for eid, etype, tube, st, _code in data:
                sent.add(eid)
                if st in ("accepted", "duplicate"):
                    acked[eid] = (etype, tube)
        else:
            sent.update(data)
    stored = {r[0] for r in db.psql("SELECT id FROM events")}
    lost = sorted(set(acked) - stored)
    # applied twice: per tube, stored samples vs acknowledged sample.add events
    want = {}
    for eid, (etype, tube) in acked.items():
        if etype == "sample.add":
            want[tube] = want.get(tube, 0) + 1
    got = {r[0]: int(r[1]) for r in db.psql("SELECT tube, count(*) FROM samples GROUP BY tube")}
    sampled = {r[0]: int(r[1]) for r in db.psql("SELECT code, sampled FROM tubes")}
    duplicated = [t for t in got if got[t] > want.get(t, 0) or sampled.get(t, 0) != got[t]]
    orphan_rows = int(db.scalar("SELECT count(*) FROM samples s WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = s.event)"))
    return {"sent": sent, "acked": acked, "stored": stored, "lost": lost, "duplicated": duplicated,
            "orphan_rows": orphan_rows}
