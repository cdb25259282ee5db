#!/usr/bin/env python3
"""Convergence (DESIGN §4): "applying the same events in any interleaving of the per-device
streams ends in the same tubes, boxes, follow-ups and open anomalies."

A seeded generator makes a realistic round: three sampling points, each with its own phone
(device stream), two couriers and two labs; pooled tubes (some partly filled, some sealed with
a miscounted number), a person sampled at two sites (person_repeat), boxes to either lab (some
scanned twice at pickup, some scanned at delivery by the lab too), one box delivered to and
received by the wrong lab, one tube left unscanned in its box (tube_missing), one tube found in
another box than its own (tube_unexpected), a tube rejected for a leak, a result corrected with
amend, pooled positives: the persons of the positive and of the rejected tube are called back,
sampled again into 1-in-1 tubes, transported and tested (follow-ups closed, one single-tube
positive).

The same per-device streams are then replayed in N interleavings — the first in event-time
order, the others random (uniform, couriers and labs long before the sites, one site uploading
last, in big bursts) — each into a fresh database through its own daemon, in batches of random
size, each device's order preserved. Every event must be accepted, and the state must be the
same after every run: tubes and boxes (every column), samples, receipts, follow-ups (every
column), open anomalies (subject, type, region; the wall-clock overdue_* ones aside) and every
person's lookup answer. The first run is also checked against what the generator planned, so
that a daemon that derived nothing could not pass. After every batch of the first two runs, and at the end
of every run, the follow-ups, person statuses and open anomalies the writes left must equal a
derivation of everything at once: each write re-derives only what its events can change, and
this is the check that it left nothing out on the way (the end state alone would not show it).

TUBELOOP_CONVERGENCE_RUNS sets N (default 8); TUBELOOP_CONVERGENCE_SEED replays a seed (the
seed is printed, and named in every failure).

Two fixed cases pin down what the property test finds, each replayed in two arrival orders
(ArrivalOrder): a result amended from invalid to negative, and a tube found in another site's
box while its own site's phone uploads last. ConcurrentDevices sends a pooled positive and the
single-tube result of its person at the same moment on two connections: requests in flight
together are an arrival order too, and must end as they do one after the other.
PlainGroups checks the short write of groups that only open and sample tubes (sql/025): a person
with a follow-up, or sampled again, handed to the whole write, also when two such groups sample
one person at the same moment, and which groups went which way; and that the roll-up deltas and
chain queue rows it writes itself, with the triggers standing aside (sql/040), are right.
"""
import json
import os
import random
import re
import sys
import threading
import time
import unittest
import uuid

import tubeloop_test as T

ROUND = "CV-R1"
SITES = ("S1", "S2", "S3")
LABS = ("L1", "L2")
COURIERS = ("C1", "C2")


