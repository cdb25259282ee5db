#!/usr/bin/env python3
"""Crash under load, checked by history (issue 7 item 1).

Simulated devices (threads; one sampling point each, plus a lab) send events with their own
ids and retry each batch with the SAME ids until it is acknowledged (HTTP 200: every event
accepted, duplicate or rejected), recording every attempt and outcome. Meanwhile the daemon is
killed with SIGKILL at random intervals and restarted by the harness. At the end a checker
compares the history with the database:

  lost        an event acknowledged as accepted/duplicate that is not in the events table
  duplicated  an event applied twice: a tube whose stored sample count differs from the number
              of its acknowledged sample.add events, or a samples row without its event

Figures: events sent / acknowledged / in the database, kills, lost, duplicated, and the p99
time from a restart to the first success. 0 lost and 0 duplicated are required.

The negative control (--negative-control) shows the checker catches loss: the daemon's
sessions run with synchronous_commit=off and PostgreSQL itself is killed (immediate stop)
together with the daemon, so commits acknowledged a moment before a crash can vanish; the
checker must then report lost > 0 (the run fails if it does not).

    crash_history.py [--kills N] [--devices N] [--seconds S] [--negative-control]

Run through ctest (short form, label fault) or scripts/fault.sh (long form).
"""
import argparse
import os
import random
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402

T = F.T


class Harness:
    def __init__(self, args):
        self.args = args
        self.db = T.Database("crash")
        extra = {}
        self.daemon = T.Daemon(self.db, "crash", extra_env=extra)
        if args.negative_control:
            # the same database, but sessions that do not wait for the WAL flush at commit
            self.daemon_conninfo = self.db.conninfo + " options='-c synchronous_commit=off'"
        else:
            self.daemon_conninfo = self.db.conninfo
        self.port = None
        self.lock = threading.Lock()
        self.restarted_at = []      # times the daemon came back
        self.first_ok_after = []    # seconds from a restart to the first acknowledged batch
        self.kills = 0

    def start_daemon(self):
        d = self.daemon
        saved = d.db.conninfo
        d.db.conninfo = self.daemon_conninfo
        try:
            # keep the same port across restarts so every device reconnects to it
            if self.port is None:
                d.start()
                self.port = d.port
            else:
                F.restart_on_port(d, self.port, self.daemon_conninfo, self.kills)
        finally:
            d.db.conninfo = saved
        with self.lock:
            self.restarted_at.append(time.monotonic())

    def kill_daemon(self):
        p = self.daemon.proc
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.kills += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--interval", type=float, default=1.0, help="mean seconds between kills")
    ap.add_argument("--negative-control", action="store_true")
    args = ap.parse_args()
    rng = random.Random(int(os.environ.get("TUBELOOP_FAULT_SEED", "7")))
    h = Harness(args)
    env = None
    try:
        h.start_daemon()
        env = T.Env.__new__(T.Env)
        env.db, env.daemon, env.tokens, env.clients = h.db, h.daemon, {}, {}
        env.admin_secret = h.daemon.admin_token()
        env.admin = T.Client(h.daemon, env.admin_secret)
        sites = [{"code": "S%d" % i, "name": "压测采样点%d" % i, "township": T.TOWN1} for i in range(args.devices)]
        env.admin.post("/v1/admin/regions", {"regions": T.REGIONS})
        env.admin.post("/v1/admin/sites", {"sites": sites})
        env.make_round("RC", day=T.Clock(hours_back=1).day())
        h.tokens = {s["code"]: env.make_token("collector", s["code"])[1] for s in sites}
        env.admin.close()
        persons = ["P%07d" % i for i in range(5000)]
        stop = threading.Event()
        history = []
        threads = [threading.Thread(target=F.device, args=(h, i, "RC", persons, stop, history, random.Random(i)))
                   for i in range(args.devices)]
        for t in threads:
            t.start()
        for _ in range(args.kills):
            time.sleep(rng.uniform(0.3, 2 * args.interval))
            if args.negative_control:
                # PostgreSQL dies first, under load: with synchronous_commit off, commits already
                # acknowledged whose WAL was still in shared memory are gone
                T.run([h.db.pg_sh, "stop", h.db.pg_dir, "immediate"])
                h.kill_daemon()
                T.run([h.db.pg_sh, "start", h.db.pg_dir])
            else:
                h.kill_daemon()
            h.start_daemon()
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(60)
        h.db.close_session()

        c = F.check_history(history, h.db)
        sent, acked, stored, lost, duplicated, orphan_rows = (c["sent"], c["acked"], c["stored"], c["lost"],
                                                              c["duplicated"], c["orphan_rows"])
        p99 = sorted(h.first_ok_after)[max(0, int(0.99 * len(h.first_ok_after)) - 1)] if h.first_ok_after else None
        print("crash_history%s: devices=%d kills=%d sent=%d acknowledged=%d in_db=%d lost=%d duplicated=%d "
              "orphan_rows=%d restart_to_first_success_p99=%s"
              % (" (negative control)" if args.negative_control else "", args.devices, h.kills, len(sent),
                 len(acked), len(stored), len(lost), len(duplicated), orphan_rows,
                 "%.3fs" % p99 if p99 is not None else "-"))
        if args.negative_control:
            if not lost:
                print("negative control: the checker saw no loss although commits were not durable", file=sys.stderr)
                return 1
            print("negative control: the checker caught %d lost events (as it must)" % len(lost))
            return 0
        if lost or duplicated or orphan_rows:
            print("FAILED: lost=%s duplicated=%s" % (lost[:5], duplicated[:5]), file=sys.stderr)
            return 1
        pii = F.pii_in_clear({p.encode() for p in persons}, rb"(?=(P\d{7}))", h.daemon, h.db)
        if pii:
            print("FAILED: " + "; ".join(pii), file=sys.stderr)
            return 1
        print("personal data: none of the %d passport numbers in the daemon's log (%d restarts) or a pg_dump"
              % (len(persons), h.kills))
        if len(acked) == 0:
            print("FAILED: nothing was acknowledged", file=sys.stderr)
            return 1
        return 0
    finally:
        h.daemon.cleanup()
        h.db.drop()


if __name__ == "__main__":
    sys.exit(main())
