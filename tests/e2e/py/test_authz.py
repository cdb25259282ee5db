#!/usr/bin/env python3
"""Who may do what (DESIGN §6), as a table: principal × call → the answer.

Principals: collectors of S1 and of another site S2, couriers C1 (who carried the box) and C2,
labs L1 (which received the tube) and L2, a viewer of the county and one of the other township,
a supervisor of S1's township, an admin, and callers with no token, a garbage token (ill-formed
and well-formed), and revoked tokens (an admin's and S1's collector's).

Calls: GET a tube and a box of S1, person lookup, the anomaly list with region= in and out of
scope, ack and resolve, follow-ups, the admin calls (registry, tokens, rounds), and events of
each sender type. Each cell asserts the HTTP status (and for events the per-event outcome), and
every denied call — and every read — is checked to have changed nothing: a fingerprint of
every table is the same before and after. Objects outside the caller's scope are 404 (no hint
that they exist), regions outside it 403. A token in the query string is refused with 400
token_in_url and never reaches the log.
"""
import hashlib
import random
import re
import secrets
import time
import unittest

import tubeloop_test as T
from tubeloop_test import (box_deliver, box_pack, box_pickup, box_receive, box_seal, person,
                           sample_add, tube_open, tube_result, tube_seal)

R = "AZ-R1"
TA, BA, TOPEN, TB = "AZ-TA-0001", "AZ-BA-0001", "AZ-TOPEN-0002", "AZ-TB-0003"

PRINCIPALS = ["collector S1", "collector S2", "courier C1", "courier C2", "lab L1", "lab L2",
              "viewer county", "viewer town2", "supervisor town1", "admin",
              "no token", "garbage token", "random token", "revoked admin", "revoked S1"]

# Expected answers. For events: "acc" accepted, "fbd" rejected/forbidden, "oos" rejected/
# out_of_scope; numbers are HTTP statuses of the whole call. The last five principals are
# always 401 and are added below.
TABLE = """
                      cS1  cS2  C1   C2   L1   L2   vCty vT2  sT1  adm
get_tube              200  404  403  403  200  404  200  404  200  200
get_box               200  404  200  404  200  404  200  404  200  200
lookup                403  403  403  403  403  403  200  404  200  200
anomalies_town1       403  403  403  403  403  403  200  403  200  200
anomalies_town2       403  403  403  403  403  403  200  200  403  200
anomalies_own         403  403  403  403  403  403  200  200  200  200
ack_town1             403  403  403  403  403  403  403  403  200  200
ack_town2             403  403  403  403  403  403  403  403  404  200
resolve_town1         403  403  403  403  403  403  403  403  200  200
followups_own         403  403  403  403  403  403  200  200  200  200
followups_town1       403  403  403  403  403  403  200  403  200  200
admin_regions         403  403  403  403  403  403  403  403  403  200
admin_sites           403  403  403  403  403  403  403  403  403  200
admin_labs            403  403  403  403  403  403  403  403  403  200
admin_couriers        403  403  403  403  403  403  403  403  403  200
token_create          403  403  403  403  403  403  403  403  403  201
token_revoke          403  403  403  403  403  403  403  403  403  200
round_create_town1    403  403  403  403  403  403  403  403  201  201
round_create_town2    403  403  403  403  403  403  403  403  403  201
round_close_town1     403  403  403  403  403  403  403  403  200  200
round_close_town2     403  403  403  403  403  403  403  403  404  200
ev_tube_open          acc  acc  fbd  fbd  fbd  fbd  403  403  403  403
ev_sample_add_s1      acc  oos  fbd  fbd  fbd  fbd  403  403  403  403
ev_box_pickup         fbd  fbd  acc  oos  fbd  fbd  403  403  403  403
ev_box_deliver        fbd  fbd  acc  oos  acc  oos  403  403  403  403
ev_tube_result        fbd  fbd  fbd  fbd  acc  oos  403  403  403  403
"""


def parse_table():
    lines = [l.split() for l in TABLE.strip().splitlines()]
    out = {}
    for row in lines[1:]:
        out[row[0]] = dict(zip(PRINCIPALS, row[1:]))
        for p in PRINCIPALS[10:]:
            out[row[0]][p] = "401"
    return out


