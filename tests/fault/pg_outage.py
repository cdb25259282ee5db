#!/usr/bin/env python3
"""PostgreSQL faults under load (issue 7): an outage, then many lost connections.

The daemon runs against a private PostgreSQL cluster of its own (tests/harness/pg.sh), so the
test can stop and break it without touching the suite's shared cluster. Sampling-point devices
(faultlib.device: tubes of 10, each batch retried with the same event ids until acknowledged)
keep sending the whole time.

  outage      PostgreSQL is stopped (pg_ctl -m immediate) for --outage seconds and started
              again; the daemon is left alone. Asserted: while it is down every answer to
              POST /v1/events is 503 (no other status, and no 200 for a request both sent and
              answered while it was down), /readyz is 503; after the start the devices'
              batches are acknowledged again without anything done to the daemon (time to the
              first acknowledgement printed); the daemon's fds come back to where they were.
  reconnects  --rounds rounds of pg_terminate_backend on every backend of the daemon (its
              pool and its LISTEN connection), each round waiting until the daemon has
              reconnected and a batch is acknowledged again. The daemon's fd count and RSS
              are sampled after each round: fds must not grow at all, RSS by at most
              --rss-slack KiB between the end of the warm-up rounds and the last round.
  history     at the end every acknowledged event is checked against the database
              (faultlib.check_history): 0 lost, 0 duplicated.

    pg_outage.py [--outage S] [--rounds N] [--devices N]

Short form in ctest (fault_pg_outage: 12 s, 20 rounds); long form: scripts/fault.sh pg
(120 s, 100 rounds).
"""
import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402

T = F.T


def metric(daemon, name):
    """The sum of a counter or gauge over its label sets in /metrics, or None."""
    st, _, text = daemon.request("GET", "/metrics")
    if st != 200:
        return None
    vals = [float(m.group(1)) for m in re.finditer(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)]
    return sum(vals) if vals else None


class Rig:
    """What the devices need (faultlib.device) plus the cluster's controls."""

    def __init__(self, pg_sh, pg_dir):
        self.pg_sh, self.pg_dir = pg_sh, pg_dir
        self.lock = threading.Lock()
        self.restarted_at = []
        self.first_ok_after = []
        self.tokens = {}
        self.daemon = None

    def pg(self, cmd, *extra):
        T.run([self.pg_sh, cmd, self.pg_dir] + list(extra), timeout=120)

    def acks_since(self, history, t):
        return sum(1 for kind, _d, _s, t0, _t1 in history if kind == "ack" and t0 >= t)

    def wait_ack(self, history, t, timeout):
        """Seconds from t until a batch sent after t was acknowledged, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = [t1 for kind, _d, _s, t0, t1 in list(history) if kind == "ack" and t0 >= t]
            if done:
                return min(done) - t
            time.sleep(0.05)
        return None


def asan_daemon(pid):
    """Whether the daemon runs under AddressSanitizer (its runtime is mapped)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()



