#!/usr/bin/env python3
"""The rules of DESIGN §4 through the real daemon: what is refused, what is recorded as an
anomaly, and what is tolerated.

* Every refusal code — the validation codes of a malformed event, the strict codes of the
  sampling point's own events, and the few refusals of hand-over and lab events — is produced
  at least once, and each time nothing was stored: a fingerprint of every table is the same
  before and after, and GET of the object the event named shows no change.
* Whole-body errors (invalid_json, duplicate_key, unknown_field, too many events, 401, 403).
* Every anomaly type the daemon derives from events is produced at least once, with its
  auto-resolution where the condition can clear (custody_gap and orphan_result when the late
  site events arrive, tube_missing when the tube is scanned after all).
* Tolerance: courier and lab events that arrive before the site's events are accepted, and
  the late site events then complete the placeholders instead of failing.
* amend: a different result needs "amend": true (else result_conflict); an amended pooled
  positive takes its follow-ups away (docs/RULES.md: derived state without a cause is removed). Invalid results and rejected tubes call persons back to be
  sampled again (status resample).
"""
import datetime
import json
import random
import re
import socket
import unittest

import tubeloop_test as T
from tubeloop_test import (box_deliver, box_pack, box_pickup, box_receive, box_seal, ev, person,
                           sample_add, tube_open, tube_reject, tube_result, tube_seal)

R = "RU-R1"            # the round, pool 10, county-wide
RC = "RU-CLOSED"       # a closed round
RX = "RU-ELSEWHERE"    # a round of another county