class Scenario:
    """Per-device event streams of one round, and what the generator planned."""

    def __init__(self, seed):
        self.rng = rng = random.Random(seed)
        self.clock = T.Clock(hours_back=6)
        self.streams = {("collector", s): [] for s in SITES}
        self.streams.update({("courier", c): [] for c in COURIERS})
        self.streams.update({("lab", l): [] for l in LABS})
        self.persons = []          # every person as sent
        self.plan = {"tubes": set(), "boxes": set(), "seal_mismatch": set(), "followups": {},
                     "missing": None, "wrong_lab": None, "positives": []}
        self._n = 0
        names = set()

        def new_person():
            p = T.person(T.resident_id(rng), T.person_name(rng, names), T.phone(rng))
            self.persons.append(p)
            return p

        # --- sampling: pooled tubes per site, minutes 0..90
        tubes_of = {}
        members = {}
        for s in SITES:
            tubes_of[s] = []
            for k in range(rng.randint(3, 5)):
                tube = "CV-%s-T%02d" % (s, k)
                n = rng.choice((10, 10, 10, 8, 4, 1))
                members[tube] = [new_person() for _ in range(n)]
                tubes_of[s].append(tube)
        # one person also sampled at another site (person_repeat), never in a positive tube
        rep_from, rep_to = rng.sample(SITES, 2)
        src = [t for t in tubes_of[rep_from] if len(members[t]) > 1][0] if any(
            len(members[t]) > 1 for t in tubes_of[rep_from]) else tubes_of[rep_from][0]
        dst = [t for t in tubes_of[rep_to] if len(members[t]) < 10]
        if not dst:
            dst = [tubes_of[rep_to][-1]]
            self.persons.remove(members[dst[0]].pop())  # make room: that person stays home
        repeat_person = members[src][0]
        members[dst[0]].append(repeat_person)
        self.plan["repeat_tubes"] = (src, dst[0])
        cands = [t for s in SITES for t in tubes_of[s] if repeat_person not in members[t] and len(members[t]) > 1]
        positives = set(rng.sample(cands, min(2, len(cands))))
        for s in SITES:
            minute = rng.randint(0, 10)
            for tube in tubes_of[s]:
                self.emit(("collector", s), T.tube_open, minute, tube, ROUND)
                for p in members[tube]:
                    minute += 1
                    # the person sampled twice comes to the second site half a minute off any
                    # whole minute: one person is never sampled at two places at once
                    at = minute + 0.5 if (p is repeat_person and tube == dst[0]) else minute
                    self.emit(("collector", s), T.sample_add, at, tube, p)
                count = len(members[tube])
                if rng.random() < 0.15:
                    count -= 1
                    self.plan["seal_mismatch"].add(tube)
                minute += 1
                self.emit(("collector", s), T.tube_seal, minute, tube, count)
                self.plan["tubes"].add(tube)

        # --- boxes per site (1 or 2), sealed to a lab; minutes 95..110
        boxes = []
        for s in SITES:
            ts = list(tubes_of[s])
            split = [ts] if len(ts) < 4 or rng.random() < 0.5 else [ts[:len(ts) // 2], ts[len(ts) // 2:]]
            for i, part in enumerate(split):
                box = "CV-%s-B%d" % (s, i)
                lab = rng.choice(LABS)
                self.emit(("collector", s), T.box_pack, 95 + i, box, part)
                self.emit(("collector", s), T.box_seal, 97 + i, box, lab, len(part))
                boxes.append((box, s, lab, part))
                self.plan["boxes"].add(box)
        # one box goes to the wrong lab; one tube of another box is not scanned; one tube is
        # found in another box than the one it was packed in; the lab rejects one tube (leak)
        # and corrects one result (invalid, then amended to negative)
        wrong = rng.choice(boxes)
        self.plan["wrong_lab"] = wrong[0]
        special = set(positives) | {dst[0], src}
        plain = lambda b: [t for t in b[3] if t not in special]  # noqa: E731
        cands = [b for b in boxes if b is not wrong and len(plain(b)) > 1] or \
            [b for b in boxes if b is not wrong and plain(b)]
        miss_box = rng.choice(cands)
        missing = plain(miss_box)[-1]
        special.add(missing)
        self.plan["missing"] = missing
        misplaced = into = None
        cands = [b for b in boxes if b is not miss_box and len(plain(b)) > 1]
        if cands and len(boxes) > 2:
            from_box = rng.choice(cands)
            misplaced = plain(from_box)[0]
            into = rng.choice([b for b in boxes if b is not from_box and b is not miss_box])
            special.add(misplaced)
        self.plan["misplaced"] = misplaced
        rest = sorted(t for b in boxes for t in plain(b) if t not in special)
        rejected, amended = rest[0], rest[-1]
        self.plan["rejected"], self.plan["amended"] = rejected, amended

        # --- transport and testing: pickups 110..130 (a courier scans some boxes twice),
        # deliveries 140..170 (the lab scans some too), receipt 175..185, results 200..240
        results = {}
        for box, s, lab, part in boxes:
            courier = rng.choice(COURIERS)
            at_lab = ("L2" if lab == "L1" else "L1") if box == wrong[0] else lab
            pick = rng.randint(110, 130)
            self.emit(("courier", courier), T.box_pickup, pick, box)
            if rng.random() < 0.3:
                self.emit(("courier", courier), T.box_pickup, pick + 2, box)
            deliver = rng.randint(140, 170)
            self.emit(("courier", courier), T.box_deliver, deliver, box, at_lab)
            if rng.random() < 0.5:
                self.emit(("lab", at_lab), T.box_deliver, deliver + rng.choice((-1, 1)), box)
            scanned = [t for t in part if t != missing and t != misplaced]
            if into is not None and box == into[0]:
                scanned.append(misplaced)
            self.emit(("lab", at_lab), T.box_receive, rng.randint(175, 185), box, scanned)
            for t in scanned:
                results[t] = (at_lab, "positive" if t in positives else "negative")
        for t in sorted(results, key=lambda x: rng.random()):
            lab, r = results[t]
            at = rng.randint(200, 240)
            if t == rejected:
                self.emit(("lab", lab), T.tube_reject, at, t, "leak")
            elif t == amended:
                self.emit(("lab", lab), T.tube_result, at, t, "invalid")
                self.emit(("lab", lab), T.tube_result, at + 5, t, "negative", None, True)
            else:
                ct = {"ORF1ab": round(rng.uniform(25, 35), 1), "N": round(rng.uniform(25, 35), 1)} \
                    if r == "positive" else None
                self.emit(("lab", lab), T.tube_result, at, t, r, ct)
        self.plan["positives"] = sorted(positives)

        # --- the persons of the pooled positives (awaiting_recheck) and of the rejected tube
        # (resample) are sampled again into single tubes at the same site, minutes 260..300,
        # to L1 via C1, results 340..360; one single-tube positive
        site_of = {t: s for s in SITES for t in tubes_of[s]}
        single_positive = None
        rbox_parts = {}
        for pt in sorted(positives) + [rejected]:
            s = site_of[pt]
            kind = "resample" if pt == rejected else "awaiting_recheck"
            for i, p in enumerate(members[pt]):
                single = "CV-%s-R%s%02d" % (s, pt[-2:], i)
                m = 260 + i
                self.emit(("collector", s), T.tube_open, m, single, ROUND, 1)
                self.emit(("collector", s), T.sample_add, m, single, p)
                self.emit(("collector", s), T.tube_seal, m, single, 1)
                rbox_parts.setdefault(s, []).append(single)
                self.plan["tubes"].add(single)
                outcome = "negative"
                if single_positive is None:
                    single_positive = single
                    outcome = "positive"
                self.plan["followups"][(pt, p["id_number"])] = (kind, single, outcome)
                results[single] = (None, outcome)
        for s, part in sorted(rbox_parts.items()):
            box = "CV-%s-RB" % s
            self.emit(("collector", s), T.box_pack, 290, box, part)
            self.emit(("collector", s), T.box_seal, 291, box, "L1", len(part))
            self.emit(("courier", "C1"), T.box_pickup, 300, box)
            self.emit(("courier", "C1"), T.box_deliver, 320, box, "L1")
            self.emit(("lab", "L1"), T.box_receive, 330, box, part)
            self.plan["boxes"].add(box)
            for t in part:
                self.emit(("lab", "L1"), T.tube_result, rng.randint(340, 360), t, results[t][1])
        # each device's stream in its own (event time) order; same-minute events keep the
        # order they were made in
        for k in self.streams:
            self.streams[k].sort(key=lambda e: (T.parse_time(e["at"]), e["_seq"]))
        self.nevents = sum(len(v) for v in self.streams.values())

    def emit(self, device, make, minute, *args):
        e = make(self.clock.at(minute), *args)
        # ids from the seed: a replayed seed sends the very same events
        e["id"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self._n += 1
        e["_seq"] = self._n
        self.streams[device].append(e)
        return e

    def interleave(self, run, rng):
        """A list of (device, [events]) batches: each device's order kept."""
        pos = {d: 0 for d in self.streams}
        left = lambda d: len(self.streams[d]) - pos[d]  # noqa: E731
        batches = []

        def take(d, n):
            b = self.streams[d][pos[d]:pos[d] + n]
            pos[d] += len(b)
            batches.append((d, b))

        if run == 0:
            # as it happened: every event in time order, devices uploading in small batches
            allev = sorted(((e, d) for d in self.streams for e in self.streams[d]),
                           key=lambda x: (T.parse_time(x[0]["at"]), x[0]["_seq"]))
            for e, d in allev:
                if batches and batches[-1][0] == d and len(batches[-1][1]) < 10:
                    batches[-1][1].append(e)
                else:
                    batches.append((d, [e]))
            return batches, "event-time order"
        strategy = ("uniform", "handovers first", "one site last", "bursts")[run % 4]
        last = rng.choice(SITES)
        maxb = 40 if strategy == "bursts" else 8
        while any(left(d) for d in self.streams):
            ready = [d for d in self.streams if left(d)]
            if strategy == "handovers first" and any(d[0] != "collector" for d in ready):
                ready = [d for d in ready if d[0] != "collector"]
            if strategy == "one site last" and any(d != ("collector", last) for d in ready):
                ready = [d for d in ready if d != ("collector", last)]
            d = rng.choice(sorted(ready))
            take(d, rng.randint(1, maxb))
        return batches, strategy


SNAPSHOT_SQL = {
    "tubes": "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.code), '[]') FROM tubes t",
    "boxes": "SELECT coalesce(jsonb_agg(to_jsonb(b) ORDER BY b.code), '[]') FROM boxes b",
    "samples": "SELECT coalesce(jsonb_agg(jsonb_build_array(s.tube, s.person, s.round, s.site, s.at, s.event)"
               " ORDER BY s.tube, s.person), '[]') FROM samples s",
    "receipts": "SELECT coalesce(jsonb_agg(jsonb_build_array(r.box, r.tube, r.lab, r.at, r.event)"
                " ORDER BY r.box, r.tube), '[]') FROM receipts r",
    "followups": "SELECT coalesce(jsonb_agg(to_jsonb(f) ORDER BY f.tube, f.person), '[]') FROM followups f",
    "open_anomalies": "SELECT coalesce(jsonb_agg(jsonb_build_array(a.subject, a.type, a.region)"
                      " ORDER BY a.subject, a.type), '[]') FROM anomalies a"
                      " WHERE a.state IN ('open', 'acknowledged') AND a.type NOT LIKE 'overdue%'",
    # the dashboards' roll-ups (folded first), but for the wall-clock overdue_* anomalies, in
    # the row and in its stored answer (sql/016): the first sweep comes a second after the
    # daemon starts, so whether a run had any depends on how long it took
    "stats": "SELECT coalesce(jsonb_agg(to_jsonb(s) - 'updated_at' - 'overdue' - 'answer'"
             " || jsonb_build_object('anomalies_open', s.anomalies_open - s.overdue,"
             " 'answer', s.answer - 'overdue' || jsonb_build_object('anomalies_open',"
             " (s.answer ->> 'anomalies_open')::int - s.overdue))"
             " ORDER BY s.round, s.code), '[]') FROM stats s",
}
# every figure of every roll-up, to compare the folded deltas with a re-count
STATS_SQL = ("SELECT coalesce(jsonb_agg(to_jsonb(s) - 'updated_at' ORDER BY s.round, s.code), '[]')"
             " FROM stats s")


class WholeDerivation:
    """The checks shared by the property test and the plain groups: what the writes left equals
    a derivation of everything at once, and the roll-ups a re-count."""

    def check_rederived(self, env, where):
        """Follow-ups, person statuses and open anomalies as the writes left them equal a
        derivation of every tube, box and person at once (tl_refresh over all of them, rolled
        back): what each write skipped as unchanged (sql/020, sql/023) really was."""
        db = env.db
        derived = ("SELECT jsonb_build_array("
                   "(SELECT coalesce(jsonb_agg(to_jsonb(f) ORDER BY f.tube, f.person), '[]') FROM followups f),"
                   "(SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.person, r.round), '[]') FROM person_rounds r),"
                   "(%s))" % SNAPSHOT_SQL["open_anomalies"])
        db.psql("BEGIN")
        try:
            db.psql("LOCK TABLE stats_delta IN EXCLUSIVE MODE")  # the sweep's writes wait
            kept = db.json(derived)
            db.psql("SELECT count(*) FROM tl_refresh(ARRAY(SELECT code FROM tubes), ARRAY(SELECT code FROM boxes),"
                    " ARRAY(SELECT code FROM tubes))")
            whole = db.json(derived)
        finally:
            db.psql("ROLLBACK")
        for name, a, b in zip(("follow-ups", "person statuses", "open anomalies"), kept, whole):
            self.assertEqual(a, b, "%s: %s differ from a whole derivation:\n%s" % (where, name, self.diff(b, a)))

    def check_rollups(self, env, where):
        """The roll-ups kept by deltas equal a re-count from the raw tables. Writes (the
        sweep's) wait while the transaction holds the delta table, so both see the same facts;
        the re-count is rolled back."""
        db = env.db
        db.psql("BEGIN")
        try:
            db.psql("LOCK TABLE stats_delta IN EXCLUSIVE MODE")
            db.psql("SET LOCAL TimeZone = 'Asia/Shanghai'")  # the daemon's --tz: hours of day
            db.psql("SELECT tl_fold()")
            folded = db.json(STATS_SQL)
            db.psql("SELECT tl_rollup_rebuild()")
            recounted = db.json(STATS_SQL)
        finally:
            db.psql("ROLLBACK")
        self.assertTrue(folded, where)
        self.assertEqual(folded, recounted, "%s: roll-ups differ from a re-count:\n%s"
                         % (where, self.diff(recounted, folded)))

    @staticmethod
    def diff(a, b):
        """The first differing items of two snapshot parts, for the failure message."""
        if isinstance(a, dict):
            keys = sorted(set(a) | set(b))
            out = [("%s:\n  run 0: %s\n  this:  %s" % (k, json.dumps(a.get(k), ensure_ascii=False),
                                                       json.dumps(b.get(k), ensure_ascii=False)))
                   for k in keys if a.get(k) != b.get(k)]
        else:
            out = []
            for i in range(max(len(a), len(b))):
                x = a[i] if i < len(a) else None
                y = b[i] if i < len(b) else None
                if x != y:
                    out.append("  run 0: %s\n  this:  %s" % (json.dumps(x, ensure_ascii=False),
                                                            json.dumps(y, ensure_ascii=False)))
        return "\n".join(out[:6])[:6000]


class Convergence(WholeDerivation, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        env_seed = os.environ.get("TUBELOOP_CONVERGENCE_SEED")
        cls.seed = int(env_seed) if env_seed else random.SystemRandom().randrange(1, 10 ** 9)
        cls.runs = int(os.environ.get("TUBELOOP_CONVERGENCE_RUNS", "8"))
        print("convergence: seed=%d runs=%d (replay with TUBELOOP_CONVERGENCE_SEED=%d)"
              % (cls.seed, cls.runs, cls.seed), file=sys.stderr, flush=True)
        tmp = T.need_env("TUBELOOP_TEST_TMP")
        os.makedirs(tmp, exist_ok=True)
        # one PII keys file for every run: the persons' HMACs (in samples, follow-ups and
        # anomaly subjects) must be comparable across databases
        cls.keys = os.path.join(tmp, "convergence-keys-%s" % uuid.uuid4().hex[:8])
        old = os.umask(0o077)
        try:
            T.run([T.need_env("TUBELOOPD"), "gen-keys"], stdout_path=cls.keys)
        finally:
            os.umask(old)

        # every run starts from a copy of one freshly migrated, empty database
        try:
            cls.template = T.Database("convtpl")
        except BaseException:
            os.remove(cls.keys)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.template.drop()
        if os.path.exists(cls.keys) and not T.keep():
            os.remove(cls.keys)

    def where(self, run=None, strategy=None):
        s = "seed=%d" % self.seed
        if run is not None:
            s += " run=%d (%s)" % (run, strategy)
        return s + " — replay with TUBELOOP_CONVERGENCE_SEED=%d" % self.seed

    def replay(self, sc, run):
        rng = random.Random(self.seed * 1000 + run)
        batches, strategy = sc.interleave(run, rng)
        env = T.Env("conv%d" % run, keys_from=self.keys, template=self.template.name)
        ok = False
        try:
            env.make_round(ROUND, pool_size=10, day=sc.clock.day())
            clients = {d: env.client(*d) for d in sc.streams}
            sent = 0
            for d, batch in batches:
                events = [{k: v for k, v in e.items() if k != "_seq"} for e in batch]
                res = clients[d].send(events)
                bad = [(e, r) for e, r in zip(events, res) if r["status"] != "accepted"]
                self.assertEqual(bad, [], "%s: %s refused an event of its stream after %d events: %s"
                                 % (self.where(run, strategy), d, sent, json.dumps(bad, ensure_ascii=False)[:1500]))
                sent += len(events)
                if run < 2:  # every state on the way, not only the last, is what a whole derivation gives
                    self.check_rederived(env, "%s, after %d events" % (self.where(run, strategy), sent))
            self.assertEqual(sent, sc.nevents)
            env.db.psql("SELECT tl_fold()")
            snap = {k: env.db.json(q) for k, q in SNAPSHOT_SQL.items()}
            self.check_rollups(env, self.where(run, strategy))
            self.check_rederived(env, self.where(run, strategy))
            self.assertTrue(env.db.count("person_rounds"), "no person statuses at all")
            looks = {}
            for p in sc.persons:
                r = env.admin.lookup(p["id_number"])
                self.assertEqual(r.status, 200, r.text)
                looks[p["id_number"]] = r.json
            snap["persons"] = looks
            ok = True
            return snap, strategy, len(batches)
        finally:
            if not ok and T.keep():
                print("kept for post-mortem:", env.db.name, file=sys.stderr)
            env.close()

    def check_plan(self, sc, snap, where):
        """The first run against what the generator planned."""
        tubes = {t["code"]: t for t in snap["tubes"]}
        self.assertEqual(set(tubes), sc.plan["tubes"], where)
        self.assertEqual({b["code"] for b in snap["boxes"]}, sc.plan["boxes"], where)
        self.assertEqual(sorted(t for t in tubes if tubes[t]["result"] == "positive" and tubes[t]["capacity"] > 1),
                         sc.plan["positives"], where)
        fus = snap["followups"]
        self.assertEqual(len(fus), len(sc.plan["followups"]), where)
        self.assertTrue(all(f["state"] == "closed" for f in fus), (where, fus))
        want_fu = sorted(v for v in sc.plan["followups"].values())
        self.assertEqual(sorted((f["kind"], f["linked_tube"], f["result"]) for f in fus), want_fu, where)
        an = sorted((a[1], a[0]) for a in snap["open_anomalies"] if a[1] != "person_repeat")
        want = sorted([("tube_missing", sc.plan["missing"]), ("wrong_lab", sc.plan["wrong_lab"])]
                      + [("seal_count_mismatch", t) for t in sc.plan["seal_mismatch"]]
                      + ([("tube_unexpected", sc.plan["misplaced"])] if sc.plan["misplaced"] else []))
        self.assertEqual(an, want, where)
        self.assertEqual(sum(1 for a in snap["open_anomalies"] if a[1] == "person_repeat"), 1, where)
        statuses = {}
        for p in snap["persons"].values():
            st = p["rounds"][0]["status"]
            statuses[st] = statuses.get(st, 0) + 1
        self.assertEqual(statuses.get("positive"), 1, (where, statuses))
        self.assertNotIn("awaiting_recheck", statuses, where)

    def test_interleavings_converge(self):
        sc = Scenario(self.seed)
        print("convergence: %d events from %d devices, %d persons" % (sc.nevents, len(sc.streams), len(sc.persons)),
              file=sys.stderr)
        first = None
        failures = []
        for run in range(self.runs):
            t0 = time.monotonic()
            snap, strategy, nb = self.replay(sc, run)
            print("convergence: run %d (%s): %d batches, %.1f s" % (run, strategy, nb, time.monotonic() - t0),
                  file=sys.stderr, flush=True)
            if first is None:
                first = snap
                self.check_plan(sc, snap, self.where(run, strategy))
                continue
            # every differing part of every run, so one failure shows all there is
            for part in first:
                if snap[part] != first[part]:
                    failures.append("%s: %s differ from run 0:\n%s" % (self.where(run, strategy), part,
                                                                      self.diff(first[part], snap[part])))
        if failures:
            self.fail("\n\n".join(failures)[:20000])


class ArrivalOrder(unittest.TestCase):
    """Two small, fixed cases of the property above, each replayed in two arrival orders
    (the site's phone first, or the courier's and the lab's first): what an official sees
    must not depend on the order."""

    def play(self, streams, order, look):
        """Sends each device's whole stream, one event per request, devices in `order`."""
        env = T.Env("order")
        try:
            env.make_round(ROUND, pool_size=10, day=T.Clock(hours_back=3).day())
            for d in order:
                cl = env.client(*d)
                for e in streams[d]:
                    cl.send_ok([dict(e)])
            return look(env)
        finally:
            env.close()

    def both_orders(self, streams, look, late=("collector",)):
        """(state with every device in stream order, state with the `late` devices last)."""
        on_time = list(streams)
        late_last = [d for d in streams if d[0] not in late and d not in late] + \
            [d for d in streams if d[0] in late or d in late]
        return self.play(streams, on_time, look), self.play(streams, late_last, look)

    def test_amended_result_followups(self):
        """A pooled tube resulted invalid, then amended to negative."""
        c, rng = T.Clock(hours_back=3), random.Random(11)
        people = [T.person(T.resident_id(rng), T.person_name(rng), T.phone(rng)) for _ in range(2)]
        t, b = "CV-AM-0001", "CV-AMB-0001"
        streams = {
            ("collector", "S1"): [T.tube_open(c.at(0), t, ROUND)]
            + [T.sample_add(c.at(1 + i), t, p) for i, p in enumerate(people)]
            + [T.tube_seal(c.at(5), t, 2), T.box_pack(c.at(6), b, [t]), T.box_seal(c.at(7), b, "L1", 1)],
            ("courier", "C1"): [T.box_pickup(c.at(20), b), T.box_deliver(c.at(50), b, "L1")],
            ("lab", "L1"): [T.box_receive(c.at(60), b, [t]), T.tube_result(c.at(90), t, "invalid"),
                            T.tube_result(c.at(95), t, "negative", amend=True)],
        }

        def look(env):
            r = env.admin.followups(state="all")
            self.assertEqual(r.status, 200, r.text)
            return sorted((f["tube"], f["kind"], f["state"], f["person"]["id_number"]) for f in r.json["followups"])

        site_first, site_last = self.both_orders(streams, look)
        self.assertEqual(site_first, site_last,
                         "GET /v1/followups?state=all after the same events: site's phone first -> %s; "
                         "courier and lab first -> %s" % (site_first, site_last))

    def test_unexpected_tube_region(self):
        """A tube of S2 (兴隆镇) travels in S1's box by mistake; S2's phone uploads last."""
        c, rng = T.Clock(hours_back=3), random.Random(12)
        ta, tx, ba, bx = "CV-UX-0001", "CV-UX-0002", "CV-UXA-0001", "CV-UXB-0001"
        streams = {
            ("collector", "S2"): [T.tube_open(c.at(0), tx, ROUND),
                                  T.sample_add(c.at(1), tx, T.person(T.resident_id(rng))),
                                  T.tube_seal(c.at(2), tx, 1), T.box_pack(c.at(3), bx, [tx]),
                                  T.box_seal(c.at(4), bx, "L1", 1)],
            ("collector", "S1"): [T.tube_open(c.at(0), ta, ROUND),
                                  T.sample_add(c.at(1), ta, T.person(T.resident_id(rng))),
                                  T.tube_seal(c.at(2), ta, 1), T.box_pack(c.at(6), ba, [ta]),
                                  T.box_seal(c.at(7), ba, "L1", 1)],
            ("courier", "C1"): [T.box_pickup(c.at(20), ba), T.box_deliver(c.at(50), ba, "L1")],
            ("lab", "L1"): [T.box_receive(c.at(60), ba, [ta, tx])],
        }

        def look(env):
            mine = [(a["subject"], a["type"], a["region"]) for a in env.admin.anomalies(state="open")
                    if not T.is_overdue(a["type"])]
            town = env.client("supervisor", T.TOWN1).anomalies(region=T.TOWN1, state="open")
            return sorted(mine), sorted(a["subject"] for a in town if not T.is_overdue(a["type"]))

        in_order, s2_last = self.both_orders(streams, look, late=(("collector", "S2"),))
        self.assertIn((tx, "tube_unexpected", T.TOWN1), in_order[0])
        self.assertEqual(in_order, s2_last,
                         "open anomalies (subject, type, region) and the subjects the supervisor of %s "
                         "sees: S2's phone on time -> %s; S2's phone last -> %s" % (T.TOWN1, in_order, s2_last))

class ConcurrentDevices(unittest.TestCase):
    """Arrival order also means requests in flight at the same moment (several devices, several
    daemons). A pooled positive and the single-tube result of one of its persons, sent at the
    same time on two connections, must leave the follow-up closed, as they do one after the
    other."""

    PAIRS = 20

    def test_pooled_and_single_results_at_once(self):
        # a second group for any waiting batch (--ingest-second-group 1): the pair's two
        # requests are then written by two transactions at once, not one after the other
        env = T.Env("concurrent", extra_env={"TUBELOOP_INGEST_SECOND_GROUP": "1"})
        try:
            c, rng = T.Clock(hours_back=3), random.Random(13)
            env.make_round(ROUND, pool_size=10, day=c.day())
            site, lab = env.client("collector", "S1"), env.client("lab", "L1")
            pairs, batch = [], []
            for k in range(self.PAIRS):
                p = T.person(T.resident_id(rng))
                pooled, single = "CV-CP-%04d" % k, "CV-CS-%04d" % k
                batch += [T.tube_open(c.at(0), pooled, ROUND), T.sample_add(c.at(1), pooled, p),
                          T.tube_seal(c.at(2), pooled, 1), T.tube_open(c.at(10), single, ROUND, 1),
                          T.sample_add(c.at(11), single, p), T.tube_seal(c.at(12), single, 1)]
                pairs.append((pooled, single, p))
            site.send_ok(batch)
            for k, (pooled, single, _) in enumerate(pairs):
                for box, tube in (("CV-CPB-%04d" % k, pooled), ("CV-CSB-%04d" % k, single)):
                    site.send_ok([T.box_pack(c.at(20), box, [tube]), T.box_seal(c.at(21), box, "L1", 1)])
                    lab.send_ok([T.box_receive(c.at(60), box, [tube])])
            secret = env.tokens[("lab", "L1")][1]
            conns = [env.daemon.client(secret), env.daemon.client(secret)]
            errors = []

            def send(cl, e, gate):
                gate.wait()
                try:
                    r = cl.post("/v1/events", {"events": [e]})
                    if r.status != 200 or r.json["results"][0]["status"] != "accepted":
                        errors.append(r.text)
                except Exception as x:  # noqa: BLE001 - reported below
                    errors.append(repr(x))

            for pooled, single, _ in pairs:
                gate = threading.Barrier(2)
                th = [threading.Thread(target=send, args=(conns[0], T.tube_result(c.at(90), pooled, "positive"), gate)),
                      threading.Thread(target=send, args=(conns[1], T.tube_result(c.at(95), single, "negative"), gate))]
                for t in th:
                    t.start()
                for t in th:
                    t.join()
            self.assertEqual(errors, [])
            fus = env.admin.followups(state="all").json["followups"]
            self.assertEqual(len(fus), self.PAIRS)
            stuck = sorted("%s (linked %s, result %s)" % (f["tube"], f["linked_tube"], f["result"])
                           for f in fus if f["state"] != "closed")
            statuses = [env.admin.lookup(p["id_number"]).json["rounds"][0]["status"] for _, _, p in pairs]
            self.assertEqual(len(stuck), 0, "%d of %d follow-ups stay open although their single tube has a "
                             "result (e.g. %s); person statuses %s"
                             % (len(stuck), self.PAIRS, ", ".join(stuck[:2]),
                                {s: statuses.count(s) for s in set(statuses)}))
            self.assertEqual(statuses, ["negative"] * self.PAIRS)
        finally:
            env.close()


class PlainGroups(WholeDerivation, unittest.TestCase):
    """A group that only opens and samples tubes without seal, box, receipt, result or
    rejection is sent to tl_write_plain (sql/025), which skips every derivation such a group
    cannot change. It must hand to the whole write a person with a follow-up (the new single
    tube is the one the follow-up links to) and a person sampled again in the round
    (person_repeat opened, attributed, its count kept up). It appends its own roll-up deltas
    and chain queue rows (sql/040): the roll-ups must equal a re-count, and every event must be
    queued for the chain once. /metrics counts the groups the daemon sent each way."""

    def groups(self, env):
        r = env.daemon.client(None).get("/metrics")
        self.assertEqual(r.status, 200)
        out = {}
        for kind in ("full", "plain"):
            m = re.search(r'^tubeloop_ingest_groups_total\{write="%s"\} (\d+)$' % kind, r.text, re.M)
            self.assertTrue(m, "tubeloop_ingest_groups_total{write=%s} is not in /metrics" % kind)
            out[kind] = int(m.group(1))
        return out

    def test_plain_groups(self):
        env = T.Env("plain")
        try:
            c, rng = T.Clock(hours_back=3), random.Random(29)
            env.make_round(ROUND, pool_size=10, day=c.day())
            s1, s2, lab = env.client("collector", "S1"), env.client("collector", "S2"), env.client("lab", "L1")
            p, p2, q = (T.person(T.resident_id(rng)) for _ in range(3))
            # a pooled positive: p and p2 are called back (follow-ups, not linked yet)
            s1.send_ok([T.tube_open(c.at(0), "PL-P01", ROUND), T.sample_add(c.at(1), "PL-P01", p),
                        T.sample_add(c.at(2), "PL-P01", p2), T.tube_seal(c.at(3), "PL-P01", 2)])
            s1.send_ok([T.box_pack(c.at(5), "PL-B01", ["PL-P01"]), T.box_seal(c.at(6), "PL-B01", "L1", 1)])
            lab.send_ok([T.box_receive(c.at(20), "PL-B01", ["PL-P01"])])
            lab.send_ok([T.tube_result(c.at(25), "PL-P01", "positive")])
            before = self.groups(env)
            self.assertGreaterEqual(before["full"], 4, before)

            # p's single tube, opened and sampled in two plain groups: the follow-up links to it
            s1.send_ok([T.tube_open(c.at(30), "PL-S01", ROUND, 1)])
            s1.send_ok([T.sample_add(c.at(31), "PL-S01", p)])
            fus = {f["linked_tube"] for f in env.admin.followups(state="all").json["followups"]}
            self.assertIn("PL-S01", fus, "the follow-up of a person sampled again in a plain group "
                          "does not link to the new single tube")
            self.check_rederived(env, "after p's single-tube sample")

            # q sampled at two sites, then a third time: person_repeat, opened by the second
            # sample and counting every sample, all in plain groups
            s1.send_ok([T.tube_open(c.at(40), "PL-TA1", ROUND), T.sample_add(c.at(41), "PL-TA1", q)])
            second = s2.send_ok([T.tube_open(c.at(42), "PL-TB1", ROUND), T.sample_add(c.at(43), "PL-TB1", q)])
            self.assertEqual(second[1].get("anomalies"), ["person_repeat"], second)
            s1.send_ok([T.tube_open(c.at(44), "PL-TC1", ROUND)])
            s1.send_ok([T.sample_add(c.at(45), "PL-TC1", q)])
            row = env.db.json("SELECT jsonb_build_array(a.detail, a.site, e.id, e.anomalies) FROM anomalies a"
                              " JOIN events e ON e.id = a.opened_by"
                              " WHERE a.type = 'person_repeat' AND a.state = 'open'")
            self.assertEqual(row, [{"samples": 3}, "S1", second[1]["id"], ["person_repeat"]])
            self.check_rederived(env, "after q's third sample")

            # r and s at S2, in plain groups that also open tubes, across an hour of the day:
            # the roll-up deltas the plain write appends itself (sql/040) equal a re-count
            r, s = (T.person(T.resident_id(rng)) for _ in range(2))
            s2.send_ok([T.tube_open(c.at(50), "PL-TD1", ROUND), T.sample_add(c.at(51), "PL-TD1", r),
                        T.tube_open(c.at(52), "PL-TE1", ROUND), T.sample_add(c.at(53), "PL-TE1", s)])
            s2.send_ok([T.sample_add(c.at(120), "PL-TD1", T.person(T.resident_id(rng)))])
            self.check_rollups(env, "after the plain groups")
            # and every event of them is queued for the chain or already chained, once
            unchained = env.db.json("SELECT coalesce(jsonb_agg(e.tube ORDER BY e.tube), '[]') FROM events e"
                                    " WHERE (SELECT count(*) FROM chain_pending q WHERE q.event_id = e.id)"
                                    " + (SELECT count(*) FROM chain_links l WHERE l.event_id = e.id) <> 1")
            self.assertEqual(unchained, [], "events not queued for the chain exactly once (their tubes)")

            after = self.groups(env)
            self.assertEqual((after["plain"] - before["plain"], after["full"] - before["full"]), (8, 0),
                             "groups written plain and full by the eight requests that only open and "
                             "sample (before %s, after %s)" % (before, after))
        finally:
            env.close()

    PAIRS = 20

    def test_one_person_at_two_sites_at_once(self):
        """Two plain groups in flight together, each sampling the same person at another site:
        neither may take the other for absent. Exactly one person_repeat per person, named in
        exactly one of the two answers."""
        env = T.Env("plain2", extra_env={"TUBELOOP_INGEST_SECOND_GROUP": "1"})  # as ConcurrentDevices
        try:
            c, rng = T.Clock(hours_back=3), random.Random(31)
            env.make_round(ROUND, pool_size=10, day=c.day())
            s1, s2 = env.client("collector", "S1"), env.client("collector", "S2")
            persons = [T.person(T.resident_id(rng)) for _ in range(self.PAIRS)]
            s1.send_ok([T.tube_open(c.at(0), "PL-X%03d" % k, ROUND) for k in range(self.PAIRS)])
            s2.send_ok([T.tube_open(c.at(0), "PL-Y%03d" % k, ROUND) for k in range(self.PAIRS)])
            conns = [env.daemon.client(env.tokens[("collector", s)][1]) for s in ("S1", "S2")]
            answers, errors = {}, []

            def send(cl, k, e, gate):
                gate.wait()
                try:
                    r = cl.post("/v1/events", {"events": [e]})
                    if r.status != 200 or r.json["results"][0]["status"] != "accepted":
                        errors.append(r.text)
                    else:
                        answers[(k, e["tube"])] = r.json["results"][0]["anomalies"]
                except Exception as x:  # noqa: BLE001 - reported below
                    errors.append(repr(x))

            for k, p in enumerate(persons):
                gate = threading.Barrier(2)
                th = [threading.Thread(target=send, args=(conns[0], k, T.sample_add(c.at(10), "PL-X%03d" % k, p), gate)),
                      threading.Thread(target=send, args=(conns[1], k, T.sample_add(c.at(11), "PL-Y%03d" % k, p), gate))]
                for t in th:
                    t.start()
                for t in th:
                    t.join()
            self.assertEqual(errors, [])
            named = [k for k in range(self.PAIRS)
                     if sorted(map(tuple, (answers[(k, "PL-X%03d" % k)], answers[(k, "PL-Y%03d" % k)])))
                     == [(), ("person_repeat",)]]
            self.assertEqual(len(named), self.PAIRS, "pairs where exactly one answer names person_repeat: %d of %d"
                             % (len(named), self.PAIRS))
            self.assertEqual(env.db.count("anomalies", "type = 'person_repeat' AND state = 'open'"), self.PAIRS)
            self.check_rederived(env, "after %d pairs sampled at once" % self.PAIRS)
        finally:
            env.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
