#!/usr/bin/env python3
"""A whole screening round through the real daemon, with real tokens of every role.

County 230126 巴彦县 with two townships, three sampling points, two labs and a courier; one
round pooled 10-in-1. Collectors open tubes and sample 52 persons (10-in-1 tubes, partly filled
ones and 1-in-1 tubes), seal, pack and seal boxes to lab L1; the courier picks them up and
delivers them; L1 receives them — one tube of one box is not scanned (tube_missing) and a
stray tube is (tube_unexpected) — and returns results, one pooled positive. Its ten persons are
called back (awaiting_recheck), sampled again into 1-in-1 tubes and tested (9 negative, one
positive), which closes their follow-ups. The missing tube turns up in a second scan of its box
(tube_missing auto-resolves). The supervisor works an anomaly through ack and resolve and
closes the round. What a user sees is checked through the API at every step: event answers,
tubes, boxes with their timelines, person lookups, follow-ups and anomalies. Finally whole
batches are sent again (every event a duplicate with its first answer, nothing changes) and an
id is reused for other content (id_conflict).

Steps run in order and share the round (unittest runs test_NN_* in name order).
"""
import unittest

import tubeloop_test as T
from tubeloop_test import (box_deliver, box_pack, box_pickup, box_receive, box_seal, person,
                           sample_add, tube_open, tube_result, tube_seal)

import random

ROUND = "BY-2021-R1"
LAB1, LAB2 = "L1", "L2"


