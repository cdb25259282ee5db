#!/usr/bin/env python3
"""`tubeloop simulate` (issue 5 item 6) against the real daemon.

A small seeded round (3 sites, 300 persons, mistakes on) is played as fast as possible over the
test registry (county 230126 with two townships). Its printed counts are compared with the
server's figures: GET /v1/stats, the tables themselves, the anomaly of every provoked type, the
follow-ups and statuses. The same seed played into a second fresh database prints the same
counts and writes the same tubes and event ids. Then the edges: --setup-only followed by a
play of that round, a replay refused, a paced run (--speed) whose last events are close to the
present, an interrupted run that still prints its counts and revokes its tokens, bad flags."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tubeloop_test as T  # noqa: E402

ROUND = "SIMT1"
FLAGS = ["--county", T.COUNTY, "--round", ROUND, "--pool", "10", "--sites", "3", "--labs", "2",
         "--couriers", "2", "--persons", "300", "--rate", "30", "--positive-rate", "0.08",
         "--invalid-rate", "0.05", "--reject-rate", "0.05", "--mistakes", "0.01", "--seed", "13",
         "--speed", "0", "--quiet"]
PROVOKED = ("person_repeat", "tube_missing", "wrong_lab")


def cli_env(env):
    e = dict(os.environ)
    e.update({"TUBELOOP_URL": "https://localhost:%d" % env.daemon.port, "TUBELOOP_TOKEN": env.admin_secret,
              "TUBELOOP_CACERT": env.daemon.cert, "TUBELOOP_LANG": "en"})
    return e


def simulate(env, *args, check=True):
    """Runs `tubeloop simulate ARGS` against env's daemon with its admin token: (rc, out, err)."""
    return T.run([T.need_env("TUBELOOP_CLI"), "simulate", *args], timeout=300, check=check, env=cli_env(env))


def counts(summary):
    """The printed figures that do not depend on when the run happened."""
    return {k: v for k, v in summary.items() if k != "clock"}


def parse_time(s):
    return T.parse_time(s)


def round_fingerprint(db, round_code):
    """What two plays of one seed must share: tubes (code, capacity, persons, result), boxes
    and every event id."""
    return db.psql(
        "SELECT (SELECT string_agg(code || ':' || capacity || ':' || sampled || ':' || coalesce(result, '-')"
        "        || ':' || coalesce(box, '-'), ',' ORDER BY code) FROM tubes WHERE round = '%s'),"
        " (SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM events"
        "  WHERE coalesce(tube, box) LIKE '%s-%%')" % (round_code, round_code))[0]


