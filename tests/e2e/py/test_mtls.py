#!/usr/bin/env python3
"""Optional client certificates (mTLS) for device tokens (issue 7): the real daemon over real
TLS with --tls-client-ca and --device-certs, certificates made with the openssl CLI.

A device certificate's subject CN names its device as KIND:CODE (site:S1, courier:C1, lab:L1).
With `required`, a collector, courier or lab token is refused (403, nothing stored) without a
verified certificate naming it: client_certificate_required, _invalid (another CA: the
handshake completes, the request is refused), _mismatch (another device's certificate).
Viewer, supervisor and admin tokens need none. `optional` lets devices come without one but
checks one that is shown; `off` (the default) changes nothing. A resumed TLS session keeps its
certificate. The daemon refuses bad combinations at start. The CLI's --cert/--key is a device.
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

import tubeloop_test as T

ROUND = "RM1"


def openssl(*args):
    T.run(["openssl"] + list(args))


class Pki:
    """Two CAs (the deployment's and a stranger's) and device certificates in a temp folder."""

    def __init__(self, folder):
        self.dir = folder
        self.serial = 1
        self.ca = self._ca("ca", "tubeloop test device CA")
        self.other_ca = self._ca("other-ca", "some other CA")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _ca(self, name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "30", "-subj", "/CN=" + cn, "-keyout", self.path(name + ".key"),
                "-out", self.path(name + ".pem"))
        return name

    def next_serial(self):
        self.serial += 1
        return self.serial

    def device(self, cn, ca=None, name=None, usage="clientAuth"):
        """(cert, key) of a certificate with subject CN cn, signed by ca, for usage (EKU)."""
        ca = ca or self.ca
        name = name or "%s-%s-%s" % (cn.replace(":", "_"), ca, usage)
        key, csr, crt = self.path(name + ".key"), self.path(name + ".csr"), self.path(name + ".pem")
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=%s\n" % usage)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=" + cn, "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.path(ca + ".pem"), "-CAkey", self.path(ca + ".key"),
                "-set_serial", str(self.next_serial()), "-days", "30", "-extfile", ext,
                "-out", crt)
        return crt, key


def context(daemon, cert=None):
    """A client TLS context trusting the daemon, presenting cert = (certfile, keyfile) if given."""
    ctx = ssl.create_default_context(cafile=daemon.cert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def call(daemon, ctx, method, path, token, body=None, session=None):
    """One request on a fresh TLS connection (Connection: close): (T.Response with .reused, the
    TLS session)."""
    data = json.dumps(body).encode() if body is not None else b""
    head = "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: %d\r\n" % (
        method, path, len(data))
    if token:
        head += "Authorization: Bearer %s\r\n" % token
    if body is not None:
        head += "Content-Type: application/json\r\n"
    raw = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(head.encode() + b"\r\n" + data)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        reused, sess = s.session_reused, s.session
    text = b"".join(chunks).decode("utf-8", "replace")
    head, body = text.split("\r\n\r\n", 1)
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    r = T.Response(int(head.split(" ", 2)[1]), parsed, body)
    r.reused = reused  # the TLS session was resumed
    return r, sess


class MtlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tmp = T.need_env("TUBELOOP_TEST_TMP")
        os.makedirs(tmp, exist_ok=True)
        cls.tmp = tempfile.mkdtemp(prefix="py-mtls-pki-", dir=tmp)
        cls.env, cls.others = None, []
        try:
            cls.pki = p = Pki(cls.tmp)
            cls.certs = {
                "site:S1": p.device("site:S1"),
                "site:S2": p.device("site:S2"),
                "courier:C1": p.device("courier:C1"),
                "lab:L1": p.device("lab:L1"),
                "stranger site:S1": p.device("site:S1", ca=p.other_ca),
                "server-only site:S1": p.device("site:S1", usage="serverAuth"),
            }
            cls.env = T.Env("mtls", extra_env={"TUBELOOP_TLS_CLIENT_CA": p.path("ca.pem"),
                                               "TUBELOOP_DEVICE_CERTS": "required"})
            cls.env.make_round(ROUND)
            for role, scope in (("collector", "S1"), ("collector", "S2"), ("courier", "C1"),
                                ("lab", "L1"), ("viewer", T.COUNTY), ("supervisor", T.TOWN1)):
                cls.env.tokens[(role, scope)] = cls.env.make_token(role, scope)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for d in cls.others:
            d.cleanup()
        if cls.env:
            cls.env.close()
            cls.env = None
        if not T.keep():
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # helpers -------------------------------------------------------------------------------

    def token(self, role, scope):
        return self.env.tokens[(role, scope)][1]

    def send(self, daemon, cert, role, scope, events):
        ans, _ = call(daemon, context(daemon, self.certs.get(cert)), "POST", "/v1/events",
                      self.token(role, scope), {"events": events})
        return ans

    def stored(self, event_id):
        return self.env.db.count("events", "id = '%s'" % event_id) == 1

    def assert_accepted(self, ans, events):
        self.assertEqual(ans.status, 200, ans.text)
        self.assertEqual([r["status"] for r in ans.json["results"]], ["accepted"] * len(events), ans.text)
        for e in events:
            self.assertTrue(self.stored(e["id"]), e)

    def assert_refused(self, ans, code, events):
        self.assertEqual((ans.status, ans.error_code), (403, code), ans.text)
        self.assertEqual(set(ans.json), {"error"})
        self.assertTrue(ans.json["error"]["message"])
        for e in events:
            self.assertFalse(self.stored(e["id"]), e)

    def daemon_with(self, name, extra_env):
        d = T.Daemon(self.env.db, name, extra_env=extra_env, keys_from=self.env.daemon.keys)
        self.others.append(d)
        return d.start()

    # required --------------------------------------------------------------------------------

    def test_required_right_certificate_accepted(self):
        d, c = self.env.daemon, T.Clock()
        opened = [T.tube_open(c.at(0), "T-MTLS-OK1", ROUND)]
        self.assert_accepted(self.send(d, "site:S1", "collector", "S1", opened), opened)
        picked = [T.box_pickup(c.at(5), "B-MTLS-OK1")]  # stored even before the site's events
        self.assert_accepted(self.send(d, "courier:C1", "courier", "C1", picked), picked)
        ans, _ = call(d, context(d, self.certs["lab:L1"]), "GET", "/v1/labs/L1/arrivals", self.token("lab", "L1"))
        self.assertEqual(ans.status, 200, ans.text)
        ans, _ = call(d, context(d, self.certs["site:S1"]), "GET", "/v1/tubes/T-MTLS-OK1",
                      self.token("collector", "S1"))
        self.assertEqual((ans.status, ans.json["state"] if ans.json else None), (200, "opened"), ans.text)

    def test_required_without_certificate_refused(self):
        d, c = self.env.daemon, T.Clock()
        before = T.fingerprint(self.env.db)
        for role, scope in (("collector", "S1"), ("courier", "C1"), ("lab", "L1")):
            ev = [T.tube_open(c.at(0), "T-MTLS-NO-" + scope, ROUND)] if role == "collector" else \
                [T.box_pickup(c.at(1), "B-MTLS-NO-" + scope)] if role == "courier" else \
                [T.tube_result(c.at(2), "T-MTLS-NOLAB", "negative")]
            self.assert_refused(self.send(d, None, role, scope, ev), "client_certificate_required", ev)
            ans, _ = call(d, context(d), "GET", "/v1/boxes/B-MTLS-OK1", self.token(role, scope))
            self.assertEqual((ans.status, ans.error_code), (403, "client_certificate_required"), ans.text)
        # the same through the harness's own keep-alive client (http.client, no certificate)
        r = self.env.daemon.client(self.token("collector", "S1")).post(
            "/v1/events", {"events": [T.tube_open(c.at(3), "T-MTLS-NO-HC", ROUND)]})
        self.assertEqual((r.status, r.error_code), (403, "client_certificate_required"), r.text)
        self.assertEqual(T.fingerprint_diff(before, T.fingerprint(self.env.db)), [])
        log = self.env.daemon.log_text()
        self.assertIn("msg=device_cert_refused", log)
        self.assertIn("reason=client_certificate_required", log)
        for k, (_, secret) in self.env.tokens.items():
            self.assertNotIn(secret, log, k)

    def test_required_other_ca_refused_after_handshake(self):
        d, c = self.env.daemon, T.Clock()
        ev = [T.tube_open(c.at(0), "T-MTLS-STRANGER", ROUND)]
        # the handshake completes (an HTTP answer arrives); the request is refused
        self.assert_refused(self.send(d, "stranger site:S1", "collector", "S1", ev),
                            "client_certificate_invalid", ev)
        # the right CA and CN, but a certificate for servers only: not a client's
        self.assert_refused(self.send(d, "server-only site:S1", "collector", "S1", ev),
                            "client_certificate_invalid", ev)

    def test_required_other_device_refused(self):
        d, c = self.env.daemon, T.Clock()
        ev = [T.tube_open(c.at(0), "T-MTLS-OTHER", ROUND)]
        self.assert_refused(self.send(d, "site:S2", "collector", "S1", ev), "client_certificate_mismatch", ev)
        ev = [T.box_pickup(c.at(1), "B-MTLS-OTHER")]
        # a site's certificate is no courier's, and the courier's no lab's
        self.assert_refused(self.send(d, "site:S1", "courier", "C1", ev), "client_certificate_mismatch", ev)
        ans, _ = call(d, context(d, self.certs["courier:C1"]), "GET", "/v1/labs/L1/arrivals",
                      self.token("lab", "L1"))
        self.assertEqual((ans.status, ans.error_code), (403, "client_certificate_mismatch"), ans.text)

    def test_required_officials_need_no_certificate(self):
        d = self.env.daemon
        day = T.Clock().day()
        for role, scope, region in (("viewer", T.COUNTY, T.COUNTY), ("supervisor", T.TOWN1, T.TOWN1)):
            for cert in (None, "stranger site:S1", "site:S1"):
                ans, _ = call(d, context(d, self.certs.get(cert)), "GET",
                              "/v1/stats?region=%s&day=%s" % (region, day), self.token(role, scope))
                self.assertEqual(ans.status, 200, "%s with %s: %s" % (role, cert, ans.text))
        ans, _ = call(d, context(d), "GET", "/v1/admin/tokens", self.env.admin_secret)
        self.assertEqual(ans.status, 200, ans.text)
        for path in ("/healthz", "/openapi.json"):
            ans, _ = call(d, context(d), "GET", path, None)
            self.assertEqual(ans.status, 200, path)

    def test_required_resumed_session_keeps_certificate(self):
        d, c = self.env.daemon, T.Clock()
        ctx = context(d, self.certs["site:S1"])
        ans, session = call(d, ctx, "GET", "/healthz", None)
        self.assertEqual(ans.status, 200)
        self.assertFalse(ans.reused)
        ev = [T.tube_open(c.at(0), "T-MTLS-RESUMED", ROUND)]
        ans, _ = call(d, ctx, "POST", "/v1/events", self.token("collector", "S1"), {"events": ev},
                      session=session)
        self.assertTrue(ans.reused, "the TLS session was not resumed")
        self.assert_accepted(ans, ev)
        # a resumed session of a certificate for S1 is still not S2's
        ans, session = call(d, ctx, "GET", "/healthz", None)
        ev = [T.tube_open(c.at(1), "T-MTLS-RESUMED2", ROUND)]
        ans, _ = call(d, ctx, "POST", "/v1/events", self.token("collector", "S2"), {"events": ev},
                      session=session)
        self.assertTrue(ans.reused, "the TLS session was not resumed")
        self.assert_refused(ans, "client_certificate_mismatch", ev)

    def test_cli_device_with_certificate(self):
        d = self.env.daemon
        cli = T.need_env("TUBELOOP_CLI")
        crt, key = self.certs["courier:C1"]
        for with_cert in (True, False):
            box = "B-MTLS-CLI-%d" % with_cert
            env = {k: v for k, v in os.environ.items() if not k.startswith("TUBELOOP_")}
            env.update({"TUBELOOP_URL": "https://localhost:%d" % d.port, "TUBELOOP_CACERT": d.cert,
                        "TUBELOOP_TOKEN": self.token("courier", "C1"), "TUBELOOP_LANG": "en",
                        "HOME": self.tmp, "XDG_STATE_HOME": os.path.join(self.tmp, "state-%d" % with_cert)})
            argv = [cli] + (["--cert", crt, "--key", key] if with_cert else []) + \
                ["courier", "pickup", box, "--journal", os.path.join(self.tmp, "j-%d" % with_cert), "--wait", "5"]
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
            stored = self.env.db.count("events", "type = 'box.pickup' AND box = '%s'" % box)
            if with_cert:
                self.assertEqual((p.returncode, stored), (0, 1), p.stderr.decode())
            else:
                self.assertNotEqual(p.returncode, 0, p.stdout.decode())
                self.assertIn("certificate", p.stderr.decode(), "the CLI does not say why")
                self.assertEqual(stored, 0)

    # optional and off ------------------------------------------------------------------------

    def test_optional(self):
        d = self.daemon_with("mtls-optional", {"TUBELOOP_TLS_CLIENT_CA": self.pki.path("ca.pem"),
                                               "TUBELOOP_DEVICE_CERTS": "optional"})
        c = T.Clock()
        ev = [T.tube_open(c.at(0), "T-MTLS-OPT-NONE", ROUND)]
        self.assert_accepted(self.send(d, None, "collector", "S1", ev), ev)
        ev = [T.tube_open(c.at(1), "T-MTLS-OPT-RIGHT", ROUND)]
        self.assert_accepted(self.send(d, "site:S1", "collector", "S1", ev), ev)
        ev = [T.tube_open(c.at(2), "T-MTLS-OPT-OTHER", ROUND)]
        self.assert_refused(self.send(d, "site:S2", "collector", "S1", ev), "client_certificate_mismatch", ev)
        ev = [T.tube_open(c.at(3), "T-MTLS-OPT-STRANGE", ROUND)]
        self.assert_refused(self.send(d, "stranger site:S1", "collector", "S1", ev),
                            "client_certificate_invalid", ev)
        self.assertEqual(d.stop(), 0)

    def test_off_changes_nothing(self):
        d = self.daemon_with("mtls-off", {})
        self.assertIn("device_certs=off", d.log_text())
        c = T.Clock()
        for i, cert in enumerate((None, "site:S2", "stranger site:S1")):
            ev = [T.tube_open(c.at(i), "T-MTLS-OFF-%d" % i, ROUND)]
            self.assert_accepted(self.send(d, cert, "collector", "S1", ev), ev)
        self.assertNotIn("device_cert_refused", d.log_text())
        self.assertEqual(d.stop(), 0)

    def test_bad_combinations_refused_at_start(self):
        d = self.env.daemon
        base = [d.bin, "serve", "--db", self.env.db.conninfo, "--listen", "127.0.0.1:0",
                "--tls-cert", d.cert, "--tls-key", d.key, "--keys", d.keys]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUBELOOP_")}
        garbage = self.pki.path("garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        for extra, rc, says in (
                (["--device-certs", "required"], 2, "--device-certs required needs --tls-client-ca"),
                (["--device-certs", "optional"], 2, "needs --tls-client-ca"),
                (["--device-certs", "yes", "--tls-client-ca", self.pki.path("ca.pem")], 2,
                 "expected off, optional or required"),
                (["--tls-client-ca", self.pki.path("ca.pem")], 2, "no effect with --device-certs off"),
                (["--device-certs", "required", "--tls-client-ca", self.pki.path("missing.pem")], 1,
                 "cannot load --tls-client-ca"),
                (["--device-certs", "required", "--tls-client-ca", garbage], 1, "--tls-client-ca")):
            got, out, err = T.run(base + extra, check=False, env=env, timeout=30)
            self.assertEqual(got, rc, "%s: %s" % (extra, err))
            self.assertIn(says, err + out, extra)


if __name__ == "__main__":
    unittest.main(verbosity=2)
