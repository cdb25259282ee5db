#!/usr/bin/env python3
"""The daemon's TLS, as testssl.sh (Debian package `testssl.sh`) sees it (issue 7).

Starts the real daemon (its own database, a fresh ECDSA P-256 certificate, as every e2e test)
and runs testssl.sh against it with JSON output, then checks the claim of the README:

  protocols      SSLv2, SSLv3, TLS 1.0 and TLS 1.1 not offered; TLS 1.2 and TLS 1.3 offered
  ciphers        every suite offered is in Mozilla's "intermediate" list (v5.7): for TLS 1.2
                 ECDHE/DHE with AES-GCM or ChaCha20-Poly1305, for TLS 1.3 the three standard
                 suites; at least one of each (-E: every cipher tried per protocol)
  renegotiation  client-initiated renegotiation refused (secure_client_renego)
  compression    no TLS compression (CRIME_TLS)

and prints the findings it relied on. --long runs every group of testssl.sh's checks (also
server defaults, server preference, standard cipher groups, forward secrecy, every
vulnerability check and the HTTP headers) and fails on any finding of severity HIGH or CRITICAL, except those that only say the test certificate is
self-signed, short-lived and has no revocation URL (CERT_ONLY) and the client's choice of
suite, which is Mozilla's intermediate profile (BY_DESIGN).

--negative-control scans `openssl s_server` configured the wrong way (TLS 1.0 and every
cipher allowed) instead of the daemon: the check must then fail (the run fails if it does
not), so a passing scan of the daemon means something.

    tls_scan.py [--long] [--negative-control]

Not in ctest: testssl.sh takes minutes (3 to over 10 on this busy 2-core machine), so both
forms are commands: `python3 tests/fault/tls_scan.py` (with the ctest environment, see
tests/e2e/py/tubeloop_test.py) and scripts/fault.sh tls (long form and negative control).
"""
import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib as F  # noqa: E402

T = F.T

# Mozilla server-side TLS "intermediate" (v5.7), OpenSSL names.
INTERMEDIATE_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
}
INTERMEDIATE_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

SHORT_CHECKS = ["-p", "-E", "-R", "-C"]
# testssl.sh's default run does not try each cipher per protocol (-E), which the check needs:
# the long form names every group of checks instead (-U: every vulnerability, -R and -C too).
LONG_CHECKS = ["-p", "-E", "-S", "-P", "-s", "-f", "-U", "--headers"]

# Findings about the certificate that a self-signed, 30-day test certificate always raises;
# they say nothing about the daemon's TLS configuration.
CERT_ONLY = {"cert_chain_of_trust", "cert_expirationStatus", "cert_notAfter", "cert_revocation",
             "cert_validityPeriod"}
# Findings testssl.sh 3.0 rates HIGH that are the configuration we chose: Mozilla's intermediate
# profile leaves the suite to the client ("prefer server ciphers: off") because every suite
# offered is AEAD with forward secrecy, and phones without AES hardware pick ChaCha20.
BY_DESIGN = {"cipher_order"}


def run_testssl(port, checks, out_json, timeout):
    argv = ["testssl", "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
            "--ip", "127.0.0.1", "--jsonfile", out_json] + checks + ["https://localhost:%d" % port]
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    took = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # testssl.sh is a shell script that spawns thousands of processes: on a busy machine its
    # wall time says more about the machine than about the scan, so its CPU time is shown too
    took = (took, cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime)
    text = p.stdout.decode("utf-8", "replace")
    try:
        with open(out_json) as f:
            findings = json.load(f)
    except (OSError, ValueError):
        findings = None
    return findings, p.returncode, took, text