class Round(T.EnvCase):
    label = "round"

    @classmethod
    def prepare(cls):
        e = cls.env
        cls.rng = random.Random(20211008)
        cls.clock = T.Clock(hours_back=10)
        e.make_round(ROUND, pool_size=10, day=cls.clock.day())
        cls.s1 = e.client("collector", "S1")
        cls.s2 = e.client("collector", "S2")
        cls.s3 = e.client("collector", "S3")
        cls.courier = e.client("courier", "C1")
        cls.lab = e.client("lab", LAB1)
        cls.viewer = e.client("viewer", T.COUNTY)
        cls.supervisor = e.client("supervisor", T.COUNTY)
        cls.admin = e.admin
        # the tubes of the round: code -> (site client, capacity, number of persons)
        cls.plan = {
            "BY-T1A-0001": ("S1", None, 10),  # pooled positive
            "BY-T1B-0002": ("S1", None, 10),
            "BY-T1C-0003": ("S1", 1, 1),
            "BY-T2A-0004": ("S2", None, 10),
            "BY-T2B-0005": ("S2", None, 6),   # not scanned at the first receipt
            "BY-T3A-0006": ("S3", None, 10),
            "BY-T3B-0007": ("S3", 1, 1),
            "BY-T3C-0008": ("S3", None, 4),
        }
        cls.boxes = {"BY-B1-0001": ["BY-T1A-0001", "BY-T1B-0002", "BY-T1C-0003"],
                     "BY-B2-0002": ["BY-T2A-0004", "BY-T2B-0005"],
                     "BY-B3-0003": ["BY-T3A-0006", "BY-T3B-0007", "BY-T3C-0008"]}
        cls.stray = "BY-STRAY-0099"
        names = set()
        cls.persons = {}  # tube -> [(id, name, phone)]
        for tube, (_, _, n) in cls.plan.items():
            cls.persons[tube] = [(T.resident_id(cls.rng), T.person_name(cls.rng, names), T.phone(cls.rng))
                                 for _ in range(n)]
        cls.sent = {}       # remembered batches and times for later steps
        cls.times = {}

    def site_client(self, site):
        return {"S1": self.s1, "S2": self.s2, "S3": self.s3}[site]

    def status_of(self, rid):
        r = self.viewer.lookup(rid)
        self.assertEqual(r.status, 200, r.text)
        rounds = [x for x in r.json["rounds"] if x["round"] == ROUND]
        self.assertEqual(len(rounds), 1, r.text)
        return rounds[0]

    # ----------------------------------------------------------------------------------------

    def test_01_sampling(self):
        """Each site's phone uploads its tubes: open, samples, seal (with the counted number)."""
        c = self.clock
        minute = 0
        for site in ("S1", "S2", "S3"):
            batch = []
            for tube, (s, cap, n) in self.plan.items():
                if s != site:
                    continue
                minute += 1
                batch.append(tube_open(c.at(minute), tube, ROUND, cap))
                self.times[(tube, "tube.open")] = c.at(minute)
                for rid, name, ph in self.persons[tube]:
                    minute += 1
                    batch.append(sample_add(c.at(minute), tube, person(rid, name, ph)))
                minute += 1
                batch.append(tube_seal(c.at(minute), tube, n))
                self.times[(tube, "tube.seal")] = c.at(minute)
            res = self.site_client(site).send_ok(batch)
            self.assertTrue(all(r["anomalies"] == [] for r in res), res)
            self.assertEqual([r["id"] for r in res], [e["id"] for e in batch])
            self.sent[("sampling", site)] = (batch, res)
        # what the collector of S1 sees of its tube
        r = self.s1.tube("BY-T1A-0001")
        self.assertEqual(r.status, 200, r.text)
        t = r.json
        self.assertEqual((t["state"], t["capacity"], t["sampled"], t["seal_count"], t["site"], t["round"]),
                         ("sealed", 10, 10, 10, "S1", ROUND))
        self.assertEqual(t["region"], T.TOWN1)
        want = sorted(T.mask_rid(p[0]) for p in self.persons["BY-T1A-0001"])
        self.assertEqual(sorted(p["id_number"] for p in t["persons"]), want)
        r = self.s1.tube("BY-T1C-0003")
        self.assertEqual((r.json["capacity"], r.json["sampled"]), (1, 1))
        self.assertEqual(self.env.db.count("samples"), 52)
        # every sampled person is pending
        rid = self.persons["BY-T3C-0008"][0][0]
        st = self.status_of(rid)
        self.assertEqual((st["status"], st["result"], st["result_at"]), ("pending", None, None))

    def test_02_packing_and_transport(self):
        c = self.clock
        minute = 200
        for box, tubes in self.boxes.items():
            site = self.plan[tubes[0]][0]
            minute += 1
            pack = box_pack(c.at(minute), box, tubes)
            seal = box_seal(c.at(minute + 1), box, LAB1, len(tubes))
            self.times[(box, "box.pack")] = c.at(minute)
            self.times[(box, "box.seal")] = c.at(minute + 1)
            res = self.site_client(site).send_ok([pack, seal])
            self.assertEqual([r["anomalies"] for r in res], [[], []])
        r = self.s1.box("BY-B1-0001")
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual((r.json["state"], r.json["destination_lab"], r.json["manifest"]),
                         ("sealed", LAB1, sorted(self.boxes["BY-B1-0001"])))
        # the courier picks up all three boxes, then hands them over at L1
        pick = [box_pickup(c.at(230 + i), b) for i, b in enumerate(self.boxes)]
        dele = [box_deliver(c.at(260 + i), b, LAB1) for i, b in enumerate(self.boxes)]
        for e in pick:
            self.times[(e["box"], "box.pickup")] = e["at"]
        for e in dele:
            self.times[(e["box"], "box.deliver")] = e["at"]
        res = self.courier.send_ok(pick)
        self.assertTrue(all(x["anomalies"] == [] for x in res), res)
        r = self.courier.box("BY-B2-0002")
        self.assertEqual((r.status, r.json["state"], r.json["courier"]), (200, "in_transit", "C1"), r.text)
        self.assertEqual(self.s1.tube("BY-T1B-0002").json["state"], "in_transit")
        res = self.courier.send_ok(dele)
        self.assertTrue(all(x["anomalies"] == [] for x in res), res)
        r = self.lab.box("BY-B1-0001")
        self.assertEqual((r.status, r.json["state"]), (200, "delivered"), r.text)

    def test_03_receipt_missing_and_stray(self):
        c = self.clock
        batch = [box_receive(c.at(280), "BY-B1-0001", self.boxes["BY-B1-0001"]),
                 # BY-T2B-0005 stays in the box unscanned; a stray tube is scanned instead
                 box_receive(c.at(281), "BY-B2-0002", ["BY-T2A-0004", self.stray]),
                 box_receive(c.at(282), "BY-B3-0003", self.boxes["BY-B3-0003"])]
        for e in batch:
            self.times[(e["box"], "box.receive")] = e["at"]
        res = self.lab.send_ok(batch)
        self.sent["receive"] = (batch, res)
        self.assertEqual(res[0]["anomalies"], [])
        self.assertEqual(sorted(res[1]["anomalies"]), ["tube_missing", "tube_unexpected"])
        self.assertEqual(res[2]["anomalies"], [])
        r = self.lab.box("BY-B2-0002")
        self.assertEqual(r.status, 200, r.text)
        b = r.json
        self.assertEqual(b["state"], "received")
        self.assertEqual(b["receiving_lab"], LAB1)
        self.assertEqual(b["manifest"], ["BY-T2A-0004", "BY-T2B-0005"])
        self.assertEqual(b["received"], sorted(["BY-T2A-0004", self.stray]))
        self.assertEqual(b["missing"], ["BY-T2B-0005"])
        self.assertEqual(b["unexpected"], [self.stray])
        r = self.lab.box("BY-B1-0001")
        self.assertEqual((r.json["missing"], r.json["unexpected"]), ([], []))
        # the anomalies as an official sees them
        open_ = T.event_anomalies(self.viewer.anomalies(region=T.COUNTY, state="open"))
        got = sorted((a["type"], a["subject"]) for a in open_)
        self.assertEqual(got, [("tube_missing", "BY-T2B-0005"), ("tube_unexpected", self.stray)])
        miss = [a for a in open_ if a["type"] == "tube_missing"][0]
        self.assertEqual(miss["region"], T.TOWN1)
        self.assertEqual(miss["opened_by"], res[1]["id"])
        self.assertEqual(self.s2.tube("BY-T2B-0005").json["state"], "delivered")
        self.assertEqual(self.s2.tube("BY-T2A-0004").json["state"], "received")

    def test_04_results_pooled_positive(self):
        c = self.clock
        batch = []
        minute = 320
        for tube in self.plan:
            if tube == "BY-T2B-0005":
                continue
            minute += 1
            if tube == "BY-T1A-0001":
                batch.append(tube_result(c.at(minute), tube, "positive", ct={"ORF1ab": 31.5, "N": 30.2}))
            else:
                batch.append(tube_result(c.at(minute), tube, "negative"))
            self.times[(tube, "tube.result")] = c.at(minute)
        res = self.lab.send_ok(batch)
        self.assertTrue(all(x["anomalies"] == [] for x in res), res)
        self.sent["results"] = (batch, res)
        t = self.viewer.tube("BY-T1A-0001").json
        self.assertEqual((t["state"], t["result"], t["lab"]), ("resulted", "positive", LAB1))
        self.assertEqual(t["ct"], {"ORF1ab": 31.5, "N": 30.2})
        # ten follow-ups, one per person of the pooled positive tube
        r = self.viewer.followups(region=T.COUNTY)
        self.assertEqual(r.status, 200, r.text)
        fus = r.json["followups"]
        self.assertEqual(len(fus), 10, r.text)
        self.assertEqual({(f["tube"], f["kind"], f["state"], f["linked_tube"], f["result"]) for f in fus},
                         {("BY-T1A-0001", "awaiting_recheck", "open", None, None)})
        self.assertEqual(sorted(f["person"]["id_number"] for f in fus),
                         sorted(T.mask_rid(p[0]) for p in self.persons["BY-T1A-0001"]))
        self.assertTrue(all(f["region"] == T.TOWN1 for f in fus))
        # a township supervisor of the other township sees none of them
        other = self.env.client("viewer", T.TOWN2).followups()
        self.assertEqual((other.status, other.json["followups"]), (200, []))
        for rid, _, _ in self.persons["BY-T1A-0001"][:3]:
            st = self.status_of(rid)
            self.assertEqual((st["status"], st["result"], st["result_at"]), ("awaiting_recheck", None, None))
            self.assertEqual([f["state"] for f in st["followups"]], ["open"])
        rid = self.persons["BY-T1B-0002"][4][0]
        st = self.status_of(rid)
        self.assertEqual(st["status"], "negative")
        self.assertEqual(st["result"], "negative")
        self.assertTrue(T.same_instant(st["result_at"], self.times[("BY-T1B-0002", "tube.result")]), st)
        # the unscanned tube has no result: its persons are still pending
        st = self.status_of(self.persons["BY-T2B-0005"][0][0])
        self.assertEqual((st["status"], st["result"]), ("pending", None))

    def test_05_recheck_single_tubes(self):
        c = self.clock
        cls = type(self)
        positives = self.persons["BY-T1A-0001"]
        cls.recheck = {}
        batch = []
        minute = 400
        for i, (rid, name, ph) in enumerate(positives):
            tube = "BY-R1-%04d" % (i + 1)
            self.recheck[rid] = tube
            batch += [tube_open(c.at(minute), tube, ROUND, 1),
                      sample_add(c.at(minute + 1), tube, person(rid, name, ph)),
                      tube_seal(c.at(minute + 2), tube, 1)]
            minute += 3
        box = "BY-BR-0001"
        tubes = list(self.recheck.values())
        batch += [box_pack(c.at(minute), box, tubes), box_seal(c.at(minute + 1), box, LAB1, 10)]
        res = self.s1.send_ok(batch)
        # a called-back person sampled again is not a repeat: the follow-up explains it
        self.assertTrue(all(x["anomalies"] == [] for x in res), res)
        fus = self.viewer.followups(region=T.TOWN1).json["followups"]
        self.assertEqual(len(fus), 10)
        self.assertEqual(sorted(f["linked_tube"] for f in fus), sorted(tubes))
        self.assertTrue(all(f["state"] == "open" for f in fus))
        self.assertEqual(self.status_of(positives[0][0])["status"], "awaiting_recheck")
        res = self.courier.send_ok([box_pickup(c.at(minute + 10), box)])
        res += self.courier.send_ok([box_deliver(c.at(minute + 30), box, LAB1)])
        res += self.lab.send_ok([box_receive(c.at(minute + 40), box, tubes)])
        self.assertTrue(all(x["anomalies"] == [] for x in res), res)
        results = []
        cls.recheck_positive = positives[6][0]
        for i, (rid, _, _) in enumerate(positives):
            r = "positive" if rid == self.recheck_positive else "negative"
            results.append(tube_result(c.at(minute + 60 + i), self.recheck[rid], r))
            self.times[(self.recheck[rid], "tube.result")] = results[-1]["at"]
        res = self.lab.send_ok(results)
        self.assertTrue(all(x["anomalies"] == [] for x in res), res)

    def test_06_followups_closed_and_statuses(self):
        r = self.viewer.followups(region=T.COUNTY)
        self.assertEqual((r.status, r.json["followups"]), (200, []), r.text)
        r = self.viewer.followups(region=T.COUNTY, state="closed")
        fus = r.json["followups"]
        self.assertEqual(len(fus), 10, r.text)
        by_linked = {f["linked_tube"]: f for f in fus}
        for rid, tube in self.recheck.items():
            f = by_linked[tube]
            want = "positive" if rid == self.recheck_positive else "negative"
            self.assertEqual((f["state"], f["result"], f["kind"], f["tube"]),
                             ("closed", want, "awaiting_recheck", "BY-T1A-0001"))
            self.assertEqual(f["person"]["id_number"], T.mask_rid(rid))
            self.assertTrue(T.same_instant(f["closed_at"], self.times[(tube, "tube.result")]), f)
            st = self.status_of(rid)
            self.assertEqual((st["status"], st["result"]), (want, want), st)
            self.assertTrue(T.same_instant(st["result_at"], self.times[(tube, "tube.result")]), st)
            self.assertEqual([x["tube"] for x in st["samples"]], ["BY-T1A-0001", tube])
        # everybody else: negative, returned at their tube's result time
        for tube, people in self.persons.items():
            if tube in ("BY-T1A-0001", "BY-T2B-0005"):
                continue
            for rid, _, _ in people:
                st = self.status_of(rid)
                self.assertEqual((st["status"], st["result"]), ("negative", "negative"), (tube, st))
                self.assertTrue(T.same_instant(st["result_at"], self.times[(tube, "tube.result")]))
                self.assertEqual(st["followups"], [])
        # no person_repeat, no other anomaly opened by the whole recheck
        types = sorted(a["type"] for a in T.event_anomalies(self.viewer.anomalies(region=T.COUNTY, state="open")))
        self.assertEqual(types, ["tube_missing", "tube_unexpected"])

    def test_07_missing_tube_found(self):
        c = self.clock
        res = self.lab.send_ok([box_receive(c.at(500), "BY-B2-0002", ["BY-T2B-0005"])])
        self.assertEqual(res[0]["anomalies"], [])
        b = self.lab.box("BY-B2-0002").json
        self.assertEqual(b["missing"], [])
        self.assertEqual(b["received"], sorted(["BY-T2A-0004", "BY-T2B-0005", self.stray]))
        miss = self.viewer.anomalies(region=T.COUNTY, type="tube_missing")
        self.assertEqual([(a["subject"], a["state"]) for a in miss], [("BY-T2B-0005", "auto_resolved")])
        self.assertIsNotNone(miss[0]["resolved_at"])
        res = self.lab.send_ok([tube_result(c.at(520), "BY-T2B-0005", "negative")])
        for rid, _, _ in self.persons["BY-T2B-0005"]:
            st = self.status_of(rid)
            self.assertEqual((st["status"], st["result"]), ("negative", "negative"))
            self.assertTrue(T.same_instant(st["result_at"], c.at(520)))

    def test_08_timeline(self):
        """The tube's chain of custody lists every event with who sent it and when."""
        tube, box = "BY-T1B-0002", "BY-B1-0001"
        r = self.viewer.tube(tube)
        self.assertEqual(r.status, 200, r.text)
        t = r.json
        got = [(x["type"], x["sender_role"], x["sender"], T.parse_time(x["at"])) for x in t["timeline"]]
        samples = [e for e in self.sent[("sampling", "S1")][0] if e["type"] == "sample.add" and e["tube"] == tube]
        want = ([("tube.open", "collector", "S1", T.parse_time(self.times[(tube, "tube.open")]))]
                + [("sample.add", "collector", "S1", T.parse_time(e["at"])) for e in samples]
                + [("tube.seal", "collector", "S1", T.parse_time(self.times[(tube, "tube.seal")])),
                   ("box.pack", "collector", "S1", T.parse_time(self.times[(box, "box.pack")])),
                   ("box.seal", "collector", "S1", T.parse_time(self.times[(box, "box.seal")])),
                   ("box.pickup", "courier", "C1", T.parse_time(self.times[(box, "box.pickup")])),
                   ("box.deliver", "courier", "C1", T.parse_time(self.times[(box, "box.deliver")])),
                   ("box.receive", "lab", LAB1, T.parse_time(self.times[(box, "box.receive")])),
                   ("tube.result", "lab", LAB1, T.parse_time(self.times[(tube, "tube.result")]))])
        self.assertEqual(got, want)
        self.assertEqual(len(samples), 10)
        sent_ids = {e["id"] for e in samples}
        self.assertEqual(sent_ids, {x["id"] for x in t["timeline"] if x["type"] == "sample.add"})
        self.assertTrue(all(x["received_at"] for x in t["timeline"]))
        times = t["times"]
        for key, k in (("opened_at", (tube, "tube.open")), ("sealed_at", (tube, "tube.seal")),
                       ("packed_at", (box, "box.pack")), ("box_sealed_at", (box, "box.seal")),
                       ("picked_up_at", (box, "box.pickup")), ("delivered_at", (box, "box.deliver")),
                       ("received_at", (box, "box.receive")), ("result_at", (tube, "tube.result"))):
            self.assertTrue(T.same_instant(times[key], self.times[k]), (key, times[key], self.times[k]))
        self.assertEqual((t["state"], t["box"], t["destination_lab"], t["lab"], t["result"]),
                         ("resulted", box, LAB1, LAB1, "negative"))
        # the box's own timeline: pack, seal, pickup, deliver, receive
        bt = self.viewer.box(box).json["timeline"]
        self.assertEqual([(x["type"], x["sender"]) for x in bt],
                         [("box.pack", "S1"), ("box.seal", "S1"), ("box.pickup", "C1"),
                          ("box.deliver", "C1"), ("box.receive", LAB1)])

    def test_09_supervisor_closes_the_loop(self):
        unexpected = self.viewer.anomalies(region=T.COUNTY, type="tube_unexpected", state="open")
        self.assertEqual(len(unexpected), 1)
        aid = unexpected[0]["id"]
        # a viewer may look but not act
        r = self.viewer.post("/v1/anomalies/%s/ack" % aid, {"owner": "县疾控值班员"})
        self.assertEqual(r.status, 403, r.text)
        r = self.supervisor.post("/v1/anomalies/%s/ack" % aid, {"owner": "县疾控值班员"})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual((r.json["state"], r.json["owner"]), ("acknowledged", "县疾控值班员"))
        r = self.supervisor.post("/v1/anomalies/%s/resolve" % aid, {"note": "外县送错的样本管，已退回。"})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json["state"], "resolved")
        r = self.supervisor.post("/v1/anomalies/%s/resolve" % aid, {"note": "again"})
        self.assertEqual((r.status, r.error_code), (409, "anomaly_closed"), r.text)
        self.assertEqual(T.event_anomalies(self.viewer.anomalies(region=T.COUNTY, state="open")), [])
        # the round is over: the supervisor closes it, and no tube can be opened in it any more
        r = self.supervisor.post("/v1/admin/rounds/%s/close" % ROUND, {})
        self.assertEqual(r.status, 200, r.text)
        self.assertIsNotNone(r.json["closed_at"])
        res = self.s1.send([tube_open(self.clock.at(600), "BY-LATE-0001", ROUND)])
        self.assertEqual((res[0]["status"], res[0]["code"]), ("rejected", "round_closed"))
        self.assertEqual(self.s1.tube("BY-LATE-0001").status, 404)

    def test_10_duplicates(self):
        """A phone that did not get the answer sends the whole batch again."""
        db = self.env.db
        before = T.fingerprint(db)
        for key in (("sampling", "S1"), "receive", "results"):
            batch, first = self.sent[key]
            client = self.s1 if key == ("sampling", "S1") else self.lab
            again = client.send(batch)
            self.assertEqual([x["status"] for x in again], ["duplicate"] * len(batch), key)
            self.assertEqual([x["id"] for x in again], [x["id"] for x in first])
            self.assertEqual([sorted(x["anomalies"]) for x in again], [sorted(x["anomalies"]) for x in first], key)
        # the receive that opened tube_missing still answers with it (its first outcome), although
        # the anomaly has been auto-resolved since
        again = self.lab.send(self.sent["receive"][0])
        self.assertEqual(sorted(again[1]["anomalies"]), ["tube_missing", "tube_unexpected"])
        after = T.fingerprint(db)
        self.assertEqual(before, after, T.fingerprint_diff(before, after))
        # the same id with other content is refused and changes nothing
        batch, _ = self.sent["results"]
        forged = dict(batch[1])
        self.assertEqual(forged["result"], "negative")
        forged["result"] = "positive"
        res = self.lab.send([forged])
        self.assertEqual((res[0]["status"], res[0]["code"]), ("rejected", "id_conflict"))
        self.assertEqual(self.viewer.tube(forged["tube"]).json["result"], "negative")
        moved = dict(self.sent[("sampling", "S1")][0][0])
        self.assertEqual(moved["type"], "tube.open")
        moved["at"] = self.clock.at(7)  # the tube was opened at minute 1
        res = self.s1.send([moved])
        self.assertEqual((res[0]["status"], res[0]["code"]), ("rejected", "id_conflict"))
        after2 = T.fingerprint(db)
        self.assertEqual(before, after2, T.fingerprint_diff(before, after2))


if __name__ == "__main__":
    unittest.main(verbosity=2)
