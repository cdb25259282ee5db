#!/usr/bin/env python3
"""The API description (issue 8): GET /openapi.json against the daemon that serves it.

- The route table: `tubeloopd routes` prints the table the server is built from; every route
  in it is described and every described (method, path) is in it, and each answers over TLS
  through its handler (never the router's 404 or 405), so the listing is what is served.
- The served document is byte for byte lib/api/openapi.json (compiled in, no drift), public,
  application/json.
- Reality against the description: a round played through the API, then every operation
  called; each answer's status must be documented for its operation, its Content-Type one of
  the documented media types, its body valid against the documented schema (a small JSON
  Schema validator below; properties the description does not name fail too), its error
  code one the documented response lists, its documented headers present; request bodies
  that succeed must be valid against the documented request schema. Every operation must
  have had a documented success answer checked.
- The lint: Redocly CLI (scripts/lib.sh tl_openapi_lint, lib/api/redocly.yaml), offline with
  telemetry off, on the served document: no error and no warning; a broken copy must fail
  it (so the lint can fail). A missing linter is a failure, not a skip.
"""
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tubeloop_test as T  # noqa: E402

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
SOURCE = T.need_env("TUBELOOP_SOURCE_DIR")
DOC_FILE = os.path.join(SOURCE, "lib", "api", "openapi.json")
LINT_CONFIG = os.path.join(SOURCE, "lib", "api", "redocly.yaml")


def redocly_path():
    return os.environ.get("TUBELOOP_REDOCLY") or os.path.join(
        SOURCE, "var", "npm", "redocly", "node_modules", ".bin", "redocly")


# ---------------------------------------------------------------------------------------------
# A small JSON Schema (2020-12 subset) validator: exactly the keywords the description uses.
# An unknown keyword is an error here, so no constraint of the document is silently skipped.

