#!/usr/bin/env python3
"""The officials' calls (issue 4): stats from the roll-ups checked figure by figure against
direct SQL over the raw tables after a generated round; the overdue sweep (opened on the wall
clock, closed as soon as the tube moves on, never twice with two daemons sweeping); the lab
arrival board; the daily ledger; and the live stream across two daemons on one database."""
import datetime
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tubeloop_test as T  # noqa: E402


def nearest_rank(values, p):
    if not values:
        return None
    v = sorted(values)
    k = max(1, -(-int(p * 1000) * len(v) // 1000))  # ceil(p * n) without float trouble
    return v[k - 1]


class Scenario:
    """A generated round over three sites: tubes at every stage, results of every kind, a
    pooled positive with its single-tube follow-ups, a rejected tube."""

    def __init__(self, env, rng, clock, round_code):
        self.env, self.rng, self.clock, self.round = env, rng, clock, round_code
        self.used_names = set()

    def persons(self, n):
        return [T.person(T.resident_id(self.rng), T.person_name(self.rng, self.used_names), T.phone(self.rng))
                for _ in range(n)]

    def run(self):
        env, c, r = self.env, self.clock, self.round
        lab = env.client("lab", "L1")
        courier = env.client("courier", "C1")
        minute = 0
        for site in ("S1", "S2", "S3"):
            col = env.client("collector", site)
            tubes = []
            for i in range(self.rng.randint(6, 9)):
                code = "%s-%s-%03d" % (r, site, i)
                n = self.rng.randint(1, 10)
                evs = [T.tube_open(c.at(minute), code, r)]
                for p in self.persons(n):
                    minute += 1
                    evs.append(T.sample_add(c.at(minute), code, p))
                stage = self.rng.random()
                if stage > 0.15:
                    evs.append(T.tube_seal(c.at(minute + 1), code))
                    tubes.append((code, stage))
                col.send_ok(evs)
            sealed = [t for t, s in tubes]
            boxed = [t for t, s in tubes if s > 0.3]
            box = "%s-%s-BOX" % (r, site)
            if boxed:
                col.send_ok([T.box_pack(c.at(minute + 2), box, boxed), T.box_seal(c.at(minute + 3), box, "L1")])
                courier.send_ok([T.box_pickup(c.at(minute + 10), box)])
                if site != "S3":  # S3's box stays on the road
                    received = [t for t in boxed if self.rng.random() > 0.1]
                    lab.send_ok([T.box_deliver(c.at(minute + 40), box),
                                 T.box_receive(c.at(minute + 41), box, received)])
                    for t in received:
                        roll = self.rng.random()
                        if roll < 0.15:
                            continue  # still on the bench
                        if roll < 0.2:
                            lab.send_ok([T.tube_reject(c.at(minute + 60), t, "leak")])
                            continue
                        kind = "positive" if roll < 0.3 else ("invalid" if roll < 0.35 else "negative")
                        lab.send_ok([T.tube_result(c.at(minute + self.rng.randint(90, 300)), t, kind)])
            del sealed
        return self


class StatsAgainstRawTables(T.EnvCase):
    label = "dash_stats"

    @classmethod
    def prepare(cls):
        cls.clock = T.Clock(hours_back=12)
        cls.env.make_round("RD", day=cls.clock.day())
        Scenario(cls.env, random.Random(4242), cls.clock, "RD").run()
        # The daemon's overdue sweep (wall clock) would open the scenario's overdue_* anomalies
        # at a moment of its own, perhaps between a stats read and the raw count it is checked
        # against. Sweep now, with the daemon's default limits, until one sweep has run here
        # (-1: a daemon's sweep held the lock); later sweeps find nothing new to open.
        for _ in range(100):
            if int(cls.env.db.scalar("SELECT tl_overdue_sweep(now(), interval '4 hours', interval '6 hours',"
                                     " interval '12 hours')")) >= 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the overdue sweep stayed locked")
        cls.viewer = cls.env.client("viewer", T.COUNTY)

    def raw(self, where):
        """The figures of STATS, counted straight from tubes, boxes, samples, followups and
        anomalies for the tubes matching `where` (a condition on tube t)."""
        db = self.env.db
        q = lambda sql: int(db.scalar(sql))  # noqa: E731
        tubes = "FROM tubes t LEFT JOIN boxes b ON b.code = t.box WHERE t.round = 'RD' AND (%s)" % where
        out = {
            "tubes": {
                "open": q("SELECT count(*) %s AND t.sealed_at IS NULL AND t.result IS NULL AND t.rejected_at IS NULL AND t.received_at IS NULL" % tubes),
                "sealed": q("SELECT count(*) %s AND t.sealed_at IS NOT NULL AND t.received_at IS NULL AND t.result IS NULL AND t.rejected_at IS NULL AND b.picked_up_at IS NULL AND b.delivered_at IS NULL" % tubes),
                "in_transit": q("SELECT count(*) %s AND t.received_at IS NULL AND t.result IS NULL AND t.rejected_at IS NULL AND (b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL)" % tubes),
                "received": q("SELECT count(*) %s AND t.received_at IS NOT NULL AND t.result IS NULL AND t.rejected_at IS NULL" % tubes),
                "resulted": q("SELECT count(*) %s AND t.result IS NOT NULL" % tubes),
                "rejected": q("SELECT count(*) %s AND t.rejected_at IS NOT NULL AND t.result IS NULL" % tubes),
            },
            "results": {k: q("SELECT count(*) %s AND t.result = '%s'" % (tubes, k))
                        for k in ("negative", "positive", "invalid")},
            "persons_sampled": q("SELECT count(DISTINCT s.person) FROM samples s JOIN tubes t ON t.code = s.tube"
                                 " WHERE s.round = 'RD' AND (%s)" % where),
            "followups_open": q("SELECT count(*) FROM followups f JOIN tubes t ON t.code = f.tube"
                                " WHERE f.state = 'open' AND f.round = 'RD' AND (%s)" % where),
        }
        # a person is returned when their result is final: a negative that no open follow-up
        # contradicts, or a single-tube positive (this scenario has no single tubes)
        out["persons_returned"] = q(
            "SELECT count(DISTINCT s.person) FROM samples s JOIN tubes t ON t.code = s.tube"
            " WHERE s.round = 'RD' AND (%s) AND EXISTS (SELECT 1 FROM samples s2 JOIN tubes t2 ON t2.code = s2.tube"
            "  WHERE s2.person = s.person AND s2.round = 'RD' AND t2.result = 'negative')"
            " AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.person = s.person AND f.state = 'open')" % where)
        minutes = [int(m[0]) for m in db.psql(
            "SELECT floor(extract(epoch FROM t.result_at - t.first_sample_at) / 60)::int FROM tubes t"
            " WHERE t.round = 'RD' AND t.result IS NOT NULL AND (%s)" % where)]
        out["tat_minutes"] = {"p50": nearest_rank(minutes, 0.5), "p90": nearest_rank(minutes, 0.9)}
        anomalies = "FROM anomalies a WHERE a.round = 'RD' AND a.state IN ('open', 'acknowledged') AND a.site IN (SELECT DISTINCT t.site FROM tubes t WHERE t.round = 'RD' AND (%s))" % where
        out["anomalies_open"] = q("SELECT count(*) " + anomalies)
        out["overdue"] = q("SELECT count(*) %s AND a.type LIKE 'overdue%%'" % anomalies)
        sampled = out["persons_sampled"]
        out["clearance"] = round(out["persons_returned"] / sampled, 4) if sampled else 0.0
        return out

    def check(self, got, where, what):
        want = self.raw(where)
        for k, v in want.items():
            self.assertEqual(got[k], v, "%s: %s" % (what, k))

    def test_county_township_site_figures_equal_raw_counts(self):
        r = self.viewer.get("/v1/stats?region=%s&day=%s" % (T.COUNTY, self.clock.day()))
        self.assertEqual(r.status, 200, r.text)
        s = r.json
        self.assertEqual(s["region"], {"code": T.COUNTY, "name": "巴彦县", "level": "county"})
        self.assertEqual(s["day"], self.clock.day())
        self.assertGreater(s["totals"]["persons_sampled"], 50)
        self.assertGreater(s["totals"]["results"]["positive"], 0)
        self.assertGreater(s["totals"]["followups_open"], 0)
        self.check(s["totals"], "t.site IN ('S1','S2','S3')", "county totals")
        kids = {k["code"]: k for k in s["children"]}
        self.assertEqual(sorted(kids), [T.TOWN1, T.TOWN2])
        self.check(kids[T.TOWN1], "t.site IN ('S1','S2')", "township 1")
        self.check(kids[T.TOWN2], "t.site = 'S3'", "township 2")
        town = self.viewer.get("/v1/stats?region=%s&round=RD" % T.TOWN1).json
        self.assertEqual([k["code"] for k in town["children"]], ["S1", "S2"])
        for k in town["children"]:
            self.assertEqual(k["level"], "site")
            self.check(k, "t.site = '%s'" % k["code"], "site " + k["code"])
        site = self.viewer.get("/v1/stats?region=S3&round=RD").json
        self.assertEqual(site["children"], [])
        self.assertEqual(site["totals"]["tubes"]["in_transit"],
                         kids[T.TOWN2]["tubes"]["in_transit"])

    def test_a_person_sampled_at_three_sites_counts_once_in_each_region(self):
        # a round of its own, on another day, so that the RD figures above stay as they are
        c, env, rng = T.Clock(hours_back=36), self.env, random.Random(77)
        env.make_round("RW", day=c.day())
        wanderer = T.person(T.resident_id(rng), T.person_name(rng), T.phone(rng))
        tubes = {}
        for i, site in enumerate(("S1", "S2", "S3")):
            tube, box = "RW-%s-T" % site, "RW-%s-B" % site
            other = T.person(T.resident_id(rng), T.person_name(rng), T.phone(rng))
            env.client("collector", site).send_ok([
                T.tube_open(c.at(10 * i), tube, "RW"), T.sample_add(c.at(10 * i + 1), tube, wanderer),
                T.sample_add(c.at(10 * i + 2), tube, other), T.tube_seal(c.at(10 * i + 3), tube),
                T.box_pack(c.at(10 * i + 4), box, [tube]), T.box_seal(c.at(10 * i + 5), box, "L1")])
            tubes[tube] = box

        def persons():
            out = {}
            for region in (T.COUNTY, T.TOWN1, T.TOWN2, "S1", "S2", "S3"):
                r = self.viewer.get("/v1/stats?region=%s&round=RW" % region)
                self.assertEqual(r.status, 200, r.text)
                out[region] = (r.json["totals"]["persons_sampled"], r.json["totals"]["persons_returned"])
            return out

        # S1 and S2 are township 1, S3 township 2: the wanderer is one of 3 there, one of 4 in all
        sampled = {T.COUNTY: 4, T.TOWN1: 3, T.TOWN2: 2, "S1": 2, "S2": 2, "S3": 2}
        self.assertEqual(persons(), {k: (n, 0) for k, n in sampled.items()})
        self.assertEqual(int(env.db.scalar("SELECT count(DISTINCT person) FROM samples WHERE round = 'RW'")), 4)
        for tube, box in tubes.items():
            env.client("courier", "C1").send_ok([T.box_pickup(c.at(40), box)])
            env.client("lab", "L1").send_ok([T.box_deliver(c.at(60), box), T.box_receive(c.at(61), box, [tube]),
                                             T.tube_result(c.at(90), tube, "negative")])
        self.assertEqual(persons(), {k: (n, n) for k, n in sampled.items()})
        # the re-count from the raw rows agrees with the folded deltas
        env.db.psql("SELECT tl_rollup_rebuild()")
        self.assertEqual(persons(), {k: (n, n) for k, n in sampled.items()})

    def test_scope_and_shape_errors(self):
        other = self.env.client("viewer", T.TOWN2)
        self.assertEqual(other.get("/v1/stats?region=%s&round=RD" % T.TOWN1).status, 403)
        self.assertEqual(other.get("/v1/stats?region=S1&round=RD").status, 404)
        self.assertEqual(other.get("/v1/stats?region=%s&round=RD" % T.TOWN2).status, 200)
        self.assertEqual(self.viewer.get("/v1/stats?region=999999999&round=RD").status, 403)
        self.assertEqual(self.viewer.get("/v1/stats?round=RD").error_code, "missing_field")
        self.assertEqual(self.viewer.get("/v1/stats?region=%s&day=2021-02-30" % T.COUNTY).status, 400)
        self.assertEqual(self.env.client("collector", "S1").get("/v1/stats?region=S1").status, 403)

    def test_whoami(self):
        me = self.viewer.get("/v1/whoami")
        self.assertEqual(me.status, 200, me.text)
        self.assertEqual(me.json["role"], "viewer")
        self.assertEqual(me.json["region"], {"code": T.COUNTY, "name": "巴彦县", "level": "county"})
        self.assertIsNone(me.json["site"])
        col = self.env.client("collector", "S1").get("/v1/whoami").json
        self.assertEqual((col["role"], col["scope"], col["site"]["code"]), ("collector", "S1", "S1"))
        self.assertEqual(self.env.daemon.client(None).get("/v1/whoami").status, 401)
        self.assertNotIn("tl_", json.dumps(me.json))

    def test_charts_come_from_the_same_rollups(self):
        ch = self.viewer.get("/v1/stats/charts?region=%s&round=RD" % T.COUNTY).json
        st = self.viewer.get("/v1/stats?region=%s&round=RD" % T.COUNTY).json
        samples = int(self.env.db.scalar("SELECT count(*) FROM samples WHERE round = 'RD'"))
        self.assertEqual(sum(ch["samples_per_hour"].values()), samples)
        self.assertEqual(sum(ch["tat_histogram"].values()), st["totals"]["results"]["negative"]
                         + st["totals"]["results"]["positive"] + st["totals"]["results"]["invalid"])
        self.assertEqual({c["code"]: c["persons_sampled"] for c in ch["clearance"]},
                         {k["code"]: k["persons_sampled"] for k in st["children"] if k["persons_sampled"]})

    def test_ledger_names_every_gap(self):
        led = self.viewer.get("/v1/ledger?region=%s&round=RD" % T.COUNTY).json
        sites = {s["code"]: s for s in led["sites"]}
        self.assertEqual(sorted(sites), ["S1", "S2", "S3"])
        db = self.env.db
        for code, s in sites.items():
            c, d = s["counts"], s["differences"]
            sealed_not_received = [r[0] for r in db.psql(
                "SELECT code FROM tubes WHERE site = '%s' AND round = 'RD' AND sealed_at IS NOT NULL"
                " AND received_at IS NULL ORDER BY code" % code)]
            self.assertEqual(d["tubes_sealed_not_received"], sealed_not_received)
            self.assertEqual(c["tubes_sealed"] - c["tubes_received"], len(sealed_not_received))
            self.assertEqual(d["persons_not_returned"], c["persons_sampled"] - c["persons_returned"])
        self.assertTrue(sites["S3"]["differences"]["boxes_not_received"], "S3's box is still on the road")

    def test_an_idle_fold_gives_the_emptied_delta_table_back(self):
        # Every fold deletes the deltas it folded, and every read first asks whether any are
        # left, which reads each page of the emptied table until a vacuum gives it back
        # (lib/api/fold.c). Emptied pages, as a day of writes leaves them: rows inserted and
        # deleted in one transaction, which nobody else sees and autovacuum (5,000 dead rows
        # at the earliest) leaves alone.
        db = self.env.db
        url = "/v1/stats?region=%s&round=RD" % T.COUNTY
        before = self.viewer.get(url).json
        db.psql("BEGIN; INSERT INTO stats_delta SELECT 'zz-idle', 'S1', 'tubes_opened', 0, 0"
                " FROM generate_series(1, 3000); DELETE FROM stats_delta WHERE round = 'zz-idle'; COMMIT")
        pages = int(db.scalar("SELECT pg_relation_size('stats_delta') / 8192"))
        self.assertGreaterEqual(pages, 8, "the emptied table keeps its pages")
        # Nothing is written now: the daemon's next fold (every 5 s) finds nothing and has the
        # table vacuumed, which truncates it.
        deadline = time.time() + 20
        while time.time() < deadline and int(db.scalar("SELECT pg_relation_size('stats_delta')")) > 0:
            time.sleep(0.5)
        self.assertEqual(int(db.scalar("SELECT pg_relation_size('stats_delta')")), 0,
                         "stats_delta still has its %d emptied pages 20 s later" % pages)
        # The figures are what they were.
        after = self.viewer.get(url).json
        self.assertEqual((after["totals"], after["children"]), (before["totals"], before["children"]))

    def test_an_idle_fold_does_not_vacuum_again_what_it_could_not_shrink(self):
        # Emptied pages that a VACUUM cannot give back: another session's insert, still in
        # progress, sits on the last page. Nothing is there to fold, so the daemon's idle fold
        # asks for one VACUUM, and must not ask again every five seconds while the table keeps
        # its size (as it would for a role that may not vacuum the table at all).
        db = self.env.db
        vacuums = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'stats_delta'"
        before = int(db.scalar(vacuums))
        holder = subprocess.Popen(
            [T.PG_BIN + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.conninfo, "-c",
             "BEGIN; INSERT INTO stats_delta SELECT 'zz-held', 'S1', 'tubes_opened', 0, 0"
             " FROM generate_series(1, 3000); DELETE FROM stats_delta WHERE round = 'zz-held';"
             " INSERT INTO stats_delta VALUES ('zz-held', 'S1', 'tubes_opened', 0, 0);"
             " SELECT pg_sleep(17); ROLLBACK"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 8
            while time.time() < deadline and int(db.scalar(vacuums)) == before:
                time.sleep(0.25)
            self.assertEqual(int(db.scalar(vacuums)), before + 1, "the idle fold asked for a VACUUM")
            # Two more folds come and go with the table as it was.
            time.sleep(11)
            self.assertGreaterEqual(int(db.scalar("SELECT pg_relation_size('stats_delta') / 8192")), 8)
            self.assertEqual(int(db.scalar(vacuums)), before + 1, "the VACUUM was asked for again")
        finally:
            _, err = holder.communicate(timeout=30)
        self.assertEqual(holder.returncode, 0, err.decode())
        self.assertEqual(db.scalar("SELECT count(*) FROM stats_delta WHERE round = 'zz-held'"), "0")


class OverdueAndArrivals(unittest.TestCase):
    """Two daemons on one database, both sweeping every second with a 1-minute transport
    limit and a 2-minute test limit."""

    @classmethod
    def setUpClass(cls):
        cls.db = T.Database("dash_overdue")
        flags = {"TUBELOOP_OVERDUE_TRANSPORT": "1", "TUBELOOP_OVERDUE_TEST": "2",
                 "TUBELOOP_SWEEP_INTERVAL": "1", "TUBELOOP_TRANSIT_DEFAULT": "45"}
        cls.a = T.Daemon(cls.db, "dash_a", extra_env=flags).start()
        cls.b = T.Daemon(cls.db, "dash_b", extra_env=flags, keys_from=cls.a.keys).start()
        env = cls.env = T.Env.__new__(T.Env)
        env.db, env.daemon, env.tokens, env.clients = cls.db, cls.a, {}, {}
        env.admin_secret = cls.a.admin_token()
        env.admin = cls.a.client(env.admin_secret)
        env.load_registry()
        cls.clock = T.Clock(hours_back=3)
        for r in ("RO", "RA", "RS"):  # one round per test: their figures stay apart
            env.make_round(r, day=cls.clock.day())

    @classmethod
    def tearDownClass(cls):
        for d in (cls.a, cls.b):
            d.cleanup()
        cls.db.drop()

    def anomaly(self, subject, type_):
        rows = self.db.psql("SELECT state FROM anomalies WHERE subject = '%s' AND type = '%s'" % (subject, type_))
        return [r[0] for r in rows]

    def test_overdue_opened_by_the_sweep_once_and_closed_when_the_box_arrives(self):
        c, env = self.clock, self.env
        col = env.client("collector", "S1")
        p = T.person(T.resident_id(random.Random(7)))
        col.send_ok([T.tube_open(c.at(0), "RO-TUBE1", "RO"), T.sample_add(c.at(1), "RO-TUBE1", p),
                     T.tube_seal(c.at(2), "RO-TUBE1"), T.box_pack(c.at(3), "RO-BOX01", ["RO-TUBE1"]),
                     T.box_seal(c.at(4), "RO-BOX01", "L1")])
        T.wait_for(lambda: self.anomaly("RO-BOX01", "overdue_transport") == ["open"], "overdue_transport")
        time.sleep(2.5)  # both daemons swept again meanwhile
        self.assertEqual(self.anomaly("RO-BOX01", "overdue_transport"), ["open"], "opened exactly once")
        viewer = env.client("viewer", T.COUNTY)
        st = viewer.get("/v1/stats?region=%s&round=RO" % T.COUNTY).json
        self.assertEqual(st["totals"]["overdue"], 1)
        lab = env.client("lab", "L1")
        lab.send_ok([T.box_receive(c.at(100), "RO-BOX01", ["RO-TUBE1"])])
        self.assertEqual(self.anomaly("RO-BOX01", "overdue_transport"), ["auto_resolved"],
                         "closed by the write itself, not by the next sweep")
        # received 3 hours ago and not resulted: overdue_test, then the result closes it
        T.wait_for(lambda: self.anomaly("RO-TUBE1", "overdue_test") == ["open"], "overdue_test")
        lab.send_ok([T.tube_result(c.at(150), "RO-TUBE1", "negative")])
        self.assertEqual(self.anomaly("RO-TUBE1", "overdue_test"), ["auto_resolved"])
        st = viewer.get("/v1/stats?region=%s&round=RO" % T.COUNTY).json
        self.assertEqual(st["totals"]["overdue"], 0)

    def test_arrivals_count_down_with_the_route_median(self):
        c, env = self.clock, self.env
        col = env.client("collector", "S2")
        courier = env.client("courier", "C1")
        lab = env.client("lab", "L1")
        rng = random.Random(11)
        for i, box in enumerate(("RA-BOX01", "RA-BOX02", "RA-BOX03")):
            t = "RA-TUBE%d" % i
            col.send_ok([T.tube_open(c.at(0), t, "RA"), T.sample_add(c.at(1), t, T.person(T.resident_id(rng))),
                         T.tube_seal(c.at(2), t), T.box_pack(c.at(3), box, [t]), T.box_seal(c.at(4), box, "L1")])
        courier.send_ok([T.box_pickup(c.at(10), "RA-BOX01")])
        arr = lab.get("/v1/labs/L1/arrivals").json["arrivals"]
        b1 = [a for a in arr if a["box"] == "RA-BOX01"][0]
        self.assertEqual(b1["eta_basis"], "default")
        self.assertTrue(T.same_instant(b1["expected_at"], c.at(10 + 45)))
        # the route S2 → L1 gets history: 30 minutes from pickup to delivery
        courier.send_ok([T.box_pickup(c.at(20), "RA-BOX02")])
        lab.send_ok([T.box_deliver(c.at(50), "RA-BOX02"), T.box_receive(c.at(51), "RA-BOX02", ["RA-TUBE1"])])
        courier.send_ok([T.box_pickup(c.at(5), "RA-BOX03")])
        arr = lab.get("/v1/labs/L1/arrivals").json["arrivals"]
        mine = [a for a in arr if a["box"].startswith("RA-")]
        self.assertEqual([a["box"] for a in mine], ["RA-BOX03", "RA-BOX01"], "sorted by ETA; received ones gone")
        self.assertEqual(mine[0]["eta_basis"], "route_median")
        self.assertTrue(T.same_instant(mine[0]["expected_at"], c.at(5 + 30)))
        self.assertEqual(mine[0]["tubes"], 1)
        self.assertEqual(env.client("lab", "L2").get("/v1/labs/L1/arrivals").status, 404)
        self.assertEqual(env.client("viewer", T.COUNTY).get("/v1/labs/L1/arrivals").status, 200)
        self.assertEqual(env.client("viewer", T.OTHER_COUNTY).get("/v1/labs/L1/arrivals").status, 404)

    def test_live_stream_across_daemons(self):
        env, c = self.env, self.clock
        secret = env.make_token("viewer", T.TOWN2)[1]
        got = []
        ready = threading.Event()

        def listen():
            conn = http.client.HTTPSConnection("localhost", self.b.port, context=self.b.ssl_context(), timeout=15)
            conn.request("GET", "/v1/stream?region=%s&round=RS" % T.TOWN2,
                         headers={"Authorization": "Bearer " + secret})
            resp = conn.getresponse()
            got.append(("status", resp.status, resp.getheader("Content-Type")))
            ready.set()
            buf = b""
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline and not any(
                    g[0] == "event" and g[2]["totals"]["persons_sampled"] == 1 for g in got):
                chunk = resp.fp.read1(65536) if hasattr(resp.fp, "read1") else resp.read(1)
                if not chunk:
                    break
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    lines = block.decode().split("\n")
                    data = [ln[6:] for ln in lines if ln.startswith("data: ")]
                    ids = [ln[4:] for ln in lines if ln.startswith("id: ")]
                    if data:
                        got.append(("event", ids[0] if ids else None, json.loads(data[0])))
            conn.close()

        th = threading.Thread(target=listen)
        th.start()
        self.assertTrue(ready.wait(5))
        time.sleep(1.0)  # the first snapshot
        # a sample posted to daemon A must reach the stream held by daemon B
        col = env.client("collector", "S3")
        col.send_ok([T.tube_open(c.at(0), "RS-TUBE1", "RS"),
                     T.sample_add(c.at(1), "RS-TUBE1", T.person(T.resident_id(random.Random(3))))])
        th.join(15)
        self.assertEqual(got[0][:2], ("status", 200))
        self.assertTrue(got[0][2].startswith("text/event-stream"))
        events = [g for g in got if g[0] == "event"]
        self.assertGreaterEqual(len(events), 2, got)
        first, last = events[0][2], events[-1][2]
        self.assertEqual(first["totals"]["persons_sampled"], 0)
        self.assertEqual(last["region"]["code"], T.TOWN2)
        self.assertEqual(last["totals"]["persons_sampled"], 1, "the sample reached daemon B's stream")
        ids = [e[1] for e in events]
        self.assertEqual(len(ids), len(set(ids)), "every snapshot sent has a new version id")
        # a viewer of township 2 cannot stream township 1
        r = self.b.request("GET", "/v1/stream?region=%s&round=RS" % T.TOWN1, token=secret)
        self.assertEqual(r.status, 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
