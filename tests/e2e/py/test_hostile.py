#!/usr/bin/env python3
"""The hostile input catalogue (issue 7): malformed and abusive requests — HTTP smuggling
shapes, oversize parts, deep JSON, huge arrays, NUL and invalid UTF-8, duplicate and
case-variant keys, unknown and server-owned fields, bad ID numbers and barcodes, future times,
out-of-scope objects, tokens in the query string. Each must get its documented 4xx status and
code, store nothing, and leave the daemon serving other clients. The table printed at the end
is docs/RELIABILITY.md's catalogue."""
import http.client
import json
import os
import random
import socket
import ssl
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tubeloop_test as T  # noqa: E402

CASES = []  # (name, kind, request, expected status, expected code)


def raw(name, data, status, code):
    CASES.append((name, "raw", data, status, code))


def ev(name, events, status, code, role="collector"):
    """An events body; status 200 with code means every event is rejected with that code."""
    CASES.append((name, "events", (role, events), status, code))


def api(name, method, path, body, status, code, role="collector", headers=None):
    CASES.append((name, "api", (method, path, body, role, headers), status, code))


H = b"Host: localhost\r\n"
# --- HTTP framing and smuggling shapes --------------------------------------------------------
raw("CL and TE together", b"POST /v1/events HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request")
raw("duplicate Content-Length", b"POST /v1/events HTTP/1.1\r\n" + H + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "bad_request")
raw("Content-Length not a number", b"POST /v1/events HTTP/1.1\r\n" + H + b"Content-Length: 1x\r\n\r\n{", 400, "bad_request")
raw("negative Content-Length", b"POST /v1/events HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400, "bad_request")
raw("TE chunked not last", b"POST /v1/events HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400, "bad_request")
raw("chunk size overflow", b"POST /v1/events HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", 400, "bad_request")
raw("chunk size not hex", b"POST /v1/events HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_request")
raw("bare CR in a header", b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: 1\rX-B: 2\r\n\r\n", 400, "bad_request")
raw("bare LF line ends", b"GET /healthz HTTP/1.1\nHost: localhost\n\n", 400, "bad_request")
raw("space before the colon", b"GET /healthz HTTP/1.1\r\nHost : localhost\r\n\r\n", 400, "bad_request")
raw("obsolete line folding", b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: 1\r\n 2\r\n\r\n", 400, "bad_request")
raw("NUL in a header value", b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400, "bad_request")
raw("NUL in the target", b"GET /heal\x00thz HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request")
raw("unknown method", b"BREW /healthz HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request")
raw("lower-case method", b"get /healthz HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request")
raw("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad_request")
raw("HTTP/1.2", b"GET /healthz HTTP/1.2\r\n" + H + b"\r\n", 400, "bad_request")
raw("protocol upgrade", b"GET /healthz HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400, "upgrade_unsupported")
raw("absolute-form target", b"GET https://localhost/healthz HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request")
raw("asterisk target", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request")
raw("request target over 2 KiB", b"GET /" + b"a" * 2100 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, "uri_too_long")
raw("one header over 4 KiB", b"GET /healthz HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 5000 + b"\r\n\r\n", 431, "header_too_large")
raw("49 headers", b"GET /healthz HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(48)) + b"\r\n", 431, "too_many_headers")
raw("headers over 16 KiB", b"GET /healthz HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 3500) for i in range(5)) + b"\r\n", 431, "headers_too_large")
raw("Content-Length of 2 MiB", b"POST /v1/events HTTP/1.1\r\n" + H + b"Content-Length: 2097152\r\n\r\n", 413, "body_too_large")
raw("chunked body over 1 MiB", b"POST /v1/events HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"100000\r\n" + b"a" * 0x100000 + b"\r\n10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", 413, "body_too_large")
raw("unknown path", b"GET /etc/passwd HTTP/1.1\r\n" + H + b"\r\n", 404, "not_found")
raw("path traversal to static", b"GET /static/..%2f..%2fetc%2fpasswd HTTP/1.1\r\n" + H + b"\r\n", 404, "not_found")
raw("wrong method", b"DELETE /v1/events HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed")
# --- authentication ---------------------------------------------------------------------------
api("no token", "GET", "/v1/anomalies", None, 401, "unauthorized", role=None)
api("garbage token", "GET", "/v1/anomalies", None, 401, "unauthorized", role="garbage")
api("well-formed unknown token", "GET", "/v1/anomalies", None, 401, "unauthorized", role="unknown")
api("Basic auth", "GET", "/v1/anomalies", None, 401, "unauthorized", role=None, headers={"Authorization": "Basic dXNlcjpwYXNz"})
api("token in the query string", "GET", "/v1/anomalies?token=tl_abc", None, 400, "token_in_url", role="viewer")
api("access_token in the query string", "GET", "/v1/stats?region=230126&access_token=x", None, 400, "token_in_url", role="viewer")
api("viewer posting events", "POST", "/v1/events", {"events": []}, 403, "forbidden", role="viewer")
api("collector calling admin", "POST", "/v1/admin/tokens", {"role": "admin"}, 403, "forbidden")
api("region outside the scope", "GET", "/v1/stats?region=230127&day=2021-10-08", None, 403, "out_of_scope", role="viewer")
api("tube of another site", "GET", "/v1/tubes/HOSTILE-T1", None, 404, "not_found", role="collector2")
api("person lookup by GET", "GET", "/v1/persons/lookup", None, 405, "method_not_allowed", role="viewer")
api("person lookup, bad check digit", "POST", "/v1/persons/lookup", {"id_type": "resident_id", "id_number": "110105194912310021"}, 400, "invalid_person", role="viewer")
# --- JSON as a whole --------------------------------------------------------------------------
api("not JSON", "POST", "/v1/events", b"events: []", 400, "invalid_json")
api("JSON array at the root", "POST", "/v1/events", b"[]", 400, "invalid_json")
api("trailing bytes", "POST", "/v1/events", b'{"events":[]} x', 400, "invalid_json")
api("NUL byte in the body", "POST", "/v1/events", b'{"events":[{"id":"a\x00"}]}', 400, "invalid_json")
api("empty body", "POST", "/v1/events", b"", 400, "invalid_json")
api("deep JSON", "POST", "/v1/events", b'{"events":' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "too_deep")
api("duplicate key", "POST", "/v1/events", b'{"events":[],"events":[]}', 400, "duplicate_key")
api("case-variant key", "POST", "/v1/events", {"Events": []}, 400, "unknown_field")
api("events not a list", "POST", "/v1/events", {"events": {}}, 400, "invalid_field")
api("no events", "POST", "/v1/events", {"events": []}, 400, "invalid_field")
api("1001 events", "POST", "/v1/events", {"events": [{"id": "x"}] * 1001}, 413, "too_many_events")
api("huge array in a registry call", "POST", "/v1/admin/regions", {"regions": [1] * 60000}, 400, "invalid_field", role="admin")
# --- events, one by one -----------------------------------------------------------------------
AT = None  # filled at run time


def good_open(**over):
    e = {"id": T.eid(), "type": "tube.open", "at": "AT", "tube": "HOSTILE-T2", "round": "RH"}
    e.update(over)
    return e


ev("unknown field", [good_open(colour="red")], 200, "unknown_field")
ev("server-owned field sender", [good_open(sender="S9")], 200, "unknown_field")
ev("server-owned field sender_role", [good_open(sender_role="lab")], 200, "unknown_field")
ev("server-owned field status", [good_open(status="accepted")], 200, "unknown_field")
ev("case-variant field", [good_open(Tube="X")], 200, "unknown_field")
ev("duplicate field inside an event", None, 400, "duplicate_key")  # built as raw text below
ev("id not a UUID", [good_open(id="1234")], 200, "invalid_id")
ev("unknown type", [good_open(type="tube.destroy")], 200, "invalid_type")
ev("time without offset", [good_open(at="2021-10-08T09:00:00")], 200, "invalid_time")
ev("impossible date", [good_open(at="2021-02-30T09:00:00+08:00")], 200, "invalid_time")
ev("time an hour ahead", [good_open(at="FUTURE")], 200, "future_time")
ev("barcode too short", [good_open(tube="T1")], 200, "invalid_barcode")
ev("barcode with a slash", [good_open(tube="T0001/../x")], 200, "invalid_barcode")
ev("barcode of 33 characters", [good_open(tube="T" * 33)], 200, "invalid_barcode")
ev("barcode as a number", [good_open(tube=123456)], 200, "invalid_field")
ev("invalid UTF-8 smuggled as latin-1 in a barcode", [good_open(tube="TÃ©0001")], 200, "invalid_barcode")
ev("capacity 7", [good_open(capacity=7)], 200, "invalid_capacity")
ev("capacity as a string", [good_open(capacity="10")], 200, "invalid_field")
ev("round code with a space", [good_open(round="R H")], 200, "invalid_code")
ev("bad resident-ID check digit",
   [{"id": T.eid(), "type": "sample.add", "at": "AT", "tube": "HOSTILE-T3", "person": {"id_type": "resident_id", "id_number": "110105194912310021"}}],
   200, "invalid_person")
ev("unknown id_type",
   [{"id": T.eid(), "type": "sample.add", "at": "AT", "tube": "HOSTILE-T3", "person": {"id_type": "card", "id_number": "12345678"}}],
   200, "invalid_person")
ev("person with an extra field",
   [{"id": T.eid(), "type": "sample.add", "at": "AT", "tube": "HOSTILE-T3", "person": {"id_type": "passport", "id_number": "E1234567", "hmac": "x"}}],
   200, "invalid_person")
ev("name with a control character",
   [{"id": T.eid(), "type": "sample.add", "at": "AT", "tube": "HOSTILE-T3", "person": {"id_type": "passport", "id_number": "E1234567", "name": "a\u0007b"}}],
   200, "invalid_person")
ev("negative count", [{"id": T.eid(), "type": "tube.seal", "at": "AT", "tube": "HOSTILE-T3", "count": -1}], 200, "invalid_count")
ev("600 tubes in one pack", [{"id": T.eid(), "type": "box.pack", "at": "AT", "box": "HOSTILE-B1", "tubes": ["T%05d" % i for i in range(600)]}], 200, "invalid_field")
ev("a tube twice in one pack", [{"id": T.eid(), "type": "box.pack", "at": "AT", "box": "HOSTILE-B1", "tubes": ["HOSTILE-T3", "HOSTILE-T3"]}], 200, "invalid_field")
ev("result word unknown", [{"id": T.eid(), "type": "tube.result", "at": "AT", "tube": "HOSTILE-T3", "result": "maybe"}], 200, "invalid_result", role="lab")
ev("17 Ct genes", [{"id": T.eid(), "type": "tube.result", "at": "AT", "tube": "HOSTILE-T3", "result": "negative", "ct": {"g%d" % i: 30 for i in range(17)}}], 200, "invalid_field", role="lab")
ev("Ct value out of range", [{"id": T.eid(), "type": "tube.result", "at": "AT", "tube": "HOSTILE-T3", "result": "negative", "ct": {"N": 1e9}}], 200, "invalid_field", role="lab")
ev("reject reason unknown", [{"id": T.eid(), "type": "tube.reject", "at": "AT", "tube": "HOSTILE-T3", "reason": "dropped"}], 200, "invalid_reason", role="lab")
ev("amend not a boolean", [{"id": T.eid(), "type": "tube.result", "at": "AT", "tube": "HOSTILE-T3", "result": "negative", "amend": "yes"}], 200, "invalid_field", role="lab")
ev("collector sending a result", [{"id": T.eid(), "type": "tube.result", "at": "AT", "tube": "HOSTILE-T3", "result": "negative"}], 200, "forbidden")
ev("courier delivering without a lab", [{"id": T.eid(), "type": "box.deliver", "at": "AT", "box": "HOSTILE-B1"}], 200, "missing_field", role="courier")
ev("sample into another site's tube",
   [{"id": T.eid(), "type": "sample.add", "at": "AT", "tube": "HOSTILE-T1", "person": {"id_type": "passport", "id_number": "E7654321"}}],
   200, "out_of_scope", role="collector2")


class Hostile(T.EnvCase):
    label = "hostile"

    @classmethod
    def prepare(cls):
        env = cls.env
        cls.clock = T.Clock(hours_back=2)
        env.make_round("RH", day=cls.clock.day())
        env.client("collector", "S1").send_ok([T.tube_open(cls.clock.at(0), "HOSTILE-T1", "RH")])
        cls.tokens = {
            "collector": env.client("collector", "S1"), "collector2": env.client("collector", "S3"),
            "courier": env.client("courier", "C1"), "lab": env.client("lab", "L1"),
            "viewer": env.client("viewer", T.TOWN1), "admin": env.admin,
        }

    def client_for(self, role, headers):
        if role in self.tokens and not headers:
            return self.tokens[role]
        secret = {"garbage": "not-a-token", "unknown": "tl_" + "0" * 64}.get(role)
        if role in self.tokens:
            secret = self.tokens[role].token
        return self.env.daemon.client(secret)

    def send_raw(self, data):
        """Sends raw bytes over TLS; returns (status, code, closed_after)."""
        ctx = self.env.daemon.ssl_context()
        with socket.create_connection(("127.0.0.1", self.env.daemon.port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                try:
                    t.sendall(data)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the server answered and closed while we were still sending
                buf = b""
                try:
                    while True:
                        chunk = t.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                except (socket.timeout, ConnectionResetError, ssl.SSLError):
                    pass
        head, _, body = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None
        try:
            code = json.loads(body.decode())["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        return status, code

    def run_case(self, name, kind, req, status, code):
        fut = T.Clock(hours_back=-1).at(0)
        if kind == "raw":
            return self.send_raw(req)
        if kind == "api":
            method, path, body, role, headers = req
            c = self.client_for(role, headers) if role else self.env.daemon.client(None)
            rawbody = body if isinstance(body, bytes) else None
            r = c.request(method, path, None if rawbody is not None else body, headers=headers, raw=rawbody)
            return r.status, r.error_code
        role, events = req
        c = self.tokens[role]
        if events is None:  # the duplicate field inside an event
            txt = ('{"events":[{"id":"%s","type":"tube.open","at":"%s","tube":"HOSTILE-T4","round":"RH","round":"RX"}]}'
                   % (T.eid(), self.clock.at(1)))
            r = c.post("/v1/events", raw=txt)
            return r.status, r.error_code
        evs = json.loads(json.dumps(events).replace('"AT"', '"%s"' % self.clock.at(1)).replace('"FUTURE"', '"%s"' % fut))
        r = c.post("/v1/events", {"events": evs})
        if r.status != 200:
            return r.status, r.error_code
        codes = {x.get("code") for x in r.json["results"]}
        statuses = {x["status"] for x in r.json["results"]}
        return (200, codes.pop() if len(codes) == 1 and statuses == {"rejected"} else ("mixed:%s" % sorted(map(str, codes))))

    def test_catalogue(self):
        self.assertGreaterEqual(len(CASES), 60)
        before = T.fingerprint(self.env.db)
        watcher = self.env.daemon.client(None)
        rows, bad = [], []
        for name, kind, req, status, code in CASES:
            got = self.run_case(name, kind, req, status, code)
            rows.append((name, status, code, got))
            if got != (status, code):
                bad.append("%s: expected %s %s, got %s" % (name, status, code, got))
            # the daemon keeps serving others after every case
            self.assertEqual(watcher.get("/healthz").status, 200, "daemon stopped serving after: " + name)
        after = T.fingerprint(self.env.db)
        print("\n| # | request | status | code |\n|---|---|---|---|")
        for i, (name, status, code, got) in enumerate(rows, 1):
            print("| %d | %s | %s | `%s` |" % (i, name, status, code))
        self.assertEqual(bad, [])
        self.assertEqual(T.fingerprint_diff(before, after), [], "a refused request stored something")
        log = self.env.daemon.log_text()
        self.assertNotIn("110105194912310021", log)
        self.assertNotIn("E1234567", log)


class RateLimits(unittest.TestCase):
    """A daemon with 5 requests/s per token (bursts of 10) and 50 per address: one greedy
    token gets 429 with Retry-After, another token is not affected, nothing is stored."""

    def test_429_per_token(self):
        db = T.Database("ratelimit")
        d = T.Daemon(db, "ratelimit", extra_env={"TUBELOOP_RATE_LIMIT": "5",
                                                  "TUBELOOP_RATE_LIMIT_ADDRESS": "50"})
        try:
            d.start()
            env = T.Env.__new__(T.Env)
            env.db, env.daemon, env.tokens, env.clients = db, d, {}, {}
            env.admin_secret = d.admin_token()
            env.admin = d.client(env.admin_secret)
            env.load_registry()
            greedy = env.client("viewer", T.COUNTY)
            other = env.client("viewer", T.TOWN1)
            statuses = [greedy.get("/v1/anomalies") for _ in range(25)]
            limited = [r for r in statuses if r.status == 429]
            self.assertGreaterEqual(len(limited), 10, [r.status for r in statuses])
            self.assertEqual(limited[0].error_code, "rate_limited")
            self.assertEqual(other.get("/v1/anomalies").status, 200)
            c = T.Client(d, greedy.token)
            c._connect()
            c.conn.request("GET", "/v1/anomalies", headers={"Authorization": "Bearer " + greedy.token})
            r = c.conn.getresponse()
            r.read()
            self.assertEqual(r.status, 429)
            self.assertGreaterEqual(int(r.getheader("Retry-After")), 1)
            c.close()
            time.sleep(1.2)
            self.assertEqual(greedy.get("/v1/anomalies").status, 200, "the bucket refills")
        finally:
            d.cleanup()
            db.drop()

    def test_429_per_address(self):
        """Several tokens from one address share its budget (5/s, bursts of 10); each token
        alone stays far under its own limit. The tokens are made through a daemon without
        limits on the same database (setting up would spend the address's budget)."""
        env = T.Env("ratelimit_addr")
        d = T.Daemon(env.db, "ratelimit_addr_b", keys_from=env.daemon.keys,
                     extra_env={"TUBELOOP_RATE_LIMIT": "1000", "TUBELOOP_RATE_LIMIT_ADDRESS": "5"})
        try:
            d.start()
            tokens = [env.make_token("viewer", scope)[1] for scope in (T.COUNTY, T.TOWN1, T.TOWN2)]
            clients = [d.client(t) for t in tokens]
            before = T.fingerprint(env.db)
            answers = [clients[i % 3].get("/v1/anomalies") for i in range(30)]
            limited = [r for r in answers if r.status == 429]
            self.assertGreaterEqual(len(limited), 12, [r.status for r in answers])
            self.assertEqual({r.error_code for r in limited}, {"rate_limited"})
            self.assertEqual({r.status for r in answers} - {200, 429}, set())
            self.assertEqual(T.fingerprint_diff(before, T.fingerprint(env.db)), [])
            time.sleep(1.2)
            self.assertEqual(clients[0].get("/v1/anomalies").status, 200, "the bucket refills")
        finally:
            d.cleanup()
            env.close()

    def test_connections_over_the_limit_are_closed_at_accept(self):
        db = T.Database("connlimit")
        d = T.Daemon(db, "connlimit", extra_env={"TUBELOOP_MAX_CONNECTIONS": "4"})
        held = []
        try:
            d.start()
            time.sleep(0.3)  # the start-up probe's connection is gone
            for _ in range(4):
                c = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=10, context=d.ssl_context())
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                held.append(c)
            extra = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=10, context=d.ssl_context())
            with self.assertRaises((OSError, http.client.HTTPException)):
                extra.request("GET", "/healthz")
                extra.getresponse().read()
            extra.close()
            for c in held:  # the four are still served
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
            held.pop().close()
            time.sleep(0.3)
            again = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=10, context=d.ssl_context())
            again.request("GET", "/healthz")
            r = again.getresponse()
            r.read()
            self.assertEqual(r.status, 200, "a place freed is taken again")
            again.close()
            self.assertIn("reason=max_connections", d.log_text())
        finally:
            for c in held:
                c.close()
            d.cleanup()
            db.drop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