ANNOTATIONS = {"description", "examples", "example", "default", "title", "discriminator", "format"}
FORMATS = {
    "date-time": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"),
    "date": re.compile(r"^\d{4}-\d\d-\d\d$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
}


class Validator:
    def __init__(self, doc):
        self.doc = doc

    def resolve(self, schema):
        while "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/"), ref
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
        return schema

    def errors(self, value, schema, strict=True):
        """Problems of value against schema as a list of strings. strict: an object property
        that the schema does not name is a problem (undocumented field)."""
        out = []
        self._check(value, schema, "$", strict, out)
        return out

    @staticmethod
    def _type_ok(value, t):
        if t == "null":
            return value is None
        if t == "boolean":
            return isinstance(value, bool)
        if t == "integer":
            return isinstance(value, int) and not isinstance(value, bool) or \
                (isinstance(value, float) and value.is_integer())
        if t == "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if t == "string":
            return isinstance(value, str)
        if t == "array":
            return isinstance(value, list)
        if t == "object":
            return isinstance(value, dict)
        raise AssertionError("unknown type " + t)

    def _names(self, schema):
        """Property names an object schema documents (through allOf / anyOf / oneOf), or None
        when it allows any (additionalProperties given)."""
        schema = self.resolve(schema)
        if "additionalProperties" in schema:
            return None
        names = set(schema.get("properties", {}))
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key, []):
                n = self._names(sub)
                if n is None:
                    return None
                names |= n
        return names

    def _check(self, v, s, at, strict, out):
        s = self.resolve(s)
        for k in s:
            if k not in ANNOTATIONS and k not in (
                    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
                    "oneOf", "anyOf", "allOf", "pattern", "minimum", "maximum", "minLength", "maxLength",
                    "minItems", "maxItems", "uniqueItems", "maxProperties", "propertyNames"):
                raise AssertionError("the validator does not know the keyword %r (at %s)" % (k, at))
        if "type" in s:
            types = s["type"] if isinstance(s["type"], list) else [s["type"]]
            if not any(self._type_ok(v, t) for t in types):
                out.append("%s: %r is not of type %s" % (at, v, "|".join(types)))
                return
        if "enum" in s and v not in s["enum"]:
            out.append("%s: %r is not one of %r" % (at, v, s["enum"]))
        if "const" in s and v != s["const"]:
            out.append("%s: %r is not %r" % (at, v, s["const"]))
        if isinstance(v, str):
            if "pattern" in s and not re.search(s["pattern"], v):
                out.append("%s: %r does not match %s" % (at, v, s["pattern"]))
            if "minLength" in s and len(v) < s["minLength"]:
                out.append("%s: shorter than %d" % (at, s["minLength"]))
            if "maxLength" in s and len(v) > s["maxLength"]:
                out.append("%s: longer than %d" % (at, s["maxLength"]))
            if s.get("format") in FORMATS and not FORMATS[s["format"]].match(v):
                out.append("%s: %r is not a %s" % (at, v, s["format"]))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if "minimum" in s and v < s["minimum"]:
                out.append("%s: %r < %r" % (at, v, s["minimum"]))
            if "maximum" in s and v > s["maximum"]:
                out.append("%s: %r > %r" % (at, v, s["maximum"]))
        if isinstance(v, list):
            if "minItems" in s and len(v) < s["minItems"]:
                out.append("%s: fewer than %d items" % (at, s["minItems"]))
            if "maxItems" in s and len(v) > s["maxItems"]:
                out.append("%s: more than %d items" % (at, s["maxItems"]))
            if s.get("uniqueItems") and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
                out.append("%s: items repeat" % at)
            if "items" in s:
                for i, x in enumerate(v):
                    self._check(x, s["items"], "%s[%d]" % (at, i), strict, out)
        if isinstance(v, dict):
            for r in s.get("required", []):
                if r not in v:
                    out.append("%s: required property %r is missing" % (at, r))
            props = s.get("properties", {})
            for k, x in v.items():
                if k in props:
                    self._check(x, props[k], at + "." + k, strict, out)
                elif isinstance(s.get("additionalProperties"), dict):
                    self._check(x, s["additionalProperties"], at + "." + k, strict, out)
                elif s.get("additionalProperties") is False:
                    out.append("%s: property %r is not allowed" % (at, k))
            if "propertyNames" in s:
                for k in v:
                    self._check(k, s["propertyNames"], at + "{" + k + "}", strict, out)
            if "maxProperties" in s and len(v) > s["maxProperties"]:
                out.append("%s: more than %d properties" % (at, s["maxProperties"]))
            if strict and ("properties" in s or "allOf" in s):
                names = self._names(s)
                if names is not None:
                    for k in v:
                        if k not in names:
                            out.append("%s: property %r is not in the description" % (at, k))
        for sub in s.get("allOf", []):
            self._check(v, sub, at, False, out)  # strictness: checked above over the union
        if "anyOf" in s or "oneOf" in s:
            branches = s.get("anyOf") or s.get("oneOf")
            results = []
            for sub in branches:
                e = []
                self._check(v, sub, at, strict, e)
                results.append(e)
            ok = sum(1 for e in results if not e)
            if ok == 0:
                best = min(results, key=len)
                out.append("%s: matches no alternative (closest: %s)" % (at, "; ".join(best[:3])))
            elif "oneOf" in s and ok > 1:
                out.append("%s: matches %d alternatives of a oneOf" % (at, ok))


class ValidatorSelfTest(unittest.TestCase):
    """The validator must be able to fail (a test that cannot fail is a defect)."""

    def test_validator_catches(self):
        doc = {"components": {"schemas": {"A": {"type": "object", "properties": {"n": {"type": "integer"},
                                                                               "t": {"type": "string", "format": "date-time"}},
                                                "required": ["n"]}}}}
        v = Validator(doc)
        a = {"$ref": "#/components/schemas/A"}
        self.assertEqual(v.errors({"n": 1, "t": "2021-10-08T09:12:03+08:00"}, a), [])
        self.assertTrue(v.errors({"n": "1"}, a))
        self.assertTrue(v.errors({}, a))
        self.assertTrue(v.errors({"n": 1, "extra": 2}, a))          # undocumented
        self.assertEqual(v.errors({"n": 1, "extra": 2}, a, strict=False), [])
        self.assertTrue(v.errors({"n": 1, "t": "yesterday"}, a))
        self.assertTrue(v.errors(True, {"type": "integer"}))
        self.assertTrue(v.errors(3, {"oneOf": [{"type": "integer"}, {"type": "number"}]}))


# ---------------------------------------------------------------------------------------------


def routes_of_daemon():
    _, out, _ = T.run([T.need_env("TUBELOOPD"), "routes"])
    routes = set()
    for line in out.splitlines():
        m = re.fullmatch(r"([A-Z]+) (/\S*)", line)
        if not m:
            raise AssertionError("tubeloopd routes: unexpected line %r" % line)
        routes.add((m.group(1), m.group(2)))
    return routes