class Authz(T.EnvCase):
    label = "authz"

    @classmethod
    def prepare(cls):
        e = cls.env
        cls.rng = random.Random(6)
        cls.clock = c = T.Clock(hours_back=4)
        cls.n = 0
        e.make_round(R, pool_size=10)
        s1, s3 = e.client("collector", "S1"), e.client("collector", "S3")
        cls.people = [person(T.resident_id(cls.rng), T.person_name(cls.rng), T.phone(cls.rng)) for _ in range(4)]
        # S1's tube in S1's box, carried by C1 to L1, pooled positive; sealed with a wrong count
        # (a seal_count_mismatch anomaly in TOWN1)
        s1.send_ok([tube_open(c.at(1), TA, R)]
                   + [sample_add(c.at(2 + i), TA, p) for i, p in enumerate(cls.people[:3])]
                   + [tube_seal(c.at(6), TA, 2), box_pack(c.at(7), BA, [TA]), box_seal(c.at(8), BA, "L1", 1),
                      tube_open(c.at(9), TOPEN, R), sample_add(c.at(10), TOPEN, person(T.resident_id(cls.rng)))])
        e.client("courier", "C1").send_ok([box_pickup(c.at(20), BA), box_deliver(c.at(50), BA, "L1")])
        e.client("lab", "L1").send_ok([box_receive(c.at(60), BA, [TA]), tube_result(c.at(90), TA, "positive")])
        # a tube of the other township with its own anomaly
        s3.send_ok([tube_open(c.at(1), TB, R), sample_add(c.at(2), TB, cls.people[3]), tube_seal(c.at(3), TB, 2)])
        an = e.admin.anomalies(state="open", type="seal_count_mismatch")
        cls.a_town1 = [a["id"] for a in an if a["subject"] == TA][0]
        cls.a_town2 = [a["id"] for a in an if a["subject"] == TB][0]
        # the principals
        cls.clients = {
            "collector S1": e.client("collector", "S1"), "collector S2": e.client("collector", "S2"),
            "courier C1": e.client("courier", "C1"), "courier C2": e.client("courier", "C2"),
            "lab L1": e.client("lab", "L1"), "lab L2": e.client("lab", "L2"),
            "viewer county": e.client("viewer", T.COUNTY), "viewer town2": e.client("viewer", T.TOWN2),
            "supervisor town1": e.client("supervisor", T.TOWN1), "admin": e.admin,
            "no token": e.daemon.client(None), "garbage token": e.daemon.client("garbage"),
            "random token": e.daemon.client("tl_" + secrets.token_hex(32)),
        }
        for name, role, scope in (("revoked admin", "admin", None), ("revoked S1", "collector", "S1")):
            tid, secret = e.make_token(role, scope)
            cl = e.daemon.client(secret)
            assert cl.get("/v1/boxes/" + BA).status == 200, "the token works before it is revoked"
            r = e.admin.delete("/v1/admin/tokens/" + tid)
            assert r.status == 200 and r.json == {"id": tid, "revoked": True}, r.text
            cls.clients[name] = cl

    # ------------------------------------------------------------------------------------------
    # the calls; each gets fresh objects where it could create something

    def fresh(self, prefix):
        type(self).n += 1
        return "%s%04d" % (prefix, self.n)

    def call(self, name, cl):
        c, e = self.clock, self.env
        if name == "get_tube":
            return cl.get("/v1/tubes/" + TA)
        if name == "get_box":
            return cl.get("/v1/boxes/" + BA)
        if name == "lookup":
            return cl.lookup(self.people[0]["id_number"])
        if name == "anomalies_town1":
            return cl.get("/v1/anomalies?region=" + T.TOWN1)
        if name == "anomalies_town2":
            return cl.get("/v1/anomalies?region=" + T.TOWN2)
        if name == "anomalies_own":
            return cl.get("/v1/anomalies")
        if name == "ack_town1":
            return cl.post("/v1/anomalies/%s/ack" % self.a_town1, {"owner": "乡镇值班员"})
        if name == "ack_town2":
            return cl.post("/v1/anomalies/%s/ack" % self.a_town2, {"owner": "乡镇值班员"})
        if name == "resolve_town1":
            # a fresh anomaly of TOWN1 for each caller (resolving is final)
            t = self.fresh("AZ-RES-")
            e.client("collector", "S1").send_ok([tube_open(c.at(100), t, R),
                                                 sample_add(c.at(101), t, person(T.resident_id(self.rng))),
                                                 tube_seal(c.at(102), t, 5)])
            aid = [a["id"] for a in e.admin.anomalies(state="open", type="seal_count_mismatch")
                   if a["subject"] == t][0]
            self._setup_done()
            return cl.post("/v1/anomalies/%s/resolve" % aid, {"note": "已核实"})
        if name == "followups_own":
            return cl.get("/v1/followups")
        if name == "followups_town1":
            return cl.get("/v1/followups?region=" + T.TOWN1)
        if name == "admin_regions":
            code = "2301269%02d" % (self.n % 100)
            type(self).n += 1
            return cl.post("/v1/admin/regions", {"regions": [{"code": code, "name": "新镇", "parent": T.COUNTY}]})
        if name == "admin_sites":
            return cl.post("/v1/admin/sites", {"sites": [{"code": self.fresh("AZS"), "name": "新采样点",
                                                          "township": T.TOWN1}]})
        if name == "admin_labs":
            return cl.post("/v1/admin/labs", {"labs": [{"code": self.fresh("AZL"), "name": "新实验室",
                                                        "county": T.COUNTY}]})
        if name == "admin_couriers":
            return cl.post("/v1/admin/couriers", {"couriers": [{"code": self.fresh("AZC"), "name": "新转运组",
                                                                "county": T.COUNTY}]})
        if name == "token_create":
            return cl.post("/v1/admin/tokens", {"role": "viewer", "scope": T.COUNTY, "label": "new"})
        if name == "token_revoke":
            tid, _ = e.make_token("viewer", T.TOWN1)
            self._setup_done()
            return cl.delete("/v1/admin/tokens/" + tid)
        if name in ("round_create_town1", "round_create_town2"):
            region = T.TOWN1 if name.endswith("1") else T.TOWN2
            return cl.post("/v1/admin/rounds", {"code": self.fresh("AZ-RND-"), "name": "复筛",
                                                "region": region, "day": c.day(), "pool_size": 1})
        if name in ("round_close_town1", "round_close_town2"):
            region = T.TOWN1 if name.endswith("1") else T.TOWN2
            code = self.fresh("AZ-CLS-")
            e.make_round(code, pool_size=5, region=region)
            self._setup_done()
            return cl.post("/v1/admin/rounds/%s/close" % code, {})
        if name == "ev_tube_open":
            return cl.post("/v1/events", {"events": [tube_open(c.at(200), self.fresh("AZ-NEW-"), R)]})
        if name == "ev_sample_add_s1":
            p = person(T.resident_id(self.rng))
            return cl.post("/v1/events", {"events": [sample_add(c.at(201), TOPEN, p)]})
        if name == "ev_box_pickup":
            return cl.post("/v1/events", {"events": [box_pickup(c.at(21), BA)]})
        if name == "ev_box_deliver":
            return cl.post("/v1/events", {"events": [box_deliver(c.at(51), BA, "L1")]})
        if name == "ev_tube_result":
            return cl.post("/v1/events", {"events": [tube_result(c.at(91), TA, "positive")]})
        raise AssertionError(name)

    def _setup_done(self):
        """Called by a call after it made its own fixture: the snapshot starts here."""
        self._before = T.fingerprint(self.env.db)

    # ------------------------------------------------------------------------------------------

    def test_table(self):
        table = parse_table()
        self.assertEqual(set(table), {l.split()[0] for l in TABLE.strip().splitlines()[1:]})
        for call, row in table.items():
            for who in PRINCIPALS:
                want = row[who]
                with self.subTest(call=call, principal=who, want=want):
                    self._before = T.fingerprint(self.env.db)
                    r = self.call(call, self.clients[who])
                    after = T.fingerprint(self.env.db)
                    if want in ("acc", "fbd", "oos"):
                        self.assertEqual(r.status, 200, r.text)
                        res = r.json["results"][0]
                        got = {"accepted": "acc", "duplicate": "acc"}.get(res["status"]) or \
                            {"forbidden": "fbd", "out_of_scope": "oos"}.get(res.get("code"), res.get("code"))
                        self.assertEqual(got, want, r.text)
                        denied = want != "acc"
                    else:
                        self.assertEqual(r.status, int(want), r.text)
                        denied = int(want) >= 400
                        if denied:
                            self.assertIsNotNone(r.error_code, r.text)
                        if r.status == 401:
                            self.assertEqual(r.error_code, "unauthorized")
                    if denied or call.startswith(("get_", "lookup", "anomalies_", "followups_")):
                        self.assertEqual(self._before, after, T.fingerprint_diff(self._before, after))

    def test_scoped_reads_show_only_the_scope(self):
        """What each reader's lists contain, not just that they answer."""
        fus = {who: self.clients[who].get("/v1/followups").json["followups"]
               for who in ("viewer county", "viewer town2", "supervisor town1", "admin")}
        self.assertEqual([len(fus[w]) for w in ("viewer county", "viewer town2", "supervisor town1", "admin")],
                         [3, 0, 3, 3])
        an = {who: {a["subject"] for a in self.clients[who].get("/v1/anomalies").json["anomalies"]}
              for who in ("viewer county", "viewer town2", "supervisor town1")}
        self.assertIn(TA, an["viewer county"])
        self.assertIn(TB, an["viewer county"])
        self.assertIn(TB, an["viewer town2"])
        self.assertNotIn(TA, an["viewer town2"])
        self.assertIn(TA, an["supervisor town1"])
        self.assertNotIn(TB, an["supervisor town1"])
        # the town2 viewer cannot learn that TOWN1's person exists; the county viewer finds them
        self.assertEqual(self.clients["viewer town2"].lookup(self.people[0]["id_number"]).status, 404)
        self.assertEqual(self.clients["viewer town2"].lookup(self.people[3]["id_number"]).status, 200)
        # an unknown object and an out-of-scope one answer alike
        s2 = self.clients["collector S2"]
        a, b = s2.get("/v1/tubes/" + TA), s2.get("/v1/tubes/AZ-NOSUCH-0001")
        self.assertEqual((a.status, a.json), (b.status, b.json))

    def test_token_in_url(self):
        db = self.env.db
        secret = self.env.tokens[("collector", "S1")][1]
        before = T.fingerprint(db)
        d = self.env.daemon
        for path in ("/v1/tubes/%s?token=%s" % (TA, secret), "/v1/boxes/%s?access_token=%s" % (BA, secret)):
            for tok in (secret, None):
                r = d.request("GET", path, token=tok)
                self.assertEqual((r.status, r.error_code), (400, "token_in_url"), (path, r.text))
        r = d.request("POST", "/v1/events?token=" + secret,
                      body={"events": [tube_open(self.clock.at(300), "AZ-URL-0001", R)]}, token=secret)
        self.assertEqual((r.status, r.error_code), (400, "token_in_url"), r.text)
        self.assertEqual(before, T.fingerprint(db))
        self.assertEqual(self.clients["collector S1"].get("/v1/tubes/AZ-URL-0001").status, 404)
        self.assertNotIn(secret, d.log_text())
        self.assertNotIn(secret[3:], d.log_text())

    def test_revoked_token(self):
        e = self.env
        tid, secret = e.make_token("viewer", T.COUNTY)
        cl = e.daemon.client(secret)
        self.assertEqual(cl.get("/v1/tubes/" + TA).status, 200)
        # only an admin revokes
        r = self.clients["supervisor town1"].delete("/v1/admin/tokens/" + tid)
        self.assertEqual(r.status, 403, r.text)
        self.assertEqual(cl.get("/v1/tubes/" + TA).status, 200)
        r = e.admin.delete("/v1/admin/tokens/" + tid)
        self.assertEqual((r.status, r.json), (200, {"id": tid, "revoked": True}), r.text)
        r = cl.get("/v1/tubes/" + TA)
        self.assertEqual((r.status, r.error_code), (401, "unauthorized"), r.text)
        self.assertEqual(e.admin.delete("/v1/admin/tokens/00000000-0000-4000-8000-000000000000").status, 404)
        # a token is stored only as its SHA-256
        self.assertEqual(e.db.count("tokens", "hash = '%s'" % secret), 0)
        self.assertEqual(e.db.count("tokens", "hash = '%s'" % hashlib.sha256(secret.encode()).hexdigest()), 1)
        self.assertNotIn(secret, e.db.dump())

    def cache_hits(self):
        text = self.env.daemon.client(None).get("/metrics").text
        m = re.search(r"^tubeloop_auth_cache_hits_total (\d+)$", text, re.M)
        self.assertIsNotNone(m, text)
        return int(m.group(1))

    def test_token_cache_hears_a_site_moved_elsewhere(self):
        """A site moved to another township behind the daemon's back (psql, as another daemon's
        registry write would): its collector's next tube is in the new township, not in the one
        the cached principal had (the sender's region places a tube)."""
        e, c = self.env, self.clock
        r = e.admin.post("/v1/admin/sites", {"sites": [{"code": "SMV", "name": "迁移采样点", "township": T.TOWN1}]})
        self.assertEqual(r.status, 200, r.text)
        cl = e.client("collector", "SMV")
        cl.send_ok([tube_open(c.at(30), "AZ-MV-0001", R)])
        before = self.cache_hits()
        cl.send_ok([tube_open(c.at(31), "AZ-MV-0002", R)])
        self.assertGreater(self.cache_hits(), before, "the second request's token came from the cache")
        e.db.psql("UPDATE sites SET township = '%s' WHERE code = 'SMV'" % T.TOWN2)
        time.sleep(0.2)  # (the notification's way; a cache that never heard of it keeps a minute)
        cl.send_ok([tube_open(c.at(32), "AZ-MV-0003", R)])
        self.assertEqual(e.db.scalar("SELECT string_agg(code || '=' || region, ',' ORDER BY code) FROM tubes"
                                     " WHERE code LIKE 'AZ-MV-%'"),
                         "AZ-MV-0001=%s,AZ-MV-0002=%s,AZ-MV-0003=%s" % (T.TOWN1, T.TOWN1, T.TOWN2))

    def test_token_cache_hears_a_revocation_made_elsewhere(self):
        """A token seen before is answered from the daemon's cache (no query), and a revocation
        committed by someone else (here psql, as another daemon would) reaches that cache through
        sql/038's NOTIFY: the token stops working without waiting for anything to expire."""
        e = self.env
        tid, secret = e.make_token("viewer", T.COUNTY)
        cl = e.daemon.client(secret)
        self.assertEqual(cl.get("/v1/tubes/" + TA).status, 200)

        before = self.cache_hits()
        self.assertEqual(cl.get("/v1/tubes/" + TA).status, 200)
        self.assertGreater(self.cache_hits(), before, "the second request's token came from the cache")
        e.db.psql("UPDATE tokens SET revoked_at = now() WHERE id = '%s'" % tid)
        # (the notification is on its way when psql returns; a cache that never heard of it
        # would answer 200 for a minute)
        deadline = time.monotonic() + 2
        r = cl.get("/v1/tubes/" + TA)
        while r.status == 200 and time.monotonic() < deadline:
            time.sleep(0.01)
            r = cl.get("/v1/tubes/" + TA)
        self.assertEqual((r.status, r.error_code), (401, "unauthorized"), r.text)

    def test_scope_must_exist(self):
        for role, scope in (("collector", "S77"), ("courier", "S1"), ("lab", "C1"), ("viewer", "230199"),
                            ("supervisor", "L1")):
            with self.subTest(role=role, scope=scope):
                before = T.fingerprint(self.env.db)
                r = self.env.admin.post("/v1/admin/tokens", {"role": role, "scope": scope})
                self.assertEqual((r.status, r.error_code), (400, "scope_unknown"), r.text)
                self.assertEqual(before, T.fingerprint(self.env.db))

    def test_viewer_of_a_site(self):
        """DESIGN §6: a viewer's scope is a region — county, township or site."""
        r = self.env.admin.post("/v1/admin/tokens", {"role": "viewer", "scope": "S1", "label": "site viewer"})
        self.assertEqual(r.status, 201, "POST /v1/admin/tokens {role: viewer, scope: S1} -> %s %s" % (r.status, r.text))
        v = self.env.daemon.client(r.json["token"])
        self.assertEqual(v.get("/v1/tubes/" + TA).status, 200)
        self.assertEqual(v.get("/v1/tubes/" + TB).status, 404)
        self.assertEqual(v.lookup(self.people[0]["id_number"]).status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