def fds_over(pid, pick):
    """pick (max or min) of the daemon's open fds, sampled 5 times over a second."""
    seen = []
    for _ in range(5):
        seen.append(F.proc_fds(pid))
        time.sleep(0.2)
    return pick(seen)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outage", type=float, default=12.0, help="seconds PostgreSQL stays down")
    ap.add_argument("--rounds", type=int, default=20, help="pg_terminate_backend rounds")
    ap.add_argument("--warmup-rounds", type=int, default=3, help="rounds before the RSS reference")
    ap.add_argument("--rss-slack", type=int, default=1024, help="KiB of RSS growth allowed")
    ap.add_argument("--devices", type=int, default=4)
    args = ap.parse_args()
    pg_sh = T.need_env("TUBELOOP_TEST_PG_SH")
    pg_dir = tempfile.mkdtemp(prefix="tubeloop-fault-pg-", dir=tempfile.gettempdir())
    os.chmod(pg_dir, 0o755)
    rig = Rig(pg_sh, pg_dir)
    env = None
    stop = threading.Event()
    threads = []
    failures = []
    try:
        T.run([pg_sh, "fixture-up", pg_dir, str(F.free_port())], timeout=180)
        with open(os.path.join(pg_dir, "conninfo")) as f:
            os.environ["TUBELOOP_TEST_DB"] = f.read().strip()
        os.environ["TUBELOOP_TEST_PG_DIR"] = pg_dir
        # ASan keeps freed memory in quarantine (256 MiB by default), which would count as
        # growth; a small one keeps the RSS figure about what the daemon holds on to
        asan = ":".join(o for o in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=1") if o)
        env = F.make_env("pgout", extra_env={"ASAN_OPTIONS": asan})
        d = rig.daemon = env.daemon
        pid = d.proc.pid
        sites = [{"code": "S%d" % i, "name": "压测采样点%d" % i, "township": T.TOWN1} for i in range(args.devices)]
        env.admin.post("/v1/admin/sites", {"sites": sites})
        env.make_round("RC", day=T.Clock(hours_back=1).day())
        rig.tokens = {s["code"]: env.make_token("collector", s["code"])[1] for s in sites}
        env.admin.close()
        persons = ["P%07d" % i for i in range(5000)]
        history = []
        threads = [threading.Thread(target=F.device, args=(rig, i, "RC", persons, stop, history, random.Random(i)))
                   for i in range(args.devices)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        # The devices' keep-alive connections come and go (18-21 fds seen for the same state):
        # the most over a second before, the fewest over a second after, so that only fds the
        # outage kept count as a leak.
        fds0, rss0 = fds_over(pid, max), F.proc_rss_kib(pid)
        print("pg_outage: phase=warm devices=%d acknowledged_batches=%d fds=%d rss=%dKiB"
              % (args.devices, rig.acks_since(history, 0), fds0, rss0), flush=True)

        # -- the outage --------------------------------------------------------------------
        sampler = F.Sampler(pid)
        sampler.start()
        rig.pg("stop", "immediate")
        t_down = time.monotonic()
        readyz = []
        while time.monotonic() - t_down < args.outage:
            readyz.append(d.request("GET", "/readyz")[0])
            time.sleep(0.5)
        t_up_begin = time.monotonic()
        rig.pg("start")
        t_up = time.monotonic()
        with rig.lock:
            rig.restarted_at.append(t_up)
        recovery = rig.wait_ack(history, t_up, 60)
        readyz_after = d.request("GET", "/readyz")[0]
        sampler.stop()
        # while it was down: every answer sent and received inside [t_down, t_up_begin]
        inside = [(k, s) for k, _d, s, t0, t1 in list(history) if t0 >= t_down and t1 <= t_up_begin]
        by_status = {}
        for k, s in inside:
            by_status[s] = by_status.get(s, 0) + 1
        ok_inside = by_status.get(200, 0)
        other = {s: n for s, n in by_status.items() if s not in (200, 503)}
        time.sleep(1.0)
        fds1, rss1 = fds_over(pid, min), F.proc_rss_kib(pid)
        print("pg_outage: phase=outage seconds=%.1f answers_while_down=%d status_503=%d status_200=%d other=%s "
              "readyz_503=%d/%d first_ack_after_start=%s readyz_after=%d peak_fds=%d fds_before=%d fds_after=%d "
              "rss_before=%dKiB rss_after=%dKiB"
              % (t_up_begin - t_down, len(inside), by_status.get(503, 0), ok_inside, other or "{}",
                 sum(1 for s in readyz if s == 503), len(readyz),
                 "%.2fs" % recovery if recovery is not None else "none", readyz_after, sampler.max_fds,
                 fds0, fds1, rss0, rss1), flush=True)
        if not by_status.get(503):
            failures.append("outage: no 503 while PostgreSQL was down (answers: %s)" % by_status)
        if ok_inside or other:
            failures.append("outage: answers other than 503 while PostgreSQL was down: %s" % by_status)
        if any(s != 503 for s in readyz):
            failures.append("outage: /readyz answered %s while PostgreSQL was down" % sorted(set(readyz)))
        if recovery is None:
            failures.append("outage: no batch acknowledged within 60 s of PostgreSQL's start")
        if readyz_after != 200:
            failures.append("outage: /readyz %d after recovery" % readyz_after)
        if fds1 > fds0 + 1:
            failures.append("outage: daemon fds %d after, %d before" % (fds1, fds0))

        # -- reconnects ------------------------------------------------------------------
        reconnects0 = metric(d, "tubeloop_db_reconnects_total") or 0
        samples = []
        recov = []
        for rnd in range(1, args.rounds + 1):
            t = time.monotonic()
            killed = int(env.db.scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"))
            r = rig.wait_ack(history, time.monotonic(), 30)
            deadline = time.monotonic() + 15
            while d.request("GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            recov.append(r if r is not None else 99.0)
            time.sleep(0.3)
            samples.append((rnd, killed, F.proc_fds(pid), F.proc_rss_kib(pid), time.monotonic() - t))
            if r is None:
                failures.append("reconnects: round %d: no batch acknowledged within 30 s" % rnd)
                break
        reconnects = (metric(d, "tubeloop_db_reconnects_total") or 0) - reconnects0
        ref = samples[min(args.warmup_rounds, len(samples)) - 1] if samples else None
        last = samples[-1] if samples else None
        print("pg_outage: phase=reconnects rounds=%d backends_terminated=%d daemon_reconnects=%d "
              "ack_after_terminate_p50=%s p99=%s fds_round1=%d fds_ref=%d fds_last=%d fds_max=%d "
              "rss_round1=%dKiB rss_ref=%dKiB rss_last=%dKiB rss_max=%dKiB"
              % (len(samples), sum(s[1] for s in samples), reconnects, F.ms(F.percentile(recov, 50)),
                 F.ms(F.percentile(recov, 99)), samples[0][2], ref[2], last[2], max(s[2] for s in samples),
                 samples[0][3], ref[3], last[3], max(s[3] for s in samples)), flush=True)
        if reconnects < args.rounds:
            failures.append("reconnects: the daemon counted %d reconnects over %d rounds" % (reconnects, args.rounds))
        # A single sample may hold one connection more or fewer (the pool opens them on demand:
        # ingest, fold, statistics, sealer) and the sealer's results (up to its batch of events)
        # set a memory high-water mark some rounds reach later than others. So a leak is when
        # even the lowest of the last three rounds exceeds the highest of the warm-up rounds.
        def growth(col):
            return min(s[col] for s in samples[-3:]) - max(s[col] for s in samples[:ref[0]])
        if growth(2) > 0:
            failures.append("reconnects: fds grew by %d from the warm-up rounds 1-%d to the last three rounds"
                            % (growth(2), ref[0]))
        # Under ASan the allocator's own bookkeeping grows by some 30-50 KiB a round even with
        # a small quarantine (a release daemon: 64 KiB over 77 rounds in all); a leaked libpq
        # connection per reconnect would be 4 x 40 KiB a round, above this allowance.
        slack = args.rss_slack + (96 * (last[0] - ref[0]) if asan_daemon(pid) else 0)
        if growth(3) > slack:
            failures.append("reconnects: RSS grew by %d KiB from the warm-up rounds 1-%d to the last three rounds, "
                            "more than %d KiB" % (growth(3), ref[0], slack))

        # -- history -----------------------------------------------------------------------
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)
        c = F.check_history(history, env.db)
        statuses = {}
        for kind, _d, s, _t0, _t1 in history:
            if kind != "ack":
                statuses[s] = statuses.get(s, 0) + 1
        print("pg_outage: phase=history sent=%d acknowledged=%d in_db=%d lost=%d duplicated=%d orphan_rows=%d "
              "refused_attempts=%s"
              % (len(c["sent"]), len(c["acked"]), len(c["stored"]), len(c["lost"]), len(c["duplicated"]),
                 c["orphan_rows"], statuses or "{}"), flush=True)
        if c["lost"] or c["duplicated"] or c["orphan_rows"]:
            failures.append("history: lost=%s duplicated=%s orphan_rows=%d"
                            % (c["lost"][:5], c["duplicated"][:5], c["orphan_rows"]))
        if not c["acked"]:
            failures.append("history: nothing was acknowledged")
        if d.proc.poll() is not None:
            failures.append("the daemon exited (%s)" % d.proc.returncode)
        return F.verdict(failures, d)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        if env is not None:
            env.close()
        subprocess.run([pg_sh, "fixture-down", pg_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            os.rmdir(pg_dir)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