def routes_of_doc(doc):
    return {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in METHODS}


def error_codes_listed(description):
    """The codes a response's description lists ("Error codes: `a`, `b`.")."""
    m = re.search(r"Error codes: (.*)", description or "")
    return set(re.findall(r"`([a-z_]+)`", m.group(1))) if m else set()


class OpenApiTest(T.EnvCase):
    label = "openapi"

    @classmethod
    def prepare(cls):
        cls.raw = None
        cls.doc = None
        with open(DOC_FILE, "rb") as f:
            cls.source_bytes = f.read()

    # -- plumbing ------------------------------------------------------------------------------

    def fetch(self, method, path, token=None, body=None, raw=None, headers=None):
        """(status, headers as {lower name: value}, body bytes) on a fresh TLS connection."""
        d = self.env.daemon
        conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=30, context=d.ssl_context())
        try:
            h = {"Host": "localhost"}
            if token:
                h["Authorization"] = "Bearer " + token
            data = None
            if raw is not None:
                data = raw
            elif body is not None:
                data = json.dumps(body, ensure_ascii=False).encode()
            if data is not None:
                h["Content-Type"] = "application/json"
            h.update(headers or {})
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def served_doc(self):
        if OpenApiTest.doc is None:
            status, headers, data = self.fetch("GET", "/openapi.json")
            self.assertEqual(status, 200)
            OpenApiTest.raw = data
            OpenApiTest.doc = json.loads(data)
            OpenApiTest.headers = headers
        return OpenApiTest.doc

    # -- the route table -----------------------------------------------------------------------

    def test_1_routes_match_the_description(self):
        doc = self.served_doc()
        served = routes_of_daemon()
        self.assertIn(("GET", "/openapi.json"), served)
        self.assertGreater(len(served), 20, served)
        described = routes_of_doc(doc)
        undocumented = sorted(served - described)
        phantom = sorted(described - served)
        self.assertEqual(undocumented, [], "routes the daemon serves that openapi.json does not describe")
        self.assertEqual(phantom, [], "operations openapi.json describes that the daemon does not serve")
        # every listed route is answered by its handler, not by the router's 404/405: what
        # `tubeloopd routes` prints is what the server serves
        for method, pattern in sorted(served):
            path = re.sub(r"\{[^}]+\}", "no-such-thing-1", pattern)
            status, _, data = self.fetch(method, path)
            if status == 405:
                self.fail("%s %s: 405 from the router" % (method, path))
            if status == 404:
                self.assertNotEqual(json.loads(data)["error"]["message"], "There is no such resource.",
                                    "%s %s: the router does not know it" % (method, path))
        # and a path nobody serves is the router's 404 (the probe above can tell)
        status, _, data = self.fetch("GET", "/v1/no-such-call")
        self.assertEqual((status, json.loads(data)["error"]["message"]), (404, "There is no such resource."))

    def test_2_served_document(self):
        doc = self.served_doc()
        self.assertEqual(OpenApiTest.headers.get("content-type"), "application/json")
        self.assertEqual(OpenApiTest.raw, self.source_bytes,
                         "the served document is not lib/api/openapi.json: rebuild (it is compiled in)")
        self.assertTrue(doc["openapi"].startswith("3.1."), doc["openapi"])
        # public: no token needed, and a token changes nothing
        status, _, data = self.fetch("GET", "/openapi.json", token="tl_" + "0" * 64)
        self.assertEqual((status, data), (200, self.source_bytes))
        # every path parameter of a pattern is declared, every operation has an id
        for path, item in doc["paths"].items():
            names = set(re.findall(r"\{([^}]+)\}", path))
            for m, o in item.items():
                if m not in METHODS:
                    continue
                declared = {p["name"] for p in item.get("parameters", []) + o.get("parameters", []) if p["in"] == "path"}
                self.assertEqual(declared, names, "%s %s" % (m, path))
                self.assertTrue(o.get("operationId"), "%s %s" % (m, path))

    # -- reality against the description --------------------------------------------------------

    def check(self, method, template, token=None, values=None, query=None, body=None, raw=None,
              headers=None, expect=None, strict=True, valid_request=True):
        """Calls the operation and checks the answer against the description; returns
        (status, parsed JSON or None, headers). valid_request=False: the body is meant not to
        fit the documented request schema (events refused one by one inside a 200)."""
        doc = self.served_doc()
        v = Validator(doc)
        path = template
        for k, val in (values or {}).items():
            path = path.replace("{%s}" % k, urllib.parse.quote(val, safe=""))
        if query:
            path += "?" + urllib.parse.urlencode(query)
        status, hdrs, data = self.fetch(method, path, token=token, body=body, raw=raw, headers=headers)
        what = "%s %s -> %d %s" % (method, path, status, data[:300].decode("utf-8", "replace"))
        if expect is not None:
            self.assertEqual(status, expect, what)
        op = doc["paths"][template][method.lower()]
        self.assertIn(str(status), op["responses"], "undocumented status: " + what)
        resp = v.resolve(op["responses"][str(status)])
        ctype = hdrs.get("content-type", "")
        content = resp.get("content", {})
        self.assertIn(ctype, content, "Content-Type %r is not documented: %s" % (ctype, what))
        parsed = None
        media = ctype.split(";")[0].strip()
        schema = content[ctype].get("schema", {})
        if media == "application/json" or media.endswith("+json"):  # also FHIR's and JSON-LD's
            parsed = json.loads(data)
            problems = v.errors(parsed, schema, strict=strict)
            self.assertEqual(problems, [], "the answer does not match the description: " + what)
            if "error" in parsed and status >= 400:
                listed = error_codes_listed(resp.get("description"))
                self.assertIn(parsed["error"]["code"], listed,
                              "error code not listed in the description of %d: %s" % (status, what))
        elif "charset=utf-8" in ctype and v.resolve(schema).get("type") == "string":
            # a text answer (HL7 v2, metrics, pages): its text against the documented string
            problems = v.errors(data.decode("utf-8"), schema)
            self.assertEqual(problems, [], "the text answer does not match the description: " + what)
        for name, h in resp.get("headers", {}).items():
            h = v.resolve(h)
            value = hdrs.get(name.lower())
            if value is None:
                # a header the description says is always sent must be there; one it marks
                # optional (Link while more remains) only checked when sent
                self.assertFalse(h.get("required"), "documented header %s missing: %s" % (name, what))
                continue
            hs = v.resolve(h.get("schema", {}))
            if hs.get("type") == "integer" and re.fullmatch(r"-?[0-9]+", value):
                value = int(value)
            self.assertEqual(v.errors(value, hs), [], "header %s: %r does not match the description: %s" % (name, value, what))
        if 200 <= status < 300 and valid_request and body is not None and "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            self.assertEqual(v.errors(body, schema, strict=False), [],
                             "a body the daemon accepted is not valid under the description: " + what)
        if 200 <= status < 300:
            self.covered.add((method.upper(), template))
        return status, parsed, hdrs

    def test_3_answers_match_the_description(self):
        env = self.env
        self.covered = set()
        rng = random.Random(8)
        clock = T.Clock()
        admin = env.admin_secret
        tok = {}
        for role, scope in (("collector", "S1"), ("courier", "C1"), ("lab", "L1"), ("viewer", T.COUNTY),
                            ("supervisor", T.COUNTY), ("viewer", "S1")):
            tok[(role, scope)] = env.make_token(role, scope)[1]
        col, cou, lab = tok[("collector", "S1")], tok[("courier", "C1")], tok[("lab", "L1")]
        viewer, sup, site_viewer = tok[("viewer", T.COUNTY)], tok[("supervisor", T.COUNTY)], tok[("viewer", "S1")]

        # operations: public calls
        self.check("GET", "/healthz", expect=200)
        self.check("GET", "/readyz", expect=200)
        self.check("GET", "/metrics", expect=200)
        self.check("GET", "/openapi.json", expect=200, strict=False)  # its own schema names three keys
        self.check("GET", "/", expect=200)
        self.check("GET", "/static/{name}", values={"name": "app.js"}, expect=200)
        self.check("GET", "/static/{name}", values={"name": "no-such-file.js"}, expect=404)
        vendor = sorted(os.listdir(os.path.join(SOURCE, "clients", "web", "vendor"))
                        if os.path.isdir(os.path.join(SOURCE, "clients", "web", "vendor")) else [])
        self.assertTrue(vendor, "clients/web/vendor is empty: run scripts/test.sh (tl_web installs uPlot)")
        self.check("GET", "/static/vendor/{name}", values={"name": vendor[0]}, expect=200)
        self.check("GET", "/static/vendor/{name}", values={"name": "no-such-file.css"}, expect=404)

        # the registry and rounds
        self.check("POST", "/v1/admin/regions", admin, body={"regions": T.REGIONS}, expect=200)
        self.check("POST", "/v1/admin/sites", admin, body={"sites": T.SITES}, expect=200)
        self.check("POST", "/v1/admin/labs", admin, body={"labs": T.LABS}, expect=200)
        self.check("POST", "/v1/admin/couriers", admin, body={"couriers": T.COURIERS}, expect=200)
        self.check("POST", "/v1/admin/sites", admin, body={"sites": [{"code": "S8", "name": "x", "township": "230126199"}]},
                   expect=400)  # reference_unknown
        rnd = {"code": "OA1", "name": "轮次 OA1", "region": T.COUNTY, "day": clock.day(), "pool_size": 10}
        self.check("POST", "/v1/admin/rounds", admin, body=rnd, expect=201)
        self.check("POST", "/v1/admin/rounds", admin, body=rnd, expect=409)
        self.check("POST", "/v1/admin/rounds", sup, body=dict(rnd, code="OA2", region=T.OTHER_COUNTY), expect=403)
        self.check("POST", "/v1/admin/rounds", sup, body=dict(rnd, code="OA3"), expect=201)
        self.check("POST", "/v1/admin/rounds/{code}/close", sup, values={"code": "OA3"}, expect=200)
        self.check("POST", "/v1/admin/rounds/{code}/close", admin, values={"code": "NOPE"}, expect=404)

        # tokens
        _, made, _ = self.check("POST", "/v1/admin/tokens", admin, body={"role": "viewer", "scope": T.TOWN1, "label": "oa"},
                                expect=201)
        self.check("POST", "/v1/admin/tokens", admin, body={"role": "viewer"}, expect=400)  # invalid_scope
        self.check("GET", "/v1/admin/tokens", admin, expect=200)
        self.check("DELETE", "/v1/admin/tokens/{id}", admin, values={"id": made["id"]}, expect=200)
        self.check("DELETE", "/v1/admin/tokens/{id}", admin, values={"id": str(uuid.uuid4())}, expect=404)
        self.check("GET", "/v1/admin/tokens", viewer, expect=403)
        self.check("GET", "/v1/whoami", made["token"], expect=401)  # revoked

        # a round through the API: a pooled positive (follow-ups), seal count mismatches
        # of a tube and a box (anomalies), a box on the road (arrivals)
        people = [T.person(T.resident_id(rng), T.person_name(rng), T.phone(rng)) for _ in range(3)]
        t1, t2, b1, b2 = "OA-T-0001", "OA-T-0002", "OA-B-0001", "OA-B-0002"
        evs = [T.tube_open(clock.at(0), t1, "OA1"), T.sample_add(clock.at(1), t1, people[0]),
               T.sample_add(clock.at(2), t1, people[1]), T.tube_seal(clock.at(3), t1, count=3),
               T.box_pack(clock.at(4), b1, [t1]), T.box_seal(clock.at(5), b1, "L1", count=1),
               T.tube_open(clock.at(6), t2, "OA1", capacity=5), T.sample_add(clock.at(7), t2, people[2]),
               T.tube_seal(clock.at(8), t2), T.box_pack(clock.at(9), b2, [t2]), T.box_seal(clock.at(10), b2, "L1", count=2)]
        _, res, _ = self.check("POST", "/v1/events", col, body={"events": evs}, expect=200)
        self.assertEqual([r["status"] for r in res["results"]], ["accepted"] * len(evs), res)
        _, res, _ = self.check("POST", "/v1/events", col, body={"events": evs[:1] + [T.tube_open(clock.at(0), t1, "OA1")]},
                               expect=200)
        self.assertEqual([(r["status"], r.get("code")) for r in res["results"]],
                         [("duplicate", None), ("rejected", "tube_exists")])
        _, res, _ = self.check("POST", "/v1/events", col, body={"events": [{"id": "not-a-uuid", "type": "tube.open"}, 7]},
                               expect=200, valid_request=False)
        self.assertEqual([r["status"] for r in res["results"]], ["rejected", "rejected"])
        self.check("POST", "/v1/events", cou, body={"events": [T.box_pickup(clock.at(20), b1), T.box_pickup(clock.at(21), b2)]},
                   expect=200)
        self.check("POST", "/v1/events", lab, body={"events": [
            T.box_deliver(clock.at(50), b1), T.box_receive(clock.at(51), b1, [t1]),
            T.tube_result(clock.at(90), t1, "positive", ct={"ORF1ab": 28.5, "N": 30.1})]}, expect=200)
        self.check("POST", "/v1/events", viewer, body={"events": evs[:1]}, expect=403)
        self.check("POST", "/v1/events", col, raw=b'{"events": [', expect=400)
        self.check("POST", "/v1/events", col, body={"events": [T.tube_seal(clock.at(1), t1)] * 1001}, expect=413)
        self.check("POST", "/v1/events", None, body={"events": evs[:1]}, expect=401)
        self.check("POST", "/v1/events", "tl_" + "1" * 64, body={"events": evs[:1]}, expect=401)

        # custody
        self.check("GET", "/v1/tubes/{code}", col, values={"code": t1}, expect=200)
        self.check("GET", "/v1/tubes/{code}", viewer, values={"code": t1}, expect=200)
        self.check("GET", "/v1/tubes/{code}", lab, values={"code": t2}, expect=404)  # not received by L1
        self.check("GET", "/v1/tubes/{code}", cou, values={"code": t1}, expect=403)
        self.check("GET", "/v1/tubes/{code}", viewer, values={"code": "NOSUCHTUBE"}, expect=404)
        self.check("GET", "/v1/boxes/{code}", cou, values={"code": b1}, expect=200)
        self.check("GET", "/v1/boxes/{code}", lab, values={"code": b1}, expect=200)
        self.check("POST", "/v1/persons/lookup", viewer, body={"id_type": "resident_id", "id_number": people[0]["id_number"]},
                   expect=200)
        self.check("POST", "/v1/persons/lookup", viewer, body={"id_type": "resident_id", "id_number": T.bad_check(people[0]["id_number"])},
                   expect=400)
        self.check("POST", "/v1/persons/lookup", viewer, body={"id_type": "passport", "id_number": "E99999999"}, expect=404)

        # anomalies and follow-ups
        # state=open: the overdue sweep may already have opened and auto-resolved b1's
        # overdue_transport (its events lie hours back), and the newest comes first
        _, page, _ = self.check("GET", "/v1/anomalies", viewer, query={"limit": 1, "state": "open"}, expect=200)
        self.assertIsNotNone(page["next_cursor"], "two anomalies are open, one per page: %s" % page)
        _, page2, _ = self.check("GET", "/v1/anomalies", viewer, query={"limit": 1, "state": "open", "cursor": page["next_cursor"]},
                                 expect=200)
        self.check("GET", "/v1/anomalies", viewer, query={"state": "nonsense"}, expect=400)
        self.check("GET", "/v1/anomalies", viewer, query={"region": T.OTHER_COUNTY}, expect=403)
        self.check("GET", "/v1/anomalies", viewer, query={"token": "x"}, expect=400)  # token_in_url
        aid = page["anomalies"][0]["id"]
        self.check("POST", "/v1/anomalies/{id}/ack", sup, values={"id": aid}, body={"owner": "张三"}, expect=200)
        self.check("POST", "/v1/anomalies/{id}/ack", viewer, values={"id": aid}, body={"owner": "张三"}, expect=403)
        self.check("POST", "/v1/anomalies/{id}/resolve", sup, values={"id": aid}, body={"note": "已核实"}, expect=200)
        self.check("POST", "/v1/anomalies/{id}/resolve", sup, values={"id": aid}, body={"note": "again"}, expect=409)
        self.check("POST", "/v1/anomalies/{id}/ack", sup, values={"id": str(uuid.uuid4())}, body={"owner": "x"}, expect=404)
        self.check("POST", "/v1/anomalies/{id}/ack", sup, values={"id": aid}, body={"owner": "x", "more": 1}, expect=400)
        _, fu, _ = self.check("GET", "/v1/followups", viewer, expect=200)
        self.assertEqual(len(fu["followups"]), 2, "a pooled positive calls back both persons: %s" % fu)
        self.check("GET", "/v1/followups", viewer, query={"state": "all", "region": T.TOWN1}, expect=200)

        # the officials' view
        for who in (admin, col, cou, lab, viewer, site_viewer):
            self.check("GET", "/v1/whoami", who, expect=200)
        for path in ("/v1/stats", "/v1/stats/charts", "/v1/ledger"):
            self.check("GET", path, viewer, query={"region": T.COUNTY, "day": clock.day()}, expect=200)
            self.check("GET", path, viewer, query={"region": T.TOWN1, "round": "OA1"}, expect=200)
            self.check("GET", path, site_viewer, query={"region": "S1"}, expect=200)
            self.check("GET", path, viewer, query={"day": clock.day()}, expect=400)  # missing_field
            self.check("GET", path, viewer, query={"region": T.COUNTY, "day": clock.day(), "round": "OA1"}, expect=400)
            self.check("GET", path, viewer, query={"region": T.OTHER_COUNTY}, expect=403)
            self.check("GET", path, site_viewer, query={"region": "S2"}, expect=404)
            self.check("GET", path, col, query={"region": T.COUNTY}, expect=403)
        self.check("GET", "/v1/stats", viewer, query={"region": "230126999"}, expect=404)  # unknown region
        _, arr, _ = self.check("GET", "/v1/labs/{code}/arrivals", lab, values={"code": "L1"}, expect=200)
        self.assertEqual([a["box"] for a in arr["arrivals"]], [b2], arr)
        self.check("GET", "/v1/labs/{code}/arrivals", viewer, values={"code": "L1"}, expect=200)
        self.check("GET", "/v1/labs/{code}/arrivals", lab, values={"code": "L2"}, expect=404)
        self.check_stream(viewer, clock)
        self.check("GET", "/v1/stream", viewer, query={"region": "??"}, expect=400)
        self.check("GET", "/v1/stream", viewer, query={"region": T.OTHER_COUNTY}, expect=403)

        self.check_exports(clock, viewer, sup, site_viewer, col, t1)

        missing = sorted(routes_of_doc(self.served_doc()) - self.covered)
        self.assertEqual(missing, [], "operations whose success answer was never checked")

    def check_exports(self, clock, viewer, sup, site_viewer, col, resulted):
        """GET /v1/export/{fhir,hl7v2,epcis} (issue 8) on the round above: a page of each in its
        own media type, the FHIR Bundle and the EPCIS document against their schemas, the HL7
        batch as text, a next page through the documented Link header, and the refusals."""
        q = {"region": T.COUNTY, "day": clock.day()}
        _, bundle, h = self.check("GET", "/v1/export/fhir", viewer, query=q, expect=200)
        self.assertEqual(h["content-type"], "application/fhir+json; fhirVersion=4.0")
        self.assertNotIn("link", h, "one resulted tube: one page")
        reports = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
        self.assertEqual([r["identifier"][0]["value"] for r in reports], [resulted], bundle)
        self.check("GET", "/v1/export/fhir", site_viewer, query={"region": "S1", "round": "OA1", "limit": 500},
                   expect=200)
        _, _, h = self.check("GET", "/v1/export/hl7v2", sup, query=dict(q, limit=1), expect=200)
        self.assertEqual(h["content-type"], "application/hl7-v2+er7; charset=utf-8")
        # the EPCIS events in pages of two: the Link header leads to the next page
        _, page, h = self.check("GET", "/v1/export/epcis", viewer, query=dict(q, limit=2), expect=200)
        self.assertEqual(h["content-type"], "application/ld+json")
        self.assertEqual(len(page["epcisBody"]["eventList"]), 2)
        m = re.fullmatch(r'<(/v1/export/epcis)\?([^>]+)>; rel="next"', h.get("link", ""))
        self.assertTrue(m, "more than two custody events: a Link to the next page: %r" % h.get("link"))
        _, page2, _ = self.check("GET", "/v1/export/epcis", viewer, query=dict(urllib.parse.parse_qsl(m.group(2))),
                                 expect=200)
        self.assertNotEqual(page2["epcisBody"]["eventList"][0]["eventID"], page["epcisBody"]["eventList"][0]["eventID"])
        for path in ("/v1/export/fhir", "/v1/export/hl7v2", "/v1/export/epcis"):
            self.check("GET", path, viewer, query={"day": clock.day()}, expect=400)  # missing_field
            self.check("GET", path, viewer, query=dict(q, limit=0), expect=400)
            self.check("GET", path, viewer, query=dict(q, cursor="nonsense"), expect=400)
            self.check("GET", path, viewer, query=dict(q, round="OA1"), expect=400)
            self.check("GET", path, None, query=q, expect=401)
            self.check("GET", path, col, query={"region": "S1"}, expect=403)  # forbidden
            self.check("GET", path, viewer, query={"region": T.OTHER_COUNTY}, expect=403)  # out_of_scope
            self.check("GET", path, site_viewer, query={"region": "S2"}, expect=404)
            self.check("GET", path, viewer, query={"region": "230126999"}, expect=404)  # unknown region

    def check_stream(self, token, clock):
        """GET /v1/stream: 200 text/event-stream, `retry:` then a stats event whose data is the
        documented Stats schema."""
        doc = self.served_doc()
        op = doc["paths"]["/v1/stream"]["get"]
        d = self.env.daemon
        conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=15, context=d.ssl_context())
        try:
            conn.request("GET", "/v1/stream?region=%s&day=%s" % (T.COUNTY, clock.day()),
                         headers={"Host": "localhost", "Authorization": "Bearer " + token})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            ctype = r.getheader("Content-Type")
            self.assertIn(ctype.split(";")[0], [c.split(";")[0] for c in op["responses"]["200"]["content"]])
            buf, blocks, deadline = b"", [], time.monotonic() + 10
            while time.monotonic() < deadline and not any(b.startswith(b"id: ") for b in blocks):
                chunk = r.fp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    blocks.append(block)
        finally:
            conn.close()
        self.assertEqual(blocks[0], b"retry: 3000", blocks)
        event = [b for b in blocks if b.startswith(b"id: ")]
        self.assertTrue(event, "no stats event within 10 s: %r" % blocks)
        lines = event[0].decode().split("\n")
        self.assertEqual(lines[1], "event: stats", lines)
        data = json.loads(lines[2][len("data: "):])
        problems = Validator(doc).errors(data, {"$ref": "#/components/schemas/Stats"})
        self.assertEqual(problems, [], "a streamed snapshot does not match the Stats schema")
        self.covered.add(("GET", "/v1/stream"))

    # -- the lint ------------------------------------------------------------------------------

    def lint(self, path):
        """Redocly's JSON report of path: {"totals": {"errors", "warnings", ...}, "problems": [...]}."""
        exe = redocly_path()
        if not os.access(exe, os.X_OK):
            self.fail("the OpenAPI linter is not installed (%s): run scripts/test.sh, or "
                      "`source scripts/lib.sh && tl_openapi_lint`" % exe)
        env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
                   REDOCLY_SUPPRESS_NOTIFICATIONS="true", NO_COLOR="1")
        p = subprocess.run([exe, "lint", "--config", LINT_CONFIG, "--format", "json", path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        start = out.find("{")
        try:
            report = json.loads(out[start:])
        except ValueError:
            self.fail("redocly lint printed no JSON report (exit %d):\n%s\n%s" % (
                p.returncode, out[-3000:], p.stderr.decode("utf-8", "replace")[-3000:]))
        return p.returncode, report

    def test_4_lint(self):
        doc = self.served_doc()
        with tempfile.TemporaryDirectory(dir=T.need_env("TUBELOOP_TEST_TMP")) as tmp:
            served = os.path.join(tmp, "openapi.json")
            with open(served, "wb") as f:
                f.write(OpenApiTest.raw)
            rc, report = self.lint(served)
            problems = ["%s %s: %s" % (x.get("severity"), x.get("ruleId"), x.get("message")) for x in report["problems"]]
            self.assertEqual(report["totals"]["errors"], 0, "\n".join(problems))
            self.assertEqual(report["totals"]["warnings"], 0, "\n".join(problems))
            self.assertEqual(rc, 0)
            # negative control: a path parameter left undeclared and an operation without
            # responses must fail the lint
            broken = json.loads(json.dumps(doc))
            broken["paths"]["/v1/tubes/{code}"].pop("parameters")
            broken["paths"]["/v1/whoami"]["get"].pop("responses")
            bad = os.path.join(tmp, "broken.json")
            with open(bad, "w") as f:
                json.dump(broken, f)
            rc, report = self.lint(bad)
            self.assertGreaterEqual(report["totals"]["errors"], 1, report["totals"])
            self.assertNotEqual(rc, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
