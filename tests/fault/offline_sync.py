#!/usr/bin/env python3
"""Offline clients, the long form (issue 7 item 3): the scanning client's journal survives
kill -9 at random points during sync, hundreds of times; every scan is in the database exactly
once.

A sampling point scans offline with the real CLI (`tubeloop scan --journal F --wait 0`, the
server out of reach): --tubes tubes of 10 persons each, every fifth tube with a scan taken
back (/undo), boxes of --box tubes packed and sealed to a lab, thousands of events in one
journal. Then `tubeloop sync --journal F` runs again and again, each run SIGKILLed after a
random delay, until the journal is fully acknowledged. The delay grows (×1.6) while a run
records no answer and is drawn afresh after one that did, so kills land before the first
request, between batches (the sender posts 100 events at a time) and while a batch is on its
way. The daemon finishes a request whose client died, so a batch cut in flight is usually
committed without its answer reaching the journal: the next run sends it again and is answered
"duplicate". Fresh journals follow until --kills kills are reached; the last journal is then
synced to the end without kills.

Checks, against the database and the journals (never against figures written here):
  lost          a live (recorded, not undone) journal event that is not in `events`
  undone_in_db  an undone event that is in `events`
  extra         an event of this sampling point in `events` that no journal holds
  acks          every live event acknowledged, accepted or duplicate, nothing else
  duplicated    a tube or box whose derived state says something was applied twice (or not
                at all): per tube, its samples rows, `sampled` and seal count against the
                journal's live sample.add events (exactly 10) and its tube.seal, its box against
                the journal's box.pack; per box its seal count, lab and the tubes in it
  samples       samples rows whose event is not a live sample.add of the journals, or two
                rows of one event
  journal       a line the CLI would skip (torn, or its check wrong) left after the last sync
  stats         GET /v1/stats for the round: persons_sampled and tubes equal to the journals'
                live sample.add events (every person is scanned once) and tubes
  replay        a copy of each journal taken before its upload, synced afterwards: every
                event answered "duplicate", the events table unchanged
The checker is then shown able to fail (negative control, always run): inside a transaction
that is rolled back, one acknowledged event is deleted from `events` (its no-delete rule
disabled) and one sample.add is applied twice (a second samples row of its event); the checker
must report exactly that event lost and that tube duplicated.

Figures: kills, partial_kills (after the kill the journal was partly acknowledged), idle_kills
(the killed run recorded no answer), cut_in_flight (runs answered "duplicate": the kill before
had cut a batch that the server committed), journals, events, in_db, lost, duplicated.
Personal data is synthetic (tubeloop_test.resident_id) and never printed.

    offline_sync.py [--kills N] [--tubes N] [--box N] [--seed S]

Short form in ctest (fault_offline_sync); long form: scripts/fault.sh offline [KILLS].
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402
from test_cli_scan import journal_records  # noqa: E402  (the journal's reader, tests/e2e/py)

T = F.T
CLI = T.need_env("TUBELOOP_CLI")
ROUND = "RO"
SITE = "S1"
LAB = "L1"
PER_TUBE = 10


def fnv1a(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def damaged_lines(path):
    """Lines of a journal that the CLI would skip: a torn last line (no newline) and lines
    whose FNV-1a check (" #" and 8 hex digits) does not match the bytes before it."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    bad = int(lines[-1] != b"")
    for line in lines[1:-1]:
        body, sep, check = line.rpartition(b" #")
        bad += not sep or len(check) != 8 or fnv1a(body) != int(check, 16)
    return bad


def count_acks(path):
    """Acknowledged events (accepted/duplicate/rejected) and of them duplicate, quickly."""
    n = dup = 0
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"ack ") and line.endswith(b"\n"):
                n += 1
                dup += b" duplicate " in line
    return n, dup


