#!/usr/bin/env python3
"""Personal data (DESIGN §7): ID numbers, names and phones never reach the daemon's log or the
database in clear, and every answer shows them masked.

A round with 50 synthetic residents (names and phones; ID numbers sent plain, with a lower-case
x check character, in full-width digits as a phone IME in full-width mode types them, padded
with spaces) and two passport holders runs through sampling, transport, a pooled positive with
its follow-ups, a person sampled twice (person_repeat), lookups in every form, and refusals
that carry personal data (a wrong check character, an id reused for another person, a full
tube, an ID looked up that nobody has). The daemon runs at log level debug. Afterwards its
whole log and a pg_dump of the database are searched for every ID number (the 17 leading
digits, ASCII and full-width, and the passport numbers in both cases), every name and every
phone (as sent and normalised): there must be no hit. Every answer the test received is
searched the same way, and the masked forms are checked where the answers show persons:
230126********123X, 张** (first character kept), 138****5678.
"""
import random
import unittest

import tubeloop_test as T
from tubeloop_test import (box_deliver, box_pack, box_pickup, box_receive, box_seal, person,
                           sample_add, tube_open, tube_result, tube_seal)

R = "PII-R1"


class Pii(T.EnvCase):
    label = "pii"
    log_level = "debug"

    @classmethod
    def prepare(cls):
        e = cls.env
        cls.rng = rng = random.Random(35273)
        cls.clock = T.Clock(hours_back=10)
        e.make_round(R, pool_size=10)
        # Synthetic names that occur nowhere in the database or the log before any person was
        # sent: a later hit can only be a leak.
        baseline = e.db.dump() + e.daemon.log_text()
        used = set()
        cls.residents = []
        for i in range(50):
            while True:
                name = T.person_name(rng, used)
                if name not in baseline:
                    break
            rid = T.resident_id(rng, want_x=(i % 5 == 0))  # every fifth one ends in X
            ph = T.phone(rng)
            form = ("lower_x", "fullwidth", "plain", "spaced", "plain")[i % 5] if i % 5 else "lower_x"
            if i % 10 == 5:
                form = "fullwidth"
            if form == "lower_x":
                sent = rid.lower()
            elif form == "fullwidth":
                sent = T.fullwidth(rid)
            elif form == "spaced":
                sent = "  " + rid + "\u3000"
            else:
                sent = rid
            sent_phone = ph if i % 3 else "%s-%s-%s" % (ph[:3], ph[3:7], ph[7:])
            cls.residents.append({"id": rid, "sent": sent, "name": name, "phone": ph, "sent_phone": sent_phone})
        cls.passports = [{"id": "E%08d" % rng.randrange(10 ** 8), "name": T.person_name(rng, used),
                          "phone": T.phone(rng)} for _ in range(2)]
        cls.refused = {"id": T.bad_check(T.resident_id(rng)), "name": T.person_name(rng, used), "phone": T.phone(rng)}
        cls.conflict = {"id": T.resident_id(rng), "name": T.person_name(rng, used), "phone": T.phone(rng)}
        cls.full = {"id": T.resident_id(rng), "name": T.person_name(rng, used), "phone": T.phone(rng)}
        cls.unknown = T.resident_id(rng)
        T.Client.record = cls.answers = []
        cls.run_scenario()

    @classmethod
    def tearDownClass(cls):
        T.Client.record = None
        super().tearDownClass()

    @classmethod
    def run_scenario(cls):
        e, c = cls.env, cls.clock
        sites = {"S1": e.client("collector", "S1"), "S2": e.client("collector", "S2"), "S3": e.client("collector", "S3")}
        cls.tube_of = {}
        minute = 0
        tubes = []
        for k in range(5):
            tube = "PII-T-%04d" % k
            site = ("S1", "S2", "S3", "S1", "S2")[k]
            tubes.append(tube)
            batch = [tube_open(c.at(minute), tube, R)]
            for p in cls.residents[10 * k:10 * k + 10]:
                minute += 1
                batch.append(sample_add(c.at(minute), tube, person(p["sent"], p["name"], p["sent_phone"])))
                cls.tube_of[p["id"]] = tube
            batch.append(tube_seal(c.at(minute + 1), tube, 10))
            sites[site].send_ok(batch)
        # passport holders, in a 1-in-1 tube each; one of them also sampled in a pooled tube
        # (person_repeat)
        pp = []
        for i, p in enumerate(cls.passports):
            tube = "PII-P-%04d" % i
            pp += [tube_open(c.at(100 + i), tube, R, 1),
                   sample_add(c.at(101 + i), tube, person(p["id"].lower(), p["name"], p["phone"], "passport")),
                   tube_seal(c.at(102 + i), tube, 1)]
            cls.tube_of[p["id"]] = tube
        res = sites["S3"].send_ok(pp + [tube_open(c.at(110), "PII-P-0099", R),
                                        sample_add(c.at(111), "PII-P-0099",
                                                   person(cls.passports[0]["id"], None, None, "passport")),
                                        tube_seal(c.at(112), "PII-P-0099", 1)])
        assert res[-2]["anomalies"] == ["person_repeat"], res[-2]
        # refusals that carry personal data
        r = sites["S3"].send([sample_add(c.at(113), "PII-P-0099",
                                         person(cls.refused["id"], cls.refused["name"], cls.refused["phone"]))])
        assert r[0]["code"] == "invalid_person", r
        ok = sample_add(c.at(114), "PII-T-0099", person(cls.conflict["id"], cls.conflict["name"]))
        sites["S1"].send_ok([tube_open(c.at(114), "PII-T-0099", R, 1), ok])
        other = dict(ok, person=person(cls.refused["id"][:17] + T.rid_check(cls.refused["id"][:17]),
                                       cls.full["name"], cls.full["phone"]))
        r = sites["S1"].send([other])
        assert r[0]["code"] == "id_conflict", r
        r = sites["S1"].send([sample_add(c.at(115), "PII-T-0099", person(cls.full["id"], cls.full["name"], cls.full["phone"]))])
        assert r[0]["code"] == "tube_full", r
        cls.extra_ids = [cls.refused["id"][:17] + T.rid_check(cls.refused["id"][:17])]
        # transport, results: the first pooled tube positive
        for i, tube in enumerate(tubes):
            site = ("S1", "S2", "S3", "S1", "S2")[i]
            box = "PII-B-%04d" % i
            sites[site].send_ok([box_pack(c.at(150), box, [tube]), box_seal(c.at(151), box, "L1", 1)])
            e.client("courier", "C1").send_ok([box_pickup(c.at(160), box), box_deliver(c.at(190), box, "L1")])
            e.client("lab", "L1").send_ok([box_receive(c.at(200), box, [tube]),
                                           tube_result(c.at(240 + i), tube, "positive" if i == 0 else "negative")])

    # ------------------------------------------------------------------------------------------

    def needles(self):
        """(what, bytes) of every piece of personal data the test sent."""
        out = []

        def add(what, s):
            out.append((what, s.encode("utf-8")))

        for p in self.residents + [self.refused, self.conflict, self.full]:
            add("id", p["id"])
            add("id lower-case x", p["id"].lower())
            add("id full-width", T.fullwidth(p["id"]))
            if "sent" in p:
                add("id as sent", p["sent"].strip(" \u3000"))
            add("id digits", p["id"][:17])
            add("id full-width digits", T.fullwidth(p["id"][:17]))
            add("name", p["name"])
            add("phone", p["phone"])
            if "sent_phone" in p and p["sent_phone"] != p["phone"]:
                add("phone as sent", p["sent_phone"])
        for p in self.passports:
            add("passport", p["id"])
            add("passport lower", p["id"].lower())
            add("name", p["name"])
            add("phone", p["phone"])
        for rid in self.extra_ids + [self.unknown]:
            add("id digits", rid[:17])
        return out

    def hits(self, haystack, where):
        found = []
        for what, n in self.needles():
            i = haystack.find(n)
            if i >= 0:
                line = haystack[:i].count(b"\n") + 1
                found.append("%s: %s %r at line %d" % (where, what, n.decode(), line))
        return found

    def test_1_answers_are_masked(self):
        v = self.env.client("viewer", T.COUNTY)
        for p in self.residents:
            with self.subTest(form=repr(p["sent"])):
                t = v.tube(self.tube_of[p["id"]]).json
                shown = [x for x in t["persons"] if x["id_number"] == T.mask_rid(p["id"])]
                self.assertEqual(len(shown), 1, t["persons"])
                self.assertEqual((shown[0]["name"], shown[0]["phone"]), (T.mask_name(p["name"]), T.mask_phone(p["phone"])))
                self.assertRegex(shown[0]["id_number"], r"^230126\*{8}[0-9]{3}[0-9X]$")
                # found by the number in every form: as sent, plain, lower-case x, full-width
                for form in {p["sent"], p["id"], p["id"].lower(), T.fullwidth(p["id"])}:
                    r = v.lookup(form)
                    self.assertEqual(r.status, 200, (form, r.text))
                    self.assertEqual(r.json["person"], {"id_type": "resident_id", "id_number": T.mask_rid(p["id"]),
                                                        "name": T.mask_name(p["name"]),
                                                        "phone": T.mask_phone(p["phone"])})
        x = [p for p in self.residents if p["id"].endswith("X")][0]
        self.assertTrue(T.mask_rid(x["id"]).endswith("X"))
        # passports: 2 + 2 characters shown; the first holder's name and phone as their first
        # scan gave them, though a later scan in the same batch gave neither
        for p in self.passports:
            r = v.lookup(p["id"], "passport")
            self.assertEqual(r.status, 200, r.text)
            self.assertEqual(r.json["person"]["id_number"], p["id"][:2] + "*" * (len(p["id"]) - 4) + p["id"][-2:])
            self.assertEqual((r.json["person"]["name"], r.json["person"]["phone"]),
                             (T.mask_name(p["name"]), T.mask_phone(p["phone"])), r.text)
        # follow-ups of the pooled positive show masked persons
        fus = v.followups().json["followups"]
        self.assertEqual(len(fus), 10)
        want = {(T.mask_rid(p["id"]), T.mask_name(p["name"]), T.mask_phone(p["phone"])) for p in self.residents[:10]}
        self.assertEqual({(f["person"]["id_number"], f["person"]["name"], f["person"]["phone"]) for f in fus}, want)
        # the repeat anomaly names the person by the masked number
        rep = self.env.admin.anomalies(type="person_repeat")
        pid = self.passports[0]["id"]
        self.assertEqual([a["subject"] for a in rep], [R + "/" + pid[:2] + "*" * (len(pid) - 4) + pid[-2:]])
        # unknown and malformed numbers
        r = v.lookup(self.unknown)
        self.assertEqual(r.status, 404, r.text)
        r = v.lookup(self.refused["id"])
        self.assertEqual((r.status, r.error_code), (400, "invalid_person"), r.text)
        # what the database keeps: masked forms and ciphertext
        rows = self.env.db.psql("SELECT id_masked, coalesce(name_masked, ''), coalesce(phone_masked, ''), id_enc"
                                " FROM persons")
        self.assertEqual(len(rows), 50 + 2 + 1)
        for idm, nm, phm, enc in rows:
            self.assertRegex(enc, r"^[0-9]+:[A-Za-z0-9+/=]+$")
            self.assertNotRegex(idm + " " + nm + " " + phm, r"[0-9]{7}")

    def test_2_answers_never_carry_personal_data(self):
        self.assertGreater(len(self.answers), 100)
        text = "\n".join(self.answers).encode("utf-8")
        self.assertEqual(self.hits(text, "answers"), [])

    def test_3_log_and_database_hold_no_personal_data(self):
        d = self.env.daemon
        self.assertEqual(d.stop(), 0)
        log = d.log_bytes()
        self.assertIn(b"route=/v1/persons/lookup", log)  # the log is there and has the calls
        self.assertIn(b"route=/v1/events", log)
        dump = self.env.db.dump().encode("utf-8")
        self.assertIn(b"COPY public.persons", dump)
        n = self.env.db.count("persons")
        self.assertGreaterEqual(n, 53)
        self.assertEqual(self.hits(log, "daemon log") + self.hits(dump, "pg_dump"), [])
        # the masked forms are in the dump (the search would have found the clear ones)
        self.assertIn(T.mask_rid(self.residents[0]["id"]).encode(), dump)


if __name__ == "__main__":
    unittest.main(verbosity=2)