def check(findings, long_form):
    """(problems, shown): what contradicts the claim, and the findings the verdict rests on."""
    by_id = {f["id"]: f for f in findings}
    problems, shown = [], []

    def finding(i):
        f = by_id.get(i)
        return f["finding"] if f else None

    for i in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        v = finding(i)
        shown.append((i, v))
        if v is None or not v.startswith("not offered"):
            problems.append("%s: %s (must be 'not offered')" % (i, v))
    for i in ("TLS1_2", "TLS1_3"):
        v = finding(i)
        shown.append((i, v))
        if v is None or not v.startswith("offered"):
            problems.append("%s: %s (must be offered)" % (i, v))
    offered = {"tls1_2": [], "tls1_3": []}
    for f in findings:
        i = f["id"]
        if not i.startswith("cipher-") or i.startswith("cipher_"):
            continue
        proto = i[len("cipher-"):].rsplit("_x", 1)[0]  # cipher-tls1_2_xc02b (from -E)
        name = f["finding"].split()[3] if len(f["finding"].split()) > 3 else f["finding"]
        shown.append((i, name))
        if proto == "tls1_2":
            offered[proto].append(name)
            if name not in INTERMEDIATE_TLS12:
                problems.append("TLS 1.2 suite %s is not in the intermediate list" % name)
        elif proto == "tls1_3":
            offered[proto].append(name)
            if name not in INTERMEDIATE_TLS13:
                problems.append("TLS 1.3 suite %s is not in the intermediate list" % name)
        else:
            problems.append("suite %s offered for %s" % (name, proto))
    for proto, names in offered.items():
        if not names:
            problems.append("no %s suite found (was -E run?)" % proto)
    for i, ok in (("secure_client_renego", "not vulnerable"), ("CRIME_TLS", "not vulnerable")):
        v = finding(i)
        shown.append((i, v))
        if v is None or not v.startswith(ok):
            problems.append("%s: %s (must be '%s')" % (i, v, ok))
    if long_form:
        for f in findings:
            if f["severity"] in ("HIGH", "CRITICAL") and f["id"] not in CERT_ONLY | BY_DESIGN:
                problems.append("%s %s: %s" % (f["severity"], f["id"], f["finding"]))
    return problems, shown


def bad_server(workdir):
    """openssl s_server with TLS 1.0 and every cipher allowed, on a free loopback port."""
    cert, key = os.path.join(workdir, "bad.crt"), os.path.join(workdir, "bad.key")
    T.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-days", "30", "-subj", "/CN=localhost", "-keyout", key, "-out", cert])
    port = F.free_port()
    p = subprocess.Popen(["openssl", "s_server", "-quiet", "-www", "-accept", "127.0.0.1:%d" % port,
                          "-cert", cert, "-key", key, "-min_protocol", "TLSv1",
                          "-cipher", "ALL:@SECLEVEL=0"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return p, port
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise RuntimeError("openssl s_server did not start")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--long", action="store_true", help="testssl.sh's whole default scan")
    ap.add_argument("--negative-control", action="store_true")
    ap.add_argument("--checks", default=" ".join(SHORT_CHECKS),
                    help="testssl.sh's checks of the short form (the check needs -p -E -R -C)")
    args = ap.parse_args()
    if shutil.which("testssl") is None:
        print("testssl.sh is not installed (scripts/lib.sh tl_fault_deps)", file=sys.stderr)
        return 1
    env = server = workdir = None
    try:
        if args.negative_control:
            workdir = tempfile.mkdtemp(prefix="tls-scan-")
            server, port = bad_server(workdir)
            target = "openssl s_server (TLS 1.0 and every cipher allowed)"
        else:
            env = F.make_env("tlsscan", registry=False)
            workdir = tempfile.mkdtemp(prefix="tls-scan-", dir=env.daemon.dir)
            port = env.daemon.port
            target = "tubeloopd"
        checks = LONG_CHECKS if args.long else args.checks.split()
        findings, rc, took, text = run_testssl(port, checks, os.path.join(workdir, "testssl.json"), 1800)
        print("tls_scan: target=%s testssl_checks=%s testssl_exit=%d seconds=%.0f cpu_seconds=%.0f findings=%d"
              % (target, " ".join(checks) or "all", rc, took[0], took[1], len(findings or [])), flush=True)
        if findings is None:
            print("testssl.sh wrote no JSON (exit %d):\n%s" % (rc, text[-3000:]), file=sys.stderr)
            return 1
        problems, shown = check(findings, args.long)
        for i, v in shown:
            print("tls_scan:   %-24s %s" % (i, v))
        if args.long:
            for f in findings:
                if f["severity"] not in ("OK", "INFO") and f["id"] not in dict(shown):
                    print("tls_scan:   %-24s %s %s" % (f["id"], f["severity"], f["finding"][:100]))
        if args.negative_control:
            if not problems:
                print("negative control: the check passed a server that offers TLS 1.0 and every cipher",
                      file=sys.stderr)
                return 1
            print("negative control: %d contradictions found (as they must be), e.g. %s"
                  % (len(problems), "; ".join(problems[:4])))
            return 0
        if problems:
            print("FAILED: testssl.sh contradicts the TLS claim:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("tls_scan: protocols TLS 1.2/1.3 only, %d suites all intermediate, no client renegotiation, "
              "no compression" % sum(1 for i, _ in shown if i.startswith("cipher-")))
        return 0
    finally:
        if server is not None:
            server.kill()
            server.wait()
            shutil.rmtree(workdir, ignore_errors=True)
        if env is not None:
            env.close()


if __name__ == "__main__":
    sys.exit(main())