class SimulatedRound(unittest.TestCase):
    env = None

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("sim")
        try:
            _, out, cls.stderr = simulate(cls.env, "--json", *FLAGS)
            cls.summary = json.loads(out)
        except BaseException:
            cls.env.close()
            cls.env = None
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.env:
            cls.env.close()
            cls.env = None

    def stats(self, region=T.COUNTY):
        r = self.env.admin.get("/v1/stats?region=%s&round=%s" % (region, ROUND))
        self.assertEqual(r.status, 200, r.text)
        return r.json

    def test_run_is_clean_and_provokes_every_mistake(self):
        s = self.summary
        self.assertTrue(s["complete"])
        self.assertEqual(s["unexpected"], 0, self.stderr)
        ev = s["events"]
        self.assertEqual(ev["sent"], ev["planned"])
        self.assertEqual(ev["accepted"] + ev["rejected"], ev["sent"])
        self.assertEqual(ev["duplicate"], 0)
        self.assertEqual(ev["rejected"], sum(s["refusals"].values()))
        self.assertGreaterEqual(s["refusals"].get("invalid_person", 0), 1)
        self.assertGreaterEqual(s["refusals"].get("tube_full", 0), 1)
        for t in PROVOKED:
            self.assertGreaterEqual(s["anomalies_provoked"][t], 1, t)
            self.assertGreaterEqual(s["anomalies_reported"].get(t, 0), s["anomalies_provoked"][t], t)
        self.assertGreaterEqual(s["offline_devices"], 1)
        self.assertGreater(ev["late"], 0)
        # results of every kind and a rejection: follow-ups of both kinds
        for kind in ("negative", "positive", "invalid"):
            self.assertGreaterEqual(s["results"][kind], 1, kind)
        self.assertGreaterEqual(s["tubes"]["rejected"], 1)
        self.assertEqual(s["persons"], 300)
        # the answers and the model agree
        x = s["expected"]
        self.assertEqual(x["persons"], s["persons"])
        self.assertEqual(x["samples"], s["samples"])
        self.assertEqual(x["tubes"], s["tubes"]["opened"])
        self.assertEqual(x["tubes_resulted"], s["tubes"]["resulted"])
        self.assertEqual(x["tubes_rejected"], s["tubes"]["rejected"])
        self.assertEqual(x["boxes"], s["boxes"]["sealed"])
        self.assertEqual(x["tubes"], x["tubes_pooled"] + x["tubes_single"])
        self.assertEqual(x["tubes"], x["tubes_resulted"] + x["tubes_rejected"] + x["tubes_lost"])

    def test_stats_agree_with_the_printed_counts(self):
        s, x = self.summary, self.summary["expected"]
        st = self.stats()
        tot = st["totals"]
        self.assertEqual(tot["persons_sampled"], s["persons"])
        self.assertEqual(tot["persons_returned"], x["persons_returned"])
        self.assertEqual(tot["results"], s["results"])
        self.assertEqual(tot["tubes"]["resulted"], s["tubes"]["resulted"])
        self.assertEqual(tot["tubes"]["rejected"], s["tubes"]["rejected"])
        # the tube left behind is still "on its way": its box was picked up, it never arrived
        self.assertEqual(tot["tubes"]["in_transit"], x["tubes_lost"])
        for k in ("open", "sealed", "received"):
            self.assertEqual(tot["tubes"][k], 0, k)
        self.assertEqual(tot["followups_open"], 0)
        # the county's children are its townships, and the sites were spread over both
        kids = {c["code"]: c for c in st["children"]}
        self.assertEqual(set(kids), {T.TOWN1, T.TOWN2})
        for town in (T.TOWN1, T.TOWN2):
            self.assertGreater(kids[town]["persons_sampled"], 0, town)
        self.assertEqual(sum(c["persons_sampled"] for c in kids.values()), tot["persons_sampled"])

    def test_tables_agree_with_the_printed_counts(self):
        s, x, db = self.summary, self.summary["expected"], self.env.db
        self.assertEqual(db.count("samples", "round = '%s'" % ROUND), s["samples"])
        self.assertEqual(int(db.scalar("SELECT count(DISTINCT person) FROM samples WHERE round = '%s'" % ROUND)),
                         s["persons"])
        self.assertEqual(db.count("tubes", "round = '%s'" % ROUND), s["tubes"]["opened"])
        self.assertEqual(db.count("tubes", "round = '%s' AND capacity = 10" % ROUND), x["tubes_pooled"])
        self.assertEqual(db.count("tubes", "round = '%s' AND capacity = 1" % ROUND), x["tubes_single"])
        self.assertEqual(int(db.scalar("SELECT count(DISTINCT box) FROM tubes WHERE round = '%s'" % ROUND)),
                         s["boxes"]["sealed"])
        self.assertEqual(db.count("boxes", "code LIKE '%s-%%' AND received_at IS NOT NULL" % ROUND),
                         s["boxes"]["received"])
        for kind, n in s["results"].items():
            self.assertEqual(db.count("tubes", "round = '%s' AND result = '%s'" % (ROUND, kind)), n, kind)
        self.assertEqual(db.count("tubes", "round = '%s' AND rejected_at IS NOT NULL" % ROUND), s["tubes"]["rejected"])
        self.assertEqual(db.count("events", "coalesce(tube, box) LIKE '%s-%%'" % ROUND), s["events"]["accepted"])
        by_type = dict(db.psql("SELECT type, count(*) FROM events WHERE coalesce(tube, box) LIKE '%s-%%'"
                               " GROUP BY type" % ROUND))
        for t, n in s["events"]["by_type"].items():
            self.assertEqual(int(by_type.get(t, 0)), n, t)

    def test_anomalies_of_every_provoked_type(self):
        s, db = self.summary, self.env.db
        rows = db.psql("SELECT type, state, count(*) FROM anomalies WHERE round = '%s' AND type NOT LIKE 'overdue%%'"
                       " GROUP BY 1, 2" % ROUND)
        got = {(t, st): int(n) for t, st, n in rows}
        for t in PROVOKED:
            self.assertEqual(got.get((t, "open"), 0), s["anomalies_provoked"][t], t)
        # the late uploads opened custody gaps that closed by themselves once everything arrived
        self.assertGreaterEqual(s["anomalies_reported"].get("custody_gap", 0), 1)
        self.assertGreaterEqual(got.get(("custody_gap", "auto_resolved"), 0), 1)
        # nothing else is left open
        still_open = {k: n for k, n in got.items() if k[1] == "open" and k[0] not in PROVOKED}
        self.assertEqual(still_open, {})
        # and the officials see them through the API
        api = T.event_anomalies(self.env.admin.anomalies(region=T.COUNTY, state="open"))
        for t in PROVOKED:
            self.assertEqual(sum(1 for a in api if a["type"] == t and a["round"] == ROUND),
                             s["anomalies_provoked"][t], t)

    def test_followups_and_statuses(self):
        x, db = self.summary["expected"], self.env.db
        self.assertEqual(db.count("followups", "round = '%s'" % ROUND), x["followups"])
        self.assertEqual(db.count("followups", "round = '%s' AND state <> 'closed'" % ROUND), 0)
        self.assertGreaterEqual(db.count("followups", "round = '%s' AND kind = 'awaiting_recheck'" % ROUND), 1)
        self.assertGreaterEqual(db.count("followups", "round = '%s' AND kind = 'resample'" % ROUND), 1)
        self.assertEqual(db.count("person_rounds", "round = '%s' AND status = 'positive'" % ROUND),
                         x["persons_positive"])
        self.assertGreaterEqual(x["persons_positive"], 1)
        self.assertEqual(db.count("person_rounds", "round = '%s' AND status IN ('negative', 'positive')" % ROUND),
                         x["persons_returned"])

    def test_registry_and_device_tokens(self):
        db = self.env.db
        self.assertEqual(db.count("sites", "code LIKE 'SIM-230126-S%'"), 3)
        self.assertEqual(int(db.scalar("SELECT count(DISTINCT township) FROM sites WHERE code LIKE 'SIM-230126-S%'")), 2)
        self.assertEqual(db.count("labs", "code LIKE 'SIM-230126-L%'"), 2)
        self.assertEqual(db.count("couriers", "code LIKE 'SIM-230126-C%'"), 2)
        self.assertEqual(db.scalar("SELECT region || ' ' || pool_size FROM rounds WHERE code = '%s'" % ROUND),
                         T.COUNTY + " 10")
        # one token per device, all revoked at the end
        self.assertEqual(db.count("tokens", "label LIKE 'simulate %s %%'" % ROUND), 7)
        self.assertEqual(db.count("tokens", "label LIKE 'simulate %s %%' AND revoked_at IS NULL" % ROUND), 0)
        # every event came from the device its role allows
        rows = db.psql("SELECT sender_role, min(sender), count(*) FROM events WHERE coalesce(tube, box) LIKE '%s-%%'"
                       " GROUP BY 1" % ROUND)
        self.assertEqual(sorted(r[0] for r in rows), ["collector", "courier", "lab"])

    def test_batches_and_times(self):
        db = self.env.db
        # a device's batch is one transaction: at most 100 events share its sender and commit time
        biggest = int(db.scalar("SELECT max(n) FROM (SELECT count(*) AS n FROM events"
                                " WHERE coalesce(tube, box) LIKE '%s-%%' GROUP BY sender, received_at) x" % ROUND))
        self.assertLessEqual(biggest, 100)
        self.assertGreater(biggest, 1)
        # never ahead of the server's clock (at speed 0 the whole round lies in the past)
        self.assertEqual(db.count("events", "coalesce(tube, box) LIKE '%s-%%' AND at > received_at" % ROUND), 0)
        # the late bursts: for some boxes a later step of custody reached the server before an
        # earlier one (a pickup before the site's seal, a receipt before the courier's scans)
        stage = ("CASE %s.type WHEN 'box.seal' THEN 1 WHEN 'box.pickup' THEN 2 WHEN 'box.deliver' THEN 3"
                 " WHEN 'box.receive' THEN 4 END")
        late = int(db.scalar(
            "SELECT count(DISTINCT a.box) FROM events a JOIN events b ON b.box = a.box"
            " WHERE a.box LIKE '%s-%%' AND %s < %s AND a.received_at > b.received_at"
            % (ROUND, stage % "a", stage % "b")))
        self.assertGreaterEqual(late, 1)
        # the round's day is today's (in China)
        self.assertEqual(db.scalar("SELECT day::text FROM rounds WHERE code = '%s'" % ROUND),
                         T.datetime.datetime.now(T.CST).date().isoformat())

    def test_one_keep_alive_connection_per_device(self):
        lines = [ln for ln in self.env.daemon.log_text().splitlines()
                 if "msg=access" in ln and "route=/v1/events " in ln]
        conns = {re.search(r"\bconn=(\d+)", ln).group(1) for ln in lines}
        self.assertEqual(len(lines), self.summary["clock"]["requests"])
        self.assertLessEqual(len(conns), 7)  # 3 sites, 2 couriers, 2 labs
        self.assertGreater(len(lines), 3 * len(conns))

    def test_same_seed_same_round_in_a_fresh_database(self):
        env2 = T.Env("sim2")
        try:
            _, out, err = simulate(env2, "--json", *FLAGS)
            second = json.loads(out)
            self.assertEqual(counts(second), counts(self.summary))
            self.assertEqual(round_fingerprint(env2.db, ROUND), round_fingerprint(self.env.db, ROUND))
            # and the server's totals are the same too (overdue and tat depend on the clock)
            r = env2.admin.get("/v1/stats?region=%s&round=%s" % (T.COUNTY, ROUND))
            a, b = r.json["totals"], self.stats()["totals"]
            for k in ("persons_sampled", "persons_returned", "tubes", "results", "followups_open"):
                self.assertEqual(a[k], b[k], k)
        finally:
            env2.close()