class Field:
    """The database, the daemon, the sampling point's token and the journals' folder."""

    def __init__(self, seed):
        self.env = F.make_env("offline_sync")
        self.rng = random.Random(seed)
        self.env.make_round(ROUND, pool_size=PER_TUBE)
        self.secret = self.env.make_token("collector", SITE)[1]
        self.viewer = self.env.make_token("viewer", T.COUNTY)[1]
        self.tmp = tempfile.mkdtemp(prefix="offline-sync-", dir=T.need_env("TUBELOOP_TEST_TMP"))
        self.used = set()  # persons scanned so far: each once in the whole run
        # Offline: a loopback port nothing listens on (the client sees exactly what it sees
        # with the daemon stopped: connection refused).
        self.nowhere = "https://127.0.0.1:%d" % F.free_port()

    def cli_env(self, url):
        env = dict(os.environ)
        env.pop("TUBELOOP_LANG", None)
        env.update(TUBELOOP_URL=url, TUBELOOP_TOKEN=self.secret, TUBELOOP_CACERT=self.env.daemon.cert)
        return env

    def online(self):
        return self.cli_env("https://127.0.0.1:%d" % self.env.daemon.port)

    def close(self):
        self.env.close()
        if not T.keep():
            shutil.rmtree(self.tmp, ignore_errors=True)

    def person(self):
        while True:
            p = T.resident_id(self.rng)
            if p not in self.used:
                self.used.add(p)
                return p

    def record(self, n, tubes, box):
        """Scans journal n offline: the path of a journal of `tubes` tubes of 10 and their
        boxes, (live, undone) events. Raises when the CLI fails or the journal does not hold
        what was scanned."""
        path = os.path.join(self.tmp, "journal-%03d.log" % n)
        lines, undos = [], 0
        for t in range(tubes):
            lines.append("OS%03d-T%04d" % (n, t))
            for k in range(PER_TUBE):
                if k == 4 and t % 5 == 0:
                    lines += [self.person(), "/undo"]  # recorded, taken back before it was sent
                    undos += 1
                lines.append(self.person())
            # the tenth person fills the tube: the CLI seals it by itself
            if (t + 1) % box == 0 or t == tubes - 1:
                lines += ["/box OS%03d-B%03d" % (n, t // box), "/pack", "/sealbox " + LAB]
        lines.append("/quit")
        p = subprocess.run([CLI, "--lang", "en", "scan", "--round", ROUND, "--capacity", str(PER_TUBE),
                            "--journal", path, "--wait", "0"], input=("\n".join(lines) + "\n").encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.cli_env(self.nowhere),
                           timeout=600)
        if p.returncode != 0:
            raise RuntimeError("tubeloop scan (offline) failed (%d): %s" % (p.returncode, p.stderr.decode()[-2000:]))
        events, acks, undone = journal_records(path)
        bad = damaged_lines(path)
        boxes = -(-tubes // box)
        want = tubes * (PER_TUBE + 2) + undos + 2 * boxes
        if len(events) != want or len(undone) != undos or acks or bad:
            raise RuntimeError("journal %d holds %d events (%d undone, %d acks, %d bad lines); scanned %d (%d undone)"
                               % (n, len(events), len(undone), len(acks), bad, want, undos))
        return path, len(events) - undos, undos


class Killer:
    """Runs sync on a journal until it is acknowledged, killing each run after a delay."""

    def __init__(self, field, lo, hi):
        self.f = field
        self.lo, self.hi = lo, hi
        self.kills = self.partial = self.idle = self.cut_in_flight = self.unkilled = 0
        self.delays = []  # seconds from the start of each killed run to its kill
        self.delay = field.rng.uniform(lo, hi)

    def run(self, path, live, budget):
        """Kills sync runs on path until it is fully acknowledged or budget kills were made."""
        stalled = 0
        while self.kills < budget:
            a0, d0 = count_acks(path)
            if a0 >= live:
                return
            p = subprocess.Popen([CLI, "sync", "--journal", path], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=self.f.online())
            try:
                p.wait(self.delay)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait(30)
            a1, d1 = count_acks(path)
            self.cut_in_flight += d1 > d0
            if p.returncode == -signal.SIGKILL:
                self.kills += 1
                self.delays.append(self.delay)
                self.partial += 0 < a1 < live
                self.idle += a1 == a0
            else:
                self.unkilled += 1  # it ended by itself before its kill
            if a1 == a0:
                # nothing recorded: the next run gets longer (capped), so it reaches an answer
                self.delay = min(self.delay * 1.6, 20.0)
                stalled += 1
                if stalled > 40:
                    raise RuntimeError("sync recorded no answer in 40 runs (delay %.1fs)" % self.delay)
            else:
                self.delay = self.f.rng.uniform(self.lo, self.hi)
                stalled = 0

    def finish(self, path):
        p = subprocess.run([CLI, "sync", "--journal", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.f.online(), timeout=300)
        if p.returncode != 0:
            raise RuntimeError("final sync failed (%d): %s" % (p.returncode, p.stderr.decode()[-2000:]))


def check(db, journals, sender):
    """Compares the journals with the database (see the module's docstring). Returns a dict of
    figures and the list of failures."""
    live, undone, acks, evs, damaged = {}, set(), {}, {}, []
    for path in journals:
        e, a, u = journal_records(path)
        if damaged_lines(path):
            damaged.append(os.path.basename(path))
        evs.update(e)
        acks.update(a)
        undone |= u
        live.update({i: x for i, x in e.items() if i not in u})
    stored = {}
    for i, n in db.psql("SELECT id, count(*) FROM events WHERE sender = '%s' GROUP BY id" % sender):
        stored[i] = int(n)
    lost = sorted(set(live) - set(stored))
    undone_in_db = sorted(undone & set(stored))
    extra = sorted(set(stored) - set(evs))
    twice = sorted(i for i, n in stored.items() if n > 1)
    fails = []
    unacked = sorted(set(live) - set(acks))
    bad_acks = sorted(i for i, (st, _c) in acks.items() if st not in ("accepted", "duplicate") or i not in live)

    # what the journals say each tube and box must be
    want_tube, want_box, sample_events = {}, {}, set()
    for e in live.values():
        if e["type"] == "tube.open":
            want_tube.setdefault(e["tube"], {"n": 0, "seal": None, "box": None})
    for e in live.values():
        t = e["type"]
        if t == "sample.add":
            want_tube[e["tube"]]["n"] += 1
            sample_events.add(e["id"])
        elif t == "tube.seal":
            want_tube[e["tube"]]["seal"] = e.get("count")
        elif t == "box.pack":
            for tube in e["tubes"]:
                want_tube[tube]["box"] = e["box"]
            want_box.setdefault(e["box"], {"tubes": 0, "seal": None})["tubes"] += len(e["tubes"])
        elif t == "box.seal":
            want_box.setdefault(e["box"], {"tubes": 0, "seal": None})["seal"] = e.get("count")
    duplicated = []
    got_tube = {r[0]: r[1:] for r in db.psql(
        "SELECT t.code, t.sampled, coalesce(t.seal_count, -1), coalesce(t.box, ''),"
        " (SELECT count(*) FROM samples s WHERE s.tube = t.code) FROM tubes t WHERE t.site = '%s'" % sender)}
    for tube, w in want_tube.items():
        g = got_tube.get(tube)
        want = [str(w["n"]), str(w["seal"] if w["seal"] is not None else -1), w["box"] or "", str(w["n"])]
        if g != want or w["n"] != PER_TUBE:
            duplicated.append(tube)
    duplicated += sorted(set(got_tube) - set(want_tube))
    got_box = {r[0]: r[1:] for r in db.psql(
        "SELECT b.code, coalesce(b.seal_count, -1), coalesce(b.dest_lab, ''),"
        " (SELECT count(*) FROM tubes t WHERE t.box = b.code) FROM boxes b WHERE b.site = '%s'" % sender)}
    for box, w in want_box.items():
        if got_box.get(box) != [str(w["seal"] if w["seal"] is not None else -1), LAB, str(w["tubes"])]:
            duplicated.append(box)
    duplicated += sorted(set(got_box) - set(want_box))
    rows = db.psql("SELECT event, count(*) FROM samples WHERE site = '%s' GROUP BY event" % sender)
    stray_samples = sorted(r[0] for r in rows if r[0] not in sample_events or int(r[1]) != 1)
    if len(rows) != len(sample_events):
        stray_samples.append("%d samples events, %d live sample.add" % (len(rows), len(sample_events)))

    for name, items in (("lost", lost), ("undone_in_db", undone_in_db), ("extra", extra), ("twice", twice),
                        ("unacknowledged", unacked), ("acks not accepted/duplicate", bad_acks),
                        ("duplicated", duplicated), ("samples without their sample.add", stray_samples),
                        ("journals with damaged lines after the last sync", damaged)):
        if items:
            fails.append("%s: %d (%s)" % (name, len(items), ", ".join(items[:5])))
    return {"live": live, "undone": len(undone), "in_db": len(stored), "lost": lost, "duplicated": duplicated,
            "acks_duplicate": sum(1 for st, _c in acks.values() if st == "duplicate"),
            "persons": len(sample_events), "tubes": len(want_tube), "boxes": len(want_box),
            "stray_samples": stray_samples}, fails


def check_stats(field, figures):
    """The round's roll-up through the API against the journals' own counts."""
    r = field.env.daemon.request("GET", "/v1/stats?region=%s&round=%s" % (T.COUNTY, ROUND), token=field.viewer)
    if r.status != 200:
        return ["GET /v1/stats: %s %s" % (r.status, r.text[:300])]
    tot = r.json["totals"]
    got = (tot["persons_sampled"], sum(tot["tubes"].values()))
    want = (figures["persons"], figures["tubes"])
    return [] if got == want else ["stats (persons_sampled, tubes) = %s, the journals say %s" % (got, want)]


def replay(field, copies, db):
    """Syncs the pre-upload copies again: (events answered duplicate, failures)."""
    fails, dup = [], 0
    before = db.count("events", "sender = '%s'" % SITE)
    for path, live in copies:
        p = subprocess.run([CLI, "--json", "sync", "--journal", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=field.online(), timeout=300)
        try:
            r = json.loads(p.stdout)
        except ValueError:
            r = {}
        got = (p.returncode, r.get("accepted"), r.get("duplicate"), r.get("rejected"), r.get("waiting"))
        if got != (0, 0, live, [], 0):
            fails.append("replay of %s: (rc, accepted, duplicate, rejected, waiting) = %s, want %s"
                         % (os.path.basename(path), got, (0, 0, live, [], 0)))
        dup += r.get("duplicate") or 0
    after = db.count("events", "sender = '%s'" % SITE)
    if after != before:
        fails.append("the replay changed the events table: %d -> %d rows" % (before, after))
    return dup, fails


def negative_control(db, journals, figures):
    """Inside a rolled-back transaction: one acknowledged event deleted, and one sample.add
    applied twice (a second samples row of its event, with another person, in its tube). The
    checker must report exactly that event lost and that tube duplicated; failures if not."""
    victim = sorted(figures["live"])[len(figures["live"]) // 2]
    twice = sorted(i for i, e in figures["live"].items() if e["type"] == "sample.add")[0]
    tube = figures["live"][twice]["tube"]
    db.psql("BEGIN")
    try:
        db.psql("ALTER TABLE events DISABLE RULE events_no_delete")
        db.psql("DELETE FROM events WHERE id = '%s'" % victim)
        db.psql("INSERT INTO samples (tube, person, round, site, at, event)"
                " SELECT s.tube, o.person, s.round, s.site, s.at, s.event FROM samples s,"
                " (SELECT person FROM samples WHERE tube <> '%s' LIMIT 1) o WHERE s.event = '%s'" % (tube, twice))
        fig, _ = check(db, journals, SITE)
    finally:
        db.psql("ROLLBACK")
    fails = []
    if fig["lost"] != [victim]:
        fails.append("negative control: the deleted event was not reported lost (lost=%d)" % len(fig["lost"]))
    if fig["duplicated"] != [tube] or twice not in fig["stray_samples"]:
        fails.append("negative control: the sample applied twice was not reported (duplicated=%d)"
                     % len(fig["duplicated"]))
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--tubes", type=int, default=240, help="tubes per journal (12 events each)")
    ap.add_argument("--box", type=int, default=24, help="tubes per box")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("TUBELOOP_FAULT_SEED", "7")))
    ap.add_argument("--delay", type=float, nargs=2, default=(0.02, 0.4), metavar=("LO", "HI"),
                    help="seconds before a kill after a run that recorded an answer")
    args = ap.parse_args()
    t_start = time.monotonic()
    field = Field(args.seed)
    failures = []
    try:
        killer = Killer(field, *args.delay)
        journals, copies = [], []
        t_record = 0.0
        while killer.kills < args.kills:
            t0 = time.monotonic()
            path, live, _undos = field.record(len(journals), args.tubes, args.box)
            t_record += time.monotonic() - t0
            copy = path + ".before-upload"
            shutil.copy(path, copy)  # with its mode: 0600, it holds personal data
            journals.append(path)
            copies.append((copy, live))
            killer.run(path, live, args.kills)
        for path in journals:
            killer.finish(path)  # the last journal, or one whose final run was never let finish
        db = field.env.db
        fig, failures = check(db, journals, SITE)
        failures += check_stats(field, fig)
        replay_dup, fails = replay(field, copies, db)
        failures += fails
        if killer.kills < args.kills:
            failures.append("only %d kills" % killer.kills)
        if not killer.partial:
            failures.append("no kill landed while an upload was partly done")
        if not killer.cut_in_flight:
            failures.append("no kill cut a batch in flight (no run was answered duplicate)")
        nc = negative_control(db, journals, fig)
        failures += nc
        pii = F.pii_in_clear({i[:17].encode() for i in field.used}, rb"(?=(\d{17}))", field.env.daemon, db)
        failures += pii
        print("offline_sync: kills=%d partial_kills=%d idle_kills=%d cut_in_flight=%d unkilled_runs=%d "
              "journals=%d events=%d undone=%d in_db=%d lost=%d duplicated=%d acks_duplicate=%d "
              "replay_duplicate=%d tubes=%d boxes=%d kill_after_p50=%.2fs max=%.2fs record=%.0fs total=%.0fs"
              % (killer.kills, killer.partial, killer.idle, killer.cut_in_flight, killer.unkilled,
                 len(journals), len(fig["live"]), fig["undone"], fig["in_db"], len(fig["lost"]),
                 len(fig["duplicated"]), fig["acks_duplicate"], replay_dup, fig["tubes"], fig["boxes"],
                 F.percentile(killer.delays, 50) or 0, max(killer.delays, default=0), t_record,
                 time.monotonic() - t_start))
        if not nc:
            print("negative control: one acknowledged event deleted and one sample applied twice (rolled back): "
                  "reported as 1 lost and 1 duplicated (as it must)")
        if not pii:
            print("personal data: none of the %d resident IDs in the daemon's log or a pg_dump" % len(field.used))
        db.close_session()
        return F.verdict(failures, field.env.daemon)
    finally:
        field.close()


if __name__ == "__main__":
    sys.exit(main())