class Rules(T.EnvCase):
    label = "rules"

    @classmethod
    def prepare(cls):
        e = cls.env
        cls.rng = random.Random(4711)
        cls.clock = c = T.Clock(hours_back=14)
        e.make_round(R, pool_size=10, day=c.day())
        e.make_round(RC, pool_size=10, day=c.day())
        e.make_round(RX, pool_size=10, region=T.OTHER_COUNTY, day=c.day())
        cls.s1 = e.client("collector", "S1")
        cls.s2 = e.client("collector", "S2")
        cls.s3 = e.client("collector", "S3")
        cls.c1 = e.client("courier", "C1")
        cls.c2 = e.client("courier", "C2")
        cls.l1 = e.client("lab", "L1")
        cls.l2 = e.client("lab", "L2")
        cls.viewer = e.client("viewer", T.COUNTY)
        cls.admin = e.admin
        cls.p1 = cls.new_person()
        # fixtures for the strict rules, all at S1
        cls.s1.send_ok([
            tube_open(c.at(1), "RU-OPEN-0001", R), sample_add(c.at(2), "RU-OPEN-0001", cls.p1),
            tube_open(c.at(3), "RU-SEALED-0002", R),
            sample_add(c.at(4), "RU-SEALED-0002", cls.new_person()),
            sample_add(c.at(5), "RU-SEALED-0002", cls.new_person()),
            tube_seal(c.at(6), "RU-SEALED-0002", 2),
            tube_open(c.at(7), "RU-FULL-0003", R, 1), sample_add(c.at(8), "RU-FULL-0003", cls.new_person()),
            tube_open(c.at(9), "RU-EMPTY-0004", R),
            tube_open(c.at(10), "RU-PACKED-0005", R), sample_add(c.at(11), "RU-PACKED-0005", cls.new_person()),
            tube_seal(c.at(12), "RU-PACKED-0005"), box_pack(c.at(13), "RU-BOXA-0001", ["RU-PACKED-0005"]),
            tube_open(c.at(14), "RU-SEALB-0006", R), sample_add(c.at(15), "RU-SEALB-0006", cls.new_person()),
            tube_seal(c.at(16), "RU-SEALB-0006"), box_pack(c.at(17), "RU-BOXS-0002", ["RU-SEALB-0006"]),
            box_seal(c.at(18), "RU-BOXS-0002", "L1", 1),
            tube_open(c.at(19), "RU-LOOSE-0007", R), sample_add(c.at(20), "RU-LOOSE-0007", cls.new_person()),
            tube_seal(c.at(21), "RU-LOOSE-0007"),
            tube_open(c.at(22), "RU-RC-0008", RC), sample_add(c.at(23), "RU-RC-0008", cls.new_person()),
        ])
        r = cls.admin.post("/v1/admin/rounds/%s/close" % RC, {})
        assert r.status == 200, r.text
        # a tube in L1's hands with a result, for the lab-side refusals
        cls.s1.send_ok([tube_open(c.at(30), "RU-LABT-0009", R),
                        sample_add(c.at(31), "RU-LABT-0009", cls.new_person()),
                        tube_seal(c.at(32), "RU-LABT-0009"),
                        box_pack(c.at(33), "RU-BOXL-0005", ["RU-LABT-0009"]),
                        box_seal(c.at(34), "RU-BOXL-0005", "L1")])
        cls.c1.send_ok([box_pickup(c.at(40), "RU-BOXL-0005"), box_deliver(c.at(60), "RU-BOXL-0005", "L1")])
        cls.l1.send_ok([box_receive(c.at(70), "RU-BOXL-0005", ["RU-LABT-0009"]),
                        tube_result(c.at(90), "RU-LABT-0009", "negative")])

    @classmethod
    def new_person(cls, name=True):
        return person(T.resident_id(cls.rng), T.person_name(cls.rng) if name else None, T.phone(cls.rng))

    # ------------------------------------------------------------------------------------------

    def objects(self, tubes=(), boxes=()):
        """What an admin sees of the named objects: (status, JSON) of each GET. The overdue
        sweep opens overdue_* anomalies on the wall clock, whenever it runs: they are left out,
        as in T.fingerprint (a sealed tube not yet packed may turn overdue between two looks)."""
        out = {}
        for kind, path, codes in (("tube", "/v1/tubes/", tubes), ("box", "/v1/boxes/", boxes)):
            for code in codes:
                r = self.admin.get(path + code)
                j = r.json
                if r.status == 200 and isinstance(j, dict) and "anomalies" in j:
                    j = dict(j, anomalies=[a for a in j["anomalies"] if not a["type"].startswith("overdue")])
                out[kind + " " + code] = (r.status, j)
        return out

    def assert_refused(self, client, event, code, tubes=(), boxes=()):
        """Sends one event, expects it refused with code, and that nothing was stored."""
        before = T.fingerprint(self.env.db)
        seen = self.objects(tubes, boxes)
        res = client.send([event])
        self.assertEqual(res[0]["status"], "rejected", res)
        self.assertEqual(res[0]["code"], code, res)
        self.assertTrue(res[0].get("message"), res)
        self.assertEqual(res[0]["anomalies"], [])
        after = T.fingerprint(self.env.db)
        self.assertEqual(before, after, T.fingerprint_diff(before, after))
        self.assertEqual(seen, self.objects(tubes, boxes))
        return res[0]

    def assert_body_refused(self, client, status, code, body=None, raw=None):
        before = T.fingerprint(self.env.db)
        r = client.post("/v1/events", body, raw=raw)
        self.assertEqual((r.status, r.error_code), (status, code), r.text)
        after = T.fingerprint(self.env.db)
        self.assertEqual(before, after, T.fingerprint_diff(before, after))

    def open_anomalies(self, subject):
        return sorted(a["type"] for a in T.event_anomalies(self.admin.anomalies(state="open"))
                      if a["subject"] == subject)

    def anomaly_states(self, subject):
        return sorted((a["type"], a["state"]) for a in T.event_anomalies(self.admin.anomalies())
                      if a["subject"] == subject)

    # ------------------------------------------------------------------------------------------
    # refusals: malformed events

    def test_validation_codes(self):
        c = self.clock
        future = (datetime.datetime.now(T.CST) + datetime.timedelta(hours=2)).isoformat(timespec="seconds")
        good_open = tube_open(c.at(100), "RU-VAL-0100", R)

        def changed(**kw):
            e = dict(good_open, id=T.eid())
            e.update(kw)
            return {k: v for k, v in e.items() if v is not None}

        bad_person = person(T.bad_check(T.resident_id(self.rng)), "王五", "13900001111")
        ct_bad = tube_result(c.at(100), "RU-LABT-0009", "negative", ct={"N": "thirty"})
        cases = [
            ("invalid_id", self.s1, changed(id="not-a-uuid"), ["RU-VAL-0100"]),
            ("invalid_type", self.s1, changed(type="tube.destroy"), ["RU-VAL-0100"]),
            ("invalid_time", self.s1, changed(at="2021-10-08 09:12:03"), ["RU-VAL-0100"]),
            ("invalid_time", self.s1, changed(at="2021-10-08T09:12:03"), ["RU-VAL-0100"]),
            ("future_time", self.s1, changed(at=future), ["RU-VAL-0100"]),
            ("invalid_barcode", self.s1, changed(tube="AB1"), []),
            ("invalid_barcode", self.s1, changed(tube="RU_VAL_0100"), []),
            ("invalid_code", self.s1, changed(round="R 1"), ["RU-VAL-0100"]),
            ("invalid_capacity", self.s1, changed(capacity=3), ["RU-VAL-0100"]),
            ("invalid_count", self.s1, tube_seal(c.at(100), "RU-OPEN-0001", -1), ["RU-OPEN-0001"]),
            ("invalid_reason", self.l1, tube_reject(c.at(100), "RU-LABT-0009", "dropped"), ["RU-LABT-0009"]),
            ("invalid_result", self.l1, tube_result(c.at(100), "RU-LABT-0009", "maybe"), ["RU-LABT-0009"]),
            ("unknown_field", self.s1, changed(operator="张医生"), ["RU-VAL-0100"]),
            ("missing_field", self.s1, changed(round=None), ["RU-VAL-0100"]),
            ("missing_field", self.s1, ev("sample.add", c.at(100), tube="RU-OPEN-0001"), ["RU-OPEN-0001"]),
            ("invalid_field", self.s1, box_pack(c.at(100), "RU-BOXA-0001", []), [], ["RU-BOXA-0001"]),
            ("invalid_field", self.l1, ct_bad, ["RU-LABT-0009"]),
            ("invalid_person", self.s1, sample_add(c.at(100), "RU-OPEN-0001", bad_person), ["RU-OPEN-0001"]),
            ("invalid_person", self.s1,
             sample_add(c.at(100), "RU-OPEN-0001", {"id_type": "resident_id"}), ["RU-OPEN-0001"]),
            ("invalid_person", self.s1,
             sample_add(c.at(100), "RU-OPEN-0001", dict(self.new_person(), id_type="hukou")), ["RU-OPEN-0001"]),
            ("forbidden", self.s1, tube_result(c.at(100), "RU-LABT-0009", "positive"), ["RU-LABT-0009"]),
            ("forbidden", self.c1, changed(), ["RU-VAL-0100"]),
            ("forbidden", self.l1, box_pickup(c.at(100), "RU-BOXA-0001"), [], ["RU-BOXA-0001"]),
        ]
        for case in cases:
            code, client, event, tubes = case[:4]
            boxes = case[4] if len(case) > 4 else []
            with self.subTest(code=code, event=json.dumps(event, ensure_ascii=False)[:160]):
                r = self.assert_refused(client, event, code, tubes, boxes)
                if code == "invalid_person":
                    # the refusal never echoes personal data
                    self.assertNotIn(T.bad_check(bad_person["id_number"])[:17], r["message"])
                    self.assertNotIn("王五", r["message"])
        # the refused tube was never opened; the same event made valid is accepted
        self.assertEqual(self.admin.get("/v1/tubes/RU-VAL-0100").status, 404)
        near = (datetime.datetime.now(T.CST) + datetime.timedelta(minutes=5)).isoformat(timespec="seconds")
        self.s1.send_ok([changed(at=near)])  # a phone's clock 5 minutes ahead is tolerated
        self.assertEqual(self.admin.get("/v1/tubes/RU-VAL-0100").json["state"], "opened")

    def test_id_conflict(self):
        c = self.clock
        e = tube_open(c.at(110), "RU-IDC-0110", R)
        self.s1.send_ok([e])
        self.assert_refused(self.s1, dict(e, tube="RU-IDC-0111"), "id_conflict", ["RU-IDC-0110", "RU-IDC-0111"])
        self.assert_refused(self.s1, dict(e, capacity=5), "id_conflict", ["RU-IDC-0110"])
        # inside one batch too: the second use of the id with other content is refused
        e2 = tube_open(c.at(111), "RU-IDC-0112", R)
        res = self.s1.send([e2, dict(e2, tube="RU-IDC-0113"), e2])
        self.assertEqual(T.results_summary(res), [("accepted", None, []), ("rejected", "id_conflict", []),
                                                  ("duplicate", None, [])])
        self.assertEqual(self.admin.get("/v1/tubes/RU-IDC-0113").status, 404)

    # ------------------------------------------------------------------------------------------
    # refusals: the sampling point's strict rules, and the hand-over/lab refusals

    def test_rule_codes(self):
        c = self.clock
        cases = [
            ("tube_exists", self.s1, tube_open(c.at(120), "RU-OPEN-0001", R), ["RU-OPEN-0001"]),
            ("tube_exists", self.s2, tube_open(c.at(120), "RU-OPEN-0001", R), ["RU-OPEN-0001"]),
            ("tube_unknown", self.s1, sample_add(c.at(120), "RU-NEVER-0099", self.new_person()), ["RU-NEVER-0099"]),
            ("tube_unknown", self.s1, tube_seal(c.at(120), "RU-NEVER-0099"), ["RU-NEVER-0099"]),
            ("tube_unknown", self.s1, box_pack(c.at(120), "RU-BOXN-0009", ["RU-NEVER-0099"]), [], ["RU-BOXN-0009"]),
            ("tube_sealed", self.s1, sample_add(c.at(120), "RU-SEALED-0002", self.new_person()), ["RU-SEALED-0002"]),
            ("tube_sealed", self.s1, tube_seal(c.at(120), "RU-SEALED-0002", 2), ["RU-SEALED-0002"]),
            ("tube_full", self.s1, sample_add(c.at(120), "RU-FULL-0003", self.new_person()), ["RU-FULL-0003"]),
            ("tube_empty", self.s1, tube_seal(c.at(120), "RU-EMPTY-0004", 0), ["RU-EMPTY-0004"]),
            ("already_in_tube", self.s1, sample_add(c.at(120), "RU-OPEN-0001", self.p1), ["RU-OPEN-0001"]),
            ("round_unknown", self.s1, tube_open(c.at(120), "RU-RU-0120", "NOPE"), ["RU-RU-0120"]),
            ("round_closed", self.s1, tube_open(c.at(120), "RU-RC-0121", RC), ["RU-RC-0121"]),
            ("round_closed", self.s1, sample_add(c.at(120), "RU-RC-0008", self.new_person()), ["RU-RC-0008"]),
            ("tube_not_sealed", self.s1, box_pack(c.at(120), "RU-BOXN-0010", ["RU-OPEN-0001"]),
             ["RU-OPEN-0001"], ["RU-BOXN-0010"]),
            ("tube_in_other_box", self.s1, box_pack(c.at(120), "RU-BOXB-0003", ["RU-PACKED-0005"]),
             ["RU-PACKED-0005"], ["RU-BOXB-0003", "RU-BOXA-0001"]),
            ("box_sealed", self.s1, box_pack(c.at(120), "RU-BOXS-0002", ["RU-LOOSE-0007"]),
             ["RU-LOOSE-0007"], ["RU-BOXS-0002"]),
            ("box_sealed", self.s1, box_seal(c.at(120), "RU-BOXS-0002", "L2"), [], ["RU-BOXS-0002"]),
            ("box_empty", self.s1, box_seal(c.at(120), "RU-BOXE-0004", "L1"), [], ["RU-BOXE-0004"]),
            ("lab_unknown", self.s1, box_seal(c.at(120), "RU-BOXA-0001", "L9"), [], ["RU-BOXA-0001"]),
            ("lab_unknown", self.c1, box_deliver(c.at(120), "RU-BOXS-0002", "L9"), [], ["RU-BOXS-0002"]),
            # scope: another site's tube or box, a round that does not cover the site
            ("out_of_scope", self.s2, sample_add(c.at(120), "RU-OPEN-0001", self.new_person()), ["RU-OPEN-0001"]),
            ("out_of_scope", self.s2, tube_seal(c.at(120), "RU-OPEN-0001"), ["RU-OPEN-0001"]),
            ("out_of_scope", self.s2, box_seal(c.at(120), "RU-BOXA-0001", "L1"), [], ["RU-BOXA-0001"]),
            ("out_of_scope", self.s1, tube_open(c.at(120), "RU-RX-0122", RX), ["RU-RX-0122"]),
            # scope of hand-overs and labs: another courier's box, another lab's tube or box
            ("out_of_scope", self.c2, box_pickup(c.at(120), "RU-BOXL-0005"), [], ["RU-BOXL-0005"]),
            ("out_of_scope", self.l2, tube_result(c.at(120), "RU-LABT-0009", "positive"), ["RU-LABT-0009"]),
            ("out_of_scope", self.l2, tube_reject(c.at(120), "RU-LABT-0009", "leak"), ["RU-LABT-0009"]),
            ("out_of_scope", self.l2, box_receive(c.at(120), "RU-BOXL-0005", ["RU-LABT-0009"]),
             ["RU-LABT-0009"], ["RU-BOXL-0005"]),
            ("out_of_scope", self.l2, box_deliver(c.at(120), "RU-BOXL-0005", "L1"), [], ["RU-BOXL-0005"]),
            # a contradiction of a recorded fact
            ("result_conflict", self.l1, tube_result(c.at(120), "RU-LABT-0009", "positive"), ["RU-LABT-0009"]),
        ]
        for case in cases:
            code, client, event, tubes = case[:4]
            boxes = case[4] if len(case) > 4 else []
            with self.subTest(code=code, event=json.dumps(event, ensure_ascii=False)[:160]):
                self.assert_refused(client, event, code, tubes, boxes)

    def test_refused_event_inside_a_batch(self):
        """Only the refused event of a batch is dropped; the others are applied."""
        c = self.clock
        p = self.new_person()
        res = self.s1.send([tube_open(c.at(130), "RU-MIX-0130", R),
                            sample_add(c.at(131), "RU-MIX-0130", p),
                            sample_add(c.at(132), "RU-MIX-0130", p),          # already_in_tube
                            tube_open(c.at(133), "RU-MIX-0130", R),           # tube_exists
                            tube_seal(c.at(134), "RU-MIX-0130", 1)])
        self.assertEqual([(x["status"], x.get("code")) for x in res],
                         [("accepted", None), ("accepted", None), ("rejected", "already_in_tube"),
                          ("rejected", "tube_exists"), ("accepted", None)])
        t = self.admin.get("/v1/tubes/RU-MIX-0130").json
        self.assertEqual((t["sampled"], t["state"]), (1, "sealed"))
        self.assertEqual(sorted(x["type"] for x in t["timeline"]), ["sample.add", "tube.open", "tube.seal"])

    def test_whole_body_refusals(self):
        c = self.clock
        e = tube_open(c.at(140), "RU-BODY-0140", R)
        good = json.dumps({"events": [e]})
        self.assert_body_refused(self.s1, 400, "invalid_json", raw=good[:-2])
        self.assert_body_refused(self.s1, 400, "invalid_json", raw="")
        self.assert_body_refused(self.s1, 400, "duplicate_key", raw=good[:-1] + ', "events": []}')
        self.assert_body_refused(self.s1, 400, "duplicate_key",
                                 raw=json.dumps({"events": [e]})[:-3] + ', "tube": "RU-BODY-0141"}]}')
        self.assert_body_refused(self.s1, 400, "unknown_field", body={"events": [e], "device": "phone-7"})
        self.assert_body_refused(self.s1, 413, "too_many_events",
                                 body={"events": [tube_open(c.at(140), "RU-MANY-%05d" % i, R) for i in range(1001)]})
        big = [box_pack(c.at(140), "RU-BIG-%04d" % i, ["RU-BIG-%04d-%s" % (i, "X" * 20 + "%05d" % k)
                                                       for k in range(500)]) for i in range(70)]
        self.assertGreater(len(json.dumps({"events": big})), 1024 * 1024)
        before = T.fingerprint(self.env.db)
        status, text = self.post_raw(json.dumps({"events": big}).encode(), self.env.tokens[("collector", "S1")][1])
        self.assertEqual(status, 413, text[:300])  # more than 1 MiB
        self.assertEqual(before, T.fingerprint(self.env.db))
        self.assert_body_refused(self.daemon_client(None), 401, "unauthorized", body={"events": [e]})
        self.assert_body_refused(self.daemon_client("tl_" + "0" * 40), 401, "unauthorized", body={"events": [e]})
        self.assert_body_refused(self.viewer, 403, "forbidden", body={"events": [e]})
        self.assert_body_refused(self.env.client("supervisor", T.COUNTY), 403, "forbidden", body={"events": [e]})
        self.assert_body_refused(self.admin, 403, "forbidden", body={"events": [e]})
        self.assertEqual(self.admin.get("/v1/tubes/RU-BODY-0140").status, 404)

    def post_raw(self, body, token):
        """POST /v1/events on a raw TLS socket: the daemon may answer and close before the
        whole body is sent (http.client cannot read that answer)."""
        d = self.env.daemon
        raw = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        with d.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(("POST /v1/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                       "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (token, len(body))).encode())
            try:
                for i in range(0, len(body), 65536):
                    s.sendall(body[i:i + 65536])
            except OSError:
                pass  # refused early: the answer is already on its way
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if b"\r\n\r\n" in data and len(data) > 200:
                        break
            except OSError:
                pass
        head = data.split(b"\r\n", 1)[0].decode("latin-1")
        m = re.match(r"HTTP/1\.1 (\d{3})", head)
        return (int(m.group(1)) if m else None), data.decode("utf-8", "replace")

    def daemon_client(self, token):
        return self.env.daemon.client(token)

    # ------------------------------------------------------------------------------------------
    # anomalies

    def test_person_repeat(self):
        c = self.clock
        p = self.new_person()
        self.s1.send_ok([tube_open(c.at(150), "RU-REP-0150", R), sample_add(c.at(151), "RU-REP-0150", p)])
        res = self.s2.send_ok([tube_open(c.at(152), "RU-REP-0151", R), sample_add(c.at(153), "RU-REP-0151", p)])
        self.assertEqual(res[1]["anomalies"], ["person_repeat"])
        reps = [a for a in self.admin.anomalies(type="person_repeat") if a["opened_by"] == res[1]["id"]]
        self.assertEqual(len(reps), 1)
        a = reps[0]
        self.assertEqual((a["state"], a["subject_kind"], a["round"]), ("open", "person", R))
        self.assertEqual(a["subject"], R + "/" + T.mask_rid(p["id_number"]))
        self.assertEqual(a["region"], T.TOWN1)
        # accepted, flagged: the person is in both tubes
        self.assertEqual(self.admin.get("/v1/tubes/RU-REP-0151").json["sampled"], 1)
        # a person sampled in two rounds is no repeat
        self.env.make_round("RU-R2", pool_size=10)
        res = self.s1.send_ok([tube_open(c.at(154), "RU-REP-0152", "RU-R2"), sample_add(c.at(155), "RU-REP-0152", p)])
        self.assertEqual(res[1]["anomalies"], [])

    def test_seal_count_mismatch(self):
        c = self.clock
        res = self.s1.send_ok([tube_open(c.at(160), "RU-CNT-0160", R)]
                              + [sample_add(c.at(161 + i), "RU-CNT-0160", self.new_person()) for i in range(3)]
                              + [tube_seal(c.at(165), "RU-CNT-0160", 2),
                                 tube_open(c.at(166), "RU-CNT-0161", R),
                                 sample_add(c.at(167), "RU-CNT-0161", self.new_person()),
                                 tube_seal(c.at(168), "RU-CNT-0161", 1)])
        self.assertEqual(res[4]["anomalies"], ["seal_count_mismatch"])
        self.assertEqual(res[7]["anomalies"], [])
        self.assertEqual(self.open_anomalies("RU-CNT-0160"), ["seal_count_mismatch"])
        a = [x for x in self.admin.anomalies(type="seal_count_mismatch") if x["subject"] == "RU-CNT-0160"][0]
        self.assertEqual(a["detail"], {"counted": 2, "bound": 3})
        # a box sealed with a wrong tube count
        res = self.s1.send_ok([box_pack(c.at(170), "RU-CNTB-0160", ["RU-CNT-0160", "RU-CNT-0161"]),
                               box_seal(c.at(171), "RU-CNTB-0160", "L1", 3)])
        self.assertEqual(res[1]["anomalies"], ["seal_count_mismatch"])
        self.assertEqual(self.open_anomalies("RU-CNTB-0160"), ["seal_count_mismatch"])

    def test_custody_gap_closes_when_site_events_arrive(self):
        """A courier scans a box whose site phone is offline: accepted, custody_gap; the site's
        late upload completes the box and the gap closes by itself."""
        c = self.clock
        res = self.c1.send([box_pickup(c.at(200), "RU-GAPB-0200")])
        self.assertEqual((res[0]["status"], res[0]["anomalies"]), ("accepted", ["custody_gap"]))
        b = self.c1.get("/v1/boxes/RU-GAPB-0200")
        self.assertEqual((b.status, b.json["state"], b.json["courier"]), (200, "in_transit", "C1"), b.text)
        self.assertEqual(self.open_anomalies("RU-GAPB-0200"), ["custody_gap"])
        res = self.s3.send_ok([tube_open(c.at(180), "RU-GAPT-0200", R),
                               sample_add(c.at(181), "RU-GAPT-0200", self.new_person()),
                               tube_seal(c.at(182), "RU-GAPT-0200", 1),
                               box_pack(c.at(183), "RU-GAPB-0200", ["RU-GAPT-0200"])])
        # packed but not yet sealed: still a gap
        self.assertEqual(self.open_anomalies("RU-GAPB-0200"), ["custody_gap"])
        self.s3.send_ok([box_seal(c.at(184), "RU-GAPB-0200", "L1", 1)])
        self.assertEqual(self.open_anomalies("RU-GAPB-0200"), [])
        self.assertEqual(self.anomaly_states("RU-GAPB-0200"), [("custody_gap", "auto_resolved")])
        b = self.admin.get("/v1/boxes/RU-GAPB-0200").json
        self.assertEqual((b["state"], b["site"], b["region"], b["courier"], b["destination_lab"]),
                         ("in_transit", "S3", T.TOWN2, "C1", "L1"))

    def test_orphan_result_and_tolerance(self):
        """Lab and courier events first, the site's whole upload hours later: everything is
        accepted, the placeholders are completed, and every anomaly closes by itself."""
        c = self.clock
        tube, box = "RU-ORPH-0210", "RU-ORPHB-0210"
        res = self.l1.send([tube_result(c.at(300), tube, "negative")])
        self.assertEqual(res[0]["status"], "accepted", res)
        self.assertEqual(sorted(res[0]["anomalies"]), ["custody_gap", "orphan_result"])
        t = self.l1.get("/v1/tubes/" + tube)
        self.assertEqual((t.status, t.json["state"], t.json["site"], t.json["result"]),
                         (200, "resulted", None, "negative"), t.text)
        res = self.l1.send([box_receive(c.at(280), box, [tube])])
        self.assertEqual(res[0]["status"], "accepted", res)
        self.assertEqual(self.open_anomalies(tube), ["orphan_result"])  # the receipt closed the tube's gap
        self.assertEqual(self.open_anomalies(box), ["custody_gap"])
        self.c1.send_ok([box_pickup(c.at(230), box), box_deliver(c.at(260), box, "L1")])
        self.assertEqual(self.open_anomalies(box), ["custody_gap"])  # still never sealed
        p = self.new_person()
        res = self.s2.send([tube_open(c.at(210), tube, R), sample_add(c.at(211), tube, p),
                            tube_seal(c.at(212), tube, 1), box_pack(c.at(213), box, [tube]),
                            box_seal(c.at(214), box, "L1", 1)])
        self.assertEqual([x["status"] for x in res], ["accepted"] * 5, res)
        self.assertEqual(self.open_anomalies(tube), [])
        self.assertEqual(self.open_anomalies(box), [])
        self.assertEqual(self.anomaly_states(tube), [("custody_gap", "auto_resolved"), ("orphan_result", "auto_resolved")])
        self.assertEqual(self.anomaly_states(box), [("custody_gap", "auto_resolved")])
        t = self.admin.get("/v1/tubes/" + tube).json
        self.assertEqual((t["state"], t["site"], t["round"], t["region"], t["sampled"], t["box"], t["lab"]),
                         ("resulted", "S2", R, T.TOWN1, 1, box, "L1"))
        self.assertEqual([x["type"] for x in t["timeline"]],
                         ["tube.open", "sample.add", "tube.seal", "box.pack", "box.seal", "box.pickup",
                          "box.deliver", "box.receive", "tube.result"])
        st = self.viewer.lookup(p["id_number"]).json["rounds"][0]
        self.assertEqual((st["status"], st["result"]), ("negative", "negative"))

    def test_wrong_lab(self):
        c = self.clock
        box = "RU-WLB-0220"
        self.s1.send_ok([tube_open(c.at(220), "RU-WLT-0220", R),
                         sample_add(c.at(221), "RU-WLT-0220", self.new_person()),
                         tube_seal(c.at(222), "RU-WLT-0220", 1), box_pack(c.at(223), box, ["RU-WLT-0220"]),
                         box_seal(c.at(224), box, "L1", 1)])
        self.c1.send_ok([box_pickup(c.at(230), box)])
        res = self.c1.send_ok([box_deliver(c.at(250), box, "L2")])
        self.assertEqual(res[0]["anomalies"], ["wrong_lab"])
        res = self.l2.send_ok([box_receive(c.at(255), box, ["RU-WLT-0220"])])
        self.assertEqual(res[0]["anomalies"], [])  # the same anomaly, still open
        self.assertEqual(self.open_anomalies(box), ["wrong_lab"])
        b = self.admin.get("/v1/boxes/" + box).json
        self.assertEqual((b["destination_lab"], b["delivered_lab"], b["receiving_lab"]), ("L1", "L2", "L2"))
        a = [x for x in self.admin.anomalies(type="wrong_lab") if x["subject"] == box][0]
        self.assertEqual(a["detail"], {"destination": "L1", "lab": "L2"})
        # the lab that holds the tube reports on it; the destination lab cannot
        self.l2.send_ok([tube_result(c.at(270), "RU-WLT-0220", "negative")])
        self.assert_refused(self.l1, tube_result(c.at(271), "RU-WLT-0220", "negative"), "out_of_scope",
                            ["RU-WLT-0220"])

    def test_missing_and_unexpected(self):
        c = self.clock
        box = "RU-MUB-0230"
        tubes = ["RU-MUT-0230", "RU-MUT-0231"]
        batch = []
        for i, t in enumerate(tubes):
            batch += [tube_open(c.at(230 + 3 * i), t, R), sample_add(c.at(231 + 3 * i), t, self.new_person()),
                      tube_seal(c.at(232 + 3 * i), t, 1)]
        self.s3.send_ok(batch + [box_pack(c.at(240), box, tubes), box_seal(c.at(241), box, "L1", 2)])
        self.c1.send_ok([box_pickup(c.at(250), box), box_deliver(c.at(270), box, "L1")])
        res = self.l1.send_ok([box_receive(c.at(275), box, ["RU-MUT-0230", "RU-STRAY-0230"])])
        self.assertEqual(sorted(res[0]["anomalies"]), ["tube_missing", "tube_unexpected"])
        self.assertEqual(self.open_anomalies("RU-MUT-0231"), ["tube_missing"])
        self.assertEqual(self.open_anomalies("RU-STRAY-0230"), ["tube_unexpected"])
        b = self.admin.get("/v1/boxes/" + box).json
        self.assertEqual((b["missing"], b["unexpected"]), (["RU-MUT-0231"], ["RU-STRAY-0230"]))
        self.l1.send_ok([box_receive(c.at(290), box, ["RU-MUT-0231"])])
        self.assertEqual(self.anomaly_states("RU-MUT-0231"), [("tube_missing", "auto_resolved")])
        self.assertEqual(self.open_anomalies("RU-STRAY-0230"), ["tube_unexpected"])

    # ------------------------------------------------------------------------------------------
    # results: amend, invalid, reject

    def pooled_tube(self, client, tube, box, n, minute):
        c = self.clock
        people = [self.new_person() for _ in range(n)]
        client.send_ok([tube_open(c.at(minute), tube, R)]
                       + [sample_add(c.at(minute + 1 + i), tube, p) for i, p in enumerate(people)]
                       + [tube_seal(c.at(minute + 20), tube, n), box_pack(c.at(minute + 21), box, [tube]),
                          box_seal(c.at(minute + 22), box, "L1", 1)])
        self.c1.send_ok([box_pickup(c.at(minute + 30), box), box_deliver(c.at(minute + 60), box, "L1")])
        self.l1.send_ok([box_receive(c.at(minute + 70), box, [tube])])
        return people

    def statuses(self, people):
        out = []
        for p in people:
            r = self.viewer.lookup(p["id_number"])
            self.assertEqual(r.status, 200, r.text)
            out.append(r.json["rounds"][0]["status"])
        return out

    def followups_of(self, tube, state="all"):
        r = self.viewer.followups(state=state)
        self.assertEqual(r.status, 200, r.text)
        return [f for f in r.json["followups"] if f["tube"] == tube]

    def test_amend(self):
        c = self.clock
        tube = "RU-AMT-0300"
        people = self.pooled_tube(self.s1, tube, "RU-AMB-0300", 3, 300)
        self.l1.send_ok([tube_result(c.at(380), tube, "positive")])
        self.assertEqual([(f["kind"], f["state"]) for f in self.followups_of(tube, "open")],
                         [("awaiting_recheck", "open")] * 3)
        self.assertEqual(self.statuses(people), ["awaiting_recheck"] * 3)
        # another result without amend contradicts the recorded one
        self.assert_refused(self.l1, tube_result(c.at(385), tube, "negative"), "result_conflict", [tube])
        self.assert_refused(self.l1, tube_result(c.at(385), tube, "invalid", amend=False), "result_conflict", [tube])
        # the same result again is no contradiction
        self.assertEqual(self.l1.send([tube_result(c.at(386), tube, "positive")])[0]["status"], "accepted")
        # the correction
        res = self.l1.send_ok([tube_result(c.at(390), tube, "negative", amend=True)])
        t = self.admin.get("/v1/tubes/" + tube).json
        self.assertEqual(t["result"], "negative")
        self.assertTrue(T.same_instant(t["times"]["result_at"], c.at(390)))
        # the follow-ups had no cause any more: they are gone (derived state), the persons are
        # negative
        self.assertEqual(self.followups_of(tube, "all"), [])
        self.assertEqual(self.statuses(people), ["negative"] * 3)
        # nothing recorded is edited away: both results stay in the timeline
        self.assertEqual([x["type"] for x in t["timeline"]].count("tube.result"), 3)
        self.assertIn(res[0]["id"], [x["id"] for x in t["timeline"]])
        # and back: amended to positive again, the follow-ups reopen
        self.l1.send_ok([tube_result(c.at(395), tube, "positive", amend=True)])
        self.assertEqual(len(self.followups_of(tube, "open")), 3)
        self.assertEqual(self.statuses(people), ["awaiting_recheck"] * 3)

    def test_invalid_and_rejected_call_for_resample(self):
        c = self.clock
        inv, rej = "RU-INV-0400", "RU-REJ-0401"
        p_inv = self.pooled_tube(self.s2, inv, "RU-INVB-0400", 2, 400)
        p_rej = self.pooled_tube(self.s2, rej, "RU-REJB-0401", 2, 420)
        self.l1.send_ok([tube_result(c.at(500), inv, "invalid"), tube_reject(c.at(501), rej, "leak")])
        self.assertEqual([(f["kind"], f["state"]) for f in self.followups_of(inv)], [("resample", "open")] * 2)
        self.assertEqual([(f["kind"], f["state"]) for f in self.followups_of(rej)], [("resample", "open")] * 2)
        self.assertEqual(self.statuses(p_inv + p_rej), ["resample"] * 4)
        t = self.admin.get("/v1/tubes/" + rej).json
        self.assertEqual((t["state"], t["reject_reason"]), ("rejected", "leak"))
        # sampled again in a single tube and negative: follow-up closed, person negative
        p = p_rej[0]
        self.s2.send_ok([tube_open(c.at(510), "RU-RES-0410", R, 1), sample_add(c.at(511), "RU-RES-0410", p),
                         tube_seal(c.at(512), "RU-RES-0410", 1),
                         box_pack(c.at(513), "RU-RESB-0410", ["RU-RES-0410"]),
                         box_seal(c.at(514), "RU-RESB-0410", "L1", 1)])
        self.c1.send_ok([box_pickup(c.at(520), "RU-RESB-0410"), box_deliver(c.at(540), "RU-RESB-0410", "L1")])
        self.l1.send_ok([box_receive(c.at(545), "RU-RESB-0410", ["RU-RES-0410"]),
                         tube_result(c.at(560), "RU-RES-0410", "negative")])
        fu = [f for f in self.followups_of(rej) if f["person"]["id_number"] == T.mask_rid(p["id_number"])]
        self.assertEqual([(f["state"], f["linked_tube"], f["result"]) for f in fu],
                         [("closed", "RU-RES-0410", "negative")])
        self.assertEqual(self.statuses([p, p_rej[1]]), ["negative", "resample"])

    def test_followup_links_earliest_single_sample(self):
        """By event time, not arrival order: the person was sampled alone at S2 first and at S1
        later, but S1's phone uploaded first."""
        c = self.clock
        tube = "RU-FUL-0600"
        people = self.pooled_tube(self.s1, tube, "RU-FULB-0600", 2, 600)
        self.l1.send_ok([tube_result(c.at(680), tube, "positive")])
        p = people[0]
        self.s1.send_ok([tube_open(c.at(720), "RU-FUL-0602", R, 1), sample_add(c.at(721), "RU-FUL-0602", p)])
        fu = [f for f in self.followups_of(tube) if f["person"]["id_number"] == T.mask_rid(p["id_number"])]
        self.assertEqual([f["linked_tube"] for f in fu], ["RU-FUL-0602"])
        self.s2.send_ok([tube_open(c.at(700), "RU-FUL-0601", R, 1), sample_add(c.at(701), "RU-FUL-0601", p)])
        fu = [f for f in self.followups_of(tube) if f["person"]["id_number"] == T.mask_rid(p["id_number"])]
        self.assertEqual([(f["linked_tube"], f["state"]) for f in fu], [("RU-FUL-0601", "open")])
        self.assertTrue(T.same_instant(fu[0]["linked_at"], c.at(701)))
        # a sample taken before the pooled one answers nothing
        other = people[1]
        self.s2.send_ok([tube_open(c.at(590), "RU-FUL-0599", R, 1)])
        self.s2.send_ok([sample_add(c.at(591), "RU-FUL-0599", other)])
        fu = [f for f in self.followups_of(tube) if f["person"]["id_number"] == T.mask_rid(other["id_number"])]
        self.assertEqual([(f["linked_tube"], f["state"]) for f in fu], [(None, "open")])

    def test_zy_anomaly_list_pages(self):
        """GET /v1/anomalies is newest first and its pages (cursor) add up to the whole list."""
        whole = self.admin.anomalies(limit=500)
        self.assertGreater(len(whole), 10)
        paged = self.admin.anomalies(limit=3)
        self.assertEqual([a["id"] for a in paged], [a["id"] for a in whole])
        times = [T.parse_time(a["opened_at"]) for a in whole]
        self.assertEqual(times, sorted(times, reverse=True))
        r = self.admin.get("/v1/anomalies?limit=3")
        self.assertEqual(len(r.json["anomalies"]), 3)
        self.assertTrue(r.json["next_cursor"])
        r = self.admin.get("/v1/anomalies?limit=0")
        self.assertEqual(r.status, 400, r.text)
        r = self.admin.get("/v1/anomalies?type=no_such_type")
        self.assertEqual(r.status, 400, r.text)
        # filters
        for a in self.admin.anomalies(type="wrong_lab"):
            self.assertEqual(a["type"], "wrong_lab")
        for a in self.admin.anomalies(state="auto_resolved"):
            self.assertEqual(a["state"], "auto_resolved")
            self.assertIsNotNone(a["resolved_at"])
        town2 = self.admin.anomalies(region=T.TOWN2)
        self.assertTrue(town2)
        self.assertTrue(all(a["region"].startswith(T.TOWN2) for a in town2))

    def test_zz_every_anomaly_type_seen(self):
        """The tests above (run before this one) produced every event-derived anomaly type."""
        seen = {a["type"] for a in self.admin.anomalies()}
        want = {"person_repeat", "seal_count_mismatch", "custody_gap", "wrong_lab", "tube_missing",
                "tube_unexpected", "orphan_result"}
        self.assertEqual(want - seen, set())


if __name__ == "__main__":
    unittest.main(verbosity=2)