class SimulateEdges(unittest.TestCase):
    env = None

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("simedge")

    @classmethod
    def tearDownClass(cls):
        if cls.env:
            cls.env.close()
            cls.env = None

    def test_setup_only_then_play_then_replay_refused(self):
        base = ["--county", T.COUNTY, "--round", "SIMS1", "--sites", "4", "--labs", "1", "--couriers", "1",
                "--prefix", "EDGE"]
        rc, out, _ = simulate(self.env, "--setup-only", *base)
        self.assertEqual(rc, 0)
        for code in ("EDGE-S01", "EDGE-S04", "EDGE-C1", "EDGE-L1", "SIMS1"):
            self.assertIn(code, out)
        self.assertIn("兴隆镇第1采样点", out)
        db = self.env.db
        self.assertEqual(db.count("rounds", "code = 'SIMS1'"), 1)
        self.assertEqual(db.count("sites", "code LIKE 'EDGE-S%'"), 4)
        self.assertEqual(db.count("events", "coalesce(tube, box) LIKE 'SIMS1-%'"), 0)
        self.assertEqual(db.count("tokens", "label LIKE 'simulate SIMS1 %'"), 0)
        # the empty round is played
        rc, out, err = simulate(self.env, "--json", "--quiet", "--persons", "25", "--mistakes", "0", *base)
        s = json.loads(out)
        self.assertEqual((rc, s["complete"], s["unexpected"], s["persons"]), (0, True, 0, 25), err)
        self.assertEqual(s["refusals"], {})
        self.assertEqual(s["offline_devices"], 0)
        self.assertEqual(s["events"]["late"], 0)
        self.assertEqual({k: v for k, v in s["anomalies_reported"].items() if v}, {})
        # a played round is not played again (its barcodes exist)
        rc, out, err = simulate(self.env, "--quiet", "--persons", "25", *base, check=False)
        self.assertEqual(rc, 1)
        self.assertIn("already has samples", err)
        self.assertEqual(db.count("samples", "round = 'SIMS1'"), 25)

    def test_paced_run_ends_near_the_present(self):
        speed = 3000
        t = time.monotonic()
        rc, out, err = simulate(self.env, "--json", "--quiet", "--county", T.COUNTY, "--round", "SIMP1",
                                "--sites", "2", "--persons", "20", "--positive-rate", "0", "--invalid-rate", "0",
                                "--reject-rate", "0", "--mistakes", "0", "--speed", str(speed))
        elapsed = time.monotonic() - t
        s = json.loads(out)
        self.assertEqual((rc, s["complete"], s["unexpected"]), (0, True, 0), err)
        span = (parse_time(s["clock"]["end"]) - parse_time(s["clock"]["start"])).total_seconds()
        self.assertGreater(span, 3600)  # a real round: hours of simulated time ...
        self.assertGreaterEqual(elapsed, span / speed * 0.9)  # ... played at the asked pace
        db = self.env.db
        last, lead = db.psql("SELECT extract(epoch FROM now() - max(at)), extract(epoch FROM max(at - received_at))"
                             " FROM events WHERE coalesce(tube, box) LIKE 'SIMP1-%'")[0]
        # the simulated day is based on the present: the last events are minutes old, and no
        # event was ever ahead of the server's clock by more than the 10 minutes allowed
        self.assertLess(float(last), 15 * 60)
        self.assertGreater(float(last), 0)
        self.assertLess(float(lead), 10 * 60)

    def test_interrupted_run_prints_its_counts_and_revokes_its_tokens(self):
        p = subprocess.Popen([T.need_env("TUBELOOP_CLI"), "simulate", "--json", "--quiet", "--county", T.COUNTY,
                              "--round", "SIMI1", "--sites", "2", "--persons", "200", "--mistakes", "0",
                              "--speed", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=cli_env(self.env))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.env.db.count("events", "coalesce(tube, box) LIKE 'SIMI1-%'") == 0:
            time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 1, err)
        s = json.loads(out)
        self.assertFalse(s["complete"])
        self.assertLess(s["events"]["sent"], s["events"]["planned"])
        self.assertEqual(s["events"]["accepted"], self.env.db.count("events", "coalesce(tube, box) LIKE 'SIMI1-%'"))
        self.assertIn(b"interrupted", err)
        self.assertEqual(self.env.db.count("tokens", "label LIKE 'simulate SIMI1 %' AND revoked_at IS NULL"), 0)

    def test_table_output(self):
        rc, out, err = simulate(self.env, "--quiet", "--county", T.COUNTY, "--round", "SIMX1", "--sites", "1",
                                "--labs", "1", "--couriers", "1", "--prefix", "TEXT", "--persons", "12",
                                "--positive-rate", "0", "--invalid-rate", "0", "--reject-rate", "0", "--mistakes", "0")
        self.assertEqual(rc, 0, err)
        rows = {ln.split("  ")[0]: ln.split("  ", 1)[1].strip() for ln in out.splitlines() if "  " in ln}
        self.assertEqual(rows["persons"], "12 (returned 12, positive 0)")
        self.assertEqual(rows["samples accepted"], "12")
        self.assertEqual(rows["results"], "negative 2, positive 0, invalid 0")
        self.assertEqual(rows["unexpected answers"], "0")
        self.assertTrue(rows["round"].startswith("SIMX1 (巴彦县 230126)"), rows["round"])

    def test_bad_flags_and_unknown_county(self):
        for args, code in ((["--round", "X1"], 2),
                           (["--county", T.COUNTY, "--pool", "7"], 2),
                           (["--county", "2301"], 2),
                           (["--county", T.COUNTY, "--persons", "0"], 2),
                           (["--county", T.COUNTY, "--positive-rate", "0.6", "--invalid-rate", "0.6"], 2),
                           (["--county", T.COUNTY, "--frobnicate"], 2),
                           (["--county", "230199"], 1)):
            rc, out, err = simulate(self.env, *args, check=False)
            self.assertEqual(rc, code, (args, err))
            self.assertTrue(err.startswith("tubeloop: "), err)
        rc, out, _ = simulate(self.env, "--help")
        self.assertEqual(rc, 0)
        self.assertIn("--positive-rate", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
