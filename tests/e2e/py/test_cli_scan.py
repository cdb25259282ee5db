#!/usr/bin/env python3
"""The field commands of issue 5 through the real `tubeloop` binary against the real daemon:
`scan` driven through a pipe and through a real terminal (tmux), offline scanning with the
daemon stopped, `sync` killed with SIGKILL at random moments and restarted (every scan in the
database exactly once), the journal's torn last line, `courier pickup/deliver`, and
`lab receive/reject` with the missing and unexpected tubes of a box."""
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tubeloop_test as T  # noqa: E402

CLI = T.need_env("TUBELOOP_CLI")


def journal_records(path):
    """(events {id: event}, acks {id: (status, code)}, undone {id}) of a journal file."""
    events, acks, undone = {}, {}, set()
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n")[1:]:
            if not line:
                continue
            body = line[:line.rindex(" #")]
            kind, _, rest = body.partition(" ")
            if kind == "event":
                e = json.loads(rest)
                events[e["id"]] = e
            elif kind == "ack":
                i, status, code = rest.split(" ")
                acks[i] = (status, code)
            elif kind == "undo":
                undone.add(rest)
    return events, acks, undone


class CliScan(T.EnvCase):
    label = "cli_scan"

    @classmethod
    def prepare(cls):
        cls.env.make_round("R10", pool_size=10)
        cls.env.make_round("R5", pool_size=5)
        cls.tmp = tempfile.mkdtemp(prefix="cli-scan-", dir=T.need_env("TUBELOOP_TEST_TMP"))
        cls.rng = random.Random(20211008)
        cls.secret = {}
        for role, scope in (("collector", "S1"), ("collector", "S2"), ("collector", "S3"),
                            ("courier", "C1"), ("lab", "L1")):
            cls.secret[scope] = cls.env.make_token(role, scope)[1]

    @classmethod
    def tearDownClass(cls):
        if not T.keep():
            shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    # -- helpers ---------------------------------------------------------------------------

    def cli_env(self, scope, extra=None):
        env = dict(os.environ)
        env.pop("TUBELOOP_LANG", None)
        env.update(TUBELOOP_URL="https://127.0.0.1:%d" % self.env.daemon.port,
                   TUBELOOP_TOKEN=self.secret[scope], TUBELOOP_CACERT=self.env.daemon.cert)
        env.update(extra or {})
        return env

    def cli(self, scope, args, stdin="", extra_env=None, timeout=60):
        """Runs the CLI to its end: (rc, stdout, stderr)."""
        p = subprocess.run([CLI] + args, input=stdin.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.cli_env(scope, extra_env), timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def journal(self, name):
        return os.path.join(self.tmp, name)

    def persons(self, n):
        return [T.resident_id(self.rng) for _ in range(n)]

    def events_of(self, sender):
        return {r[0]: r[1] for r in self.env.db.psql("SELECT id, type FROM events WHERE sender = '%s'" % sender)}

    # -- the help --------------------------------------------------------------------------

    def test_0_help(self):
        for args, words in ((["scan", "--help"], ["/seal", "/box", "/pack", "/sealbox", "/undo", "/status", "/quit", "--capacity"]),
                            (["sync", "--help"], ["--journal", "--batch"]),
                            (["courier", "--help"], ["pickup", "deliver", "--lab"]),
                            (["lab", "--help"], ["receive", "reject", "upload", "leak"])):
            rc, out, err = self.cli("S1", ["--lang", "en"] + args)
            self.assertEqual(rc, 0, err)
            for w in words:
                self.assertIn(w, out, args)
        rc, out, err = self.cli("S1", ["scan", "--bogus"])
        self.assertNotEqual(rc, 0)
        self.assertIn("--bogus", err)
        for bad in ("0", "101", "5x"):
            rc, out, err = self.cli("S1", ["--lang", "en", "sync", "--batch", bad])
            self.assertEqual((rc, out), (2, ""), err)
            self.assertIn("--batch must be 1-100: " + bad, err)

    # -- scan through a pipe ---------------------------------------------------------------

    def test_1_pipe_whole_tube(self):
        """A whole tube of 10 through a pipe: full-width digits and a health code read, a bad
        check digit and the same person twice refused on the spot (never sent), the tube-full
        prompt at 10, then a box packed and sealed to a lab: the server holds exactly that."""
        ids = self.persons(10)
        bad = T.bad_check(self.persons(1)[0])
        lines = ["S1-TUBE-0001", T.fullwidth(ids[0]),
                 "resident_id|%s|李四|13812345678" % ids[1].lower(),
                 ids[1],            # the same person again: refused here
                 bad]               # wrong check digit: refused here
        lines += ids[2:]
        lines += ["/box S1-BOX-01", "/pack", "/sealbox L1", "/quit"]
        j = self.journal("pipe.log")
        rc, out, err = self.cli("S1", ["scan", "--round", "R10", "--journal", j], "\n".join(lines) + "\n")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("满管，请换管", out)
        self.assertIn("校验位", out)
        self.assertIn("此人已在本管中", out)
        self.assertIn("OK S1-TUBE-0001 10/10", out)
        self.assertIn("OK 封箱 S1-BOX-01 → L1（1 管）", out)
        self.assertEqual(out.count("拒绝："), 2, out)
        self.assertIn("待发送", out)

        t = self.env.admin.tube("S1-TUBE-0001").json
        self.assertEqual((t["capacity"], t["sampled"], len(t["persons"]), t["seal_count"]), (10, 10, 10, 10))
        self.assertEqual((t["state"], t["box"], t["destination_lab"]), ("packed", "S1-BOX-01", "L1"))
        self.assertEqual(sorted(p["id_number"] for p in t["persons"]), sorted(T.mask_rid(i) for i in ids))
        self.assertIn("李*", [p["name"] for p in t["persons"]])
        b = self.env.admin.box("S1-BOX-01").json
        self.assertEqual((b["state"], b["manifest"], b["seal_count"]), ("sealed", ["S1-TUBE-0001"], 1))

        # exactly the recorded events reached the server, all accepted; the refused scans never
        # left the device (not even in the journal)
        events, acks, _ = journal_records(j)
        db = self.events_of("S1")
        self.assertEqual(set(db), set(events))
        self.assertEqual(sorted(db.values()), sorted(["tube.open"] + ["sample.add"] * 10 +
                                                     ["tube.seal", "box.pack", "box.seal"]))
        self.assertEqual({a[0] for a in acks.values()}, {"accepted"})
        # the ids are UUID version 7 (RFC 9562): the time each was made, in Unix milliseconds,
        # in the first 48 bits, so they sort in the order scanned and match the scan time
        made = []
        for i, e in events.items():
            u = uuid.UUID(i)
            self.assertEqual((u.version, u.variant), (7, uuid.RFC_4122), i)
            ms = u.int >> 80
            at = datetime.datetime.fromisoformat(e["at"]).timestamp() * 1000
            self.assertLess(abs(ms - at), 2, "%s made at %d, scanned at %s" % (i, ms, e["at"]))
            made.append(ms)
        self.assertEqual(made, sorted(made))
        with open(j, encoding="utf-8") as f:
            self.assertNotIn(bad, f.read())
        self.assertEqual(os.stat(j).st_mode & 0o777, 0o600)

    def test_2_english_json_capacity(self):
        """--lang en words, --capacity 5 sent and enforced locally, --json lines for scripts."""
        ids = self.persons(6)
        lines = ["S2-TUBE-0001"] + ids[:5] + ["/seal", ids[5], "/status"]
        rc, out, err = self.cli("S2", ["--lang", "en", "scan", "--round", "R10", "--capacity", "5",
                                       "--journal", self.journal("en.log")], "\n".join(lines) + "\n")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("tube full, switch tube", out)
        self.assertIn("REFUSED: scan a tube first", out)   # /seal after the automatic seal, then a person
        self.assertIn("OK tube S2-TUBE-0001 sealed (5 persons)", out)
        t = self.env.admin.tube("S2-TUBE-0001").json
        self.assertEqual((t["capacity"], t["sampled"], t["state"]), (5, 5, "sealed"))

        ids = self.persons(2)
        rc, out, err = self.cli("S2", ["--json", "scan", "--round", "R10", "--journal", self.journal("json.log")],
                                "\n".join(["S2-TUBE-0002", ids[0], "23012619900101000", ids[1], "/undo"]) + "\n")
        self.assertEqual(rc, 0, out + err)
        objs = [json.loads(l) for l in out.splitlines()]
        self.assertEqual([o.get("ok") for o in objs[:5]], [True, True, False, True, True])
        self.assertEqual(objs[1]["event"], "sample.add")
        self.assertEqual(objs[1]["person"], T.mask_rid(ids[0]))
        self.assertEqual(objs[2]["code"], "invalid_person")
        self.assertIn("undone", objs[4])
        self.assertIn("summary", objs[-1])

        # a token the server does not know: scanning is recorded, uploading stops with the reason
        rc, out, err = self.cli("S2", ["scan", "--round", "R10", "--journal", self.journal("badtoken.log")],
                                "S2-TUBE-0003\n", extra_env={"TUBELOOP_TOKEN": "tl_" + "0" * 64})
        self.assertEqual(rc, 1)
        self.assertIn("OK 开管 S2-TUBE-0003", out)
        self.assertIn("上传已停止: 401", err)
        self.assertEqual(self.env.admin.tube("S2-TUBE-0003").status, 404)

    def test_3_capacity_from_server(self):
        """Without --capacity the tube is opened at the round's pool size (5 here): the client
        learns it from the server after the first tube and prompts at 5, also after a restart."""
        j = self.journal("cap.log")
        ids = self.persons(5)
        rc, out, err = self.cli("S3", ["scan", "--round", "R5", "--journal", j], "S3-TUBE-0001\n%s\n" % ids[0])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("OK 开管 S3-TUBE-0001（每管 10 人）", out)   # not known yet: counts 10
        self.assertIn("轮次 R5：每管 5 人（服务器）", out)
        rc, out, err = self.cli("S3", ["scan", "--journal", j], "\n".join(ids[1:]) + "\n")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("继续采样管 S3-TUBE-0001（1/5）", err)
        self.assertIn("OK S3-TUBE-0001 5/5", out)
        self.assertIn("满管，请换管", out)
        t = self.env.admin.tube("S3-TUBE-0001").json
        self.assertEqual((t["capacity"], t["sampled"], t["state"], t["seal_count"]), (5, 5, "sealed", 5))

    # -- scan in a real terminal -----------------------------------------------------------

    def test_4_terminal(self):
        """Through a real terminal (tmux): the prompt, OK per scan with the number waiting,
        the refusal in words, and 满管 at capacity."""
        tmux = shutil.which("tmux")
        if tmux is None:
            self.fail("tmux is not installed (scripts/lib.sh TL_PACKAGES lists it)")
        sock = os.path.join(self.tmp, "tmux.sock")
        env = self.cli_env("S1")
        cmd = [tmux, "-u", "-S", sock, "new-session", "-d", "-s", "scan", "-x", "150", "-y", "40"]
        for k in ("TUBELOOP_URL", "TUBELOOP_TOKEN", "TUBELOOP_CACERT"):
            cmd += ["-e", "%s=%s" % (k, env[k])]
        cmd += [CLI, "scan", "--round", "R10", "--capacity", "5", "--hold", "0",
                "--journal", self.journal("tty.log")]
        subprocess.run(cmd, check=True, env=dict(env, TERM="xterm-256color"), timeout=20)

        def screen():
            return subprocess.run([tmux, "-S", sock, "capture-pane", "-p", "-t", "scan"], stdout=subprocess.PIPE,
                                  timeout=20).stdout.decode("utf-8", "replace")

        def wait_for(text, timeout=15):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                s = screen()
                if text in s:
                    return s
                time.sleep(0.05)
            self.fail("%r never appeared on the terminal:\n%s" % (text, screen()))

        def keys(*lines):
            for line in lines:
                subprocess.run([tmux, "-S", sock, "send-keys", "-t", "scan", "-l", line], check=True, timeout=20)
                subprocess.run([tmux, "-S", sock, "send-keys", "-t", "scan", "Enter"], check=True, timeout=20)

        try:
            wait_for("[未开管 · 待发送 0] >")
            ids = self.persons(5)
            keys("S1-TUBE-0002")
            wait_for("OK 开管 S1-TUBE-0002（每管 5 人）")
            keys(ids[0], T.bad_check(ids[1]))
            s = wait_for("拒绝：身份证号校验位错误")
            self.assertIn("OK S1-TUBE-0002 1/5", s)
            keys(*ids[1:])
            s = wait_for("满管，请换管")
            s = wait_for("OK 封管 S1-TUBE-0002（5 人）")
            self.assertRegex(s, r"OK S1-TUBE-0002 5/5 230126\*{8}\d{3}[\dX] · 待发送 \d+")
            # the sender catches up: an Enter redraws the prompt with the number still waiting
            deadline = time.monotonic() + 15
            while True:
                subprocess.run([tmux, "-S", sock, "send-keys", "-t", "scan", "Enter"], check=True, timeout=20)
                time.sleep(0.1)
                last = [l for l in screen().splitlines() if l.strip()][-1]
                if last.strip() == "[未开管 · 待发送 0] >":
                    break
                self.assertLess(time.monotonic(), deadline, "the prompt still shows: " + last)
            keys("/quit")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and subprocess.run(
                    [tmux, "-S", sock, "has-session", "-t", "scan"], stderr=subprocess.DEVNULL).returncode == 0:
                time.sleep(0.05)
        finally:
            subprocess.run([tmux, "-S", sock, "kill-server"], stderr=subprocess.DEVNULL, timeout=20)
        t = self.env.admin.tube("S1-TUBE-0002").json
        self.assertEqual((t["sampled"], t["state"]), (5, "sealed"))

    # -- offline, kill -9, exactly once ----------------------------------------------------

    def test_5_offline_kill9(self):
        j = self.journal("offline.log")
        d = self.env.daemon
        d.stop()
        try:
            self.offline_scans(j)
            # sync with the server down: non-zero, with the count
            _, acks, _ = journal_records(j)
            self.assertEqual(acks, {})
            events, _, undone = journal_records(j)
            live = set(events) - undone
            rc, out, err = self.cli("S2", ["sync", "--journal", j, "--wait", "1"])
            self.assertEqual(rc, 1)
            self.assertIn("%d 条事件未被确认" % len(live), err)
            snapshot = self.journal("offline-snapshot.log")
            shutil.copyfile(j, snapshot)
        finally:
            # Daemon.start() takes the port from the first "listening" line of its log, which
            # it appends to: the old log goes aside so the new port is the one read
            os.replace(d.log, d.log + ".before-restart")
            d.start()

        # sync killed at random moments, again and again: the wait before the kill grows while
        # no answer gets recorded, so kills also land between batches and mid-request. Batches
        # of 5 make the upload some 70 requests long, so a kill lands inside it however fast
        # the daemon answers (with batches of 100 it was four requests, over in a few ms).
        kills, partial, delay = 0, 0, self.rng.uniform(0.05, 0.4)
        for _ in range(12):
            before = len(journal_records(j)[1])
            if before == len(live):
                break
            p = subprocess.Popen([CLI, "sync", "--journal", j, "--batch", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env=self.cli_env("S2"))
            time.sleep(delay)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(20)
            after = len(journal_records(j)[1])
            partial += 0 < after < len(live)
            delay = delay * 1.6 if after == before else self.rng.uniform(0.05, 0.4)
        self.assertGreater(kills, 0)
        self.assertGreater(partial, 0, "no kill landed while the upload was under way")
        rc, out, err = self.cli("S2", ["sync", "--journal", j])
        self.assertEqual(rc, 0, out + err)
        events, acks, undone = journal_records(j)
        live = set(events) - undone
        db = self.events_of("S2")
        mine = {i for i in db if i in events}
        self.assertEqual(mine, live, "every scan reached the server, none taken back did")
        self.assertEqual(set(acks), live)
        self.assertEqual({a[0] for a in acks.values()} - {"accepted", "duplicate"}, set())
        n = self.env.db.count("events", "sender = 'S2'")

        # the same journal as it was before any upload: everything answered "duplicate"
        rc, out, err = self.cli("S2", ["--json", "sync", "--journal", snapshot])
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)
        self.assertEqual((r["accepted"], r["duplicate"], r["rejected"], r["waiting"]), (0, len(live), [], 0))
        self.assertEqual(self.env.db.count("events", "sender = 'S2'"), n, "nothing applied twice")

        # a torn last line (a crash mid-write) and a damaged line are ignored; the torn tail is cut
        with open(snapshot, "ab") as f:
            f.write(b'event {"id":"%s","type":"tube.open","at":"2021-10-08T09:' % T.eid().encode())
        with open(snapshot, "r+b") as f:
            data = f.read()
            k = data.index(b"\nack ") + 1
            f.seek(k + len("ack "))
            f.write(b"[")  # one byte changed: the line's check no longer matches
        rc, out, err = self.cli("S2", ["sync", "--journal", snapshot])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("离线日志中损坏的行已忽略: 1", err)
        self.assertIn("已上传 1 条：接收 0，重复 1，拒绝 0", out)   # the answer lost: asked again
        with open(snapshot, "rb") as f:
            self.assertTrue(f.read().endswith(b"\n"))
        self.assertEqual(self.env.db.count("events", "sender = 'S2'"), n)

        t = self.env.admin.tube("S2-OFF-01").json
        self.assertEqual((t["sampled"], t["state"]), (10, "packed"))

    def offline_scans(self, j):
        """With the daemon stopped: scans are OK and the number waiting grows; the client is
        killed with SIGKILL mid-tube and restarted, and goes on with the same tube."""
        ids = self.persons(400)
        p = subprocess.Popen([CLI, "scan", "--round", "R10", "--journal", j, "--wait", "0"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.cli_env("S2"))
        waiting = []
        for line in ["S2-OFF-01"] + ids[:4]:
            p.stdin.write((line + "\n").encode())
            p.stdin.flush()
            out = p.stdout.readline().decode()
            self.assertTrue(out.startswith("OK"), out)
            waiting.append(int(out.rsplit("待发送 ", 1)[1]))
        self.assertEqual(waiting, [1, 2, 3, 4, 5])
        p.send_signal(signal.SIGKILL)
        p.wait(20)
        p.stdout.close()
        p.stdin.close()

        # restarted: the round and the tube come back from the journal
        lines = ids[4:10] + ["/undo", "/seal"]
        k = 10
        for t in range(2, 31):
            lines.append("S2-OFF-%02d" % t)
            lines += ids[k:k + 10]
            k += 10
        lines += ["/box S2-OFFBOX", "/pack", "/sealbox L1"]
        rc, out, err = self.cli("S2", ["scan", "--journal", j, "--wait", "0"], "\n".join(lines) + "\n")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("继续采样管 S2-OFF-01（4/10）", err)
        self.assertIn("OK 已撤销：tube.seal S2-OFF-01", out)
        self.assertEqual(out.count("满管，请换管"), 30)
        waits = [int(l.rsplit("待发送 ", 1)[1]) for l in out.splitlines() if l.startswith("OK")]
        live = 30 * 12 + 2   # 30 tubes (open, 10 persons, seal) and the box (pack, seal)
        self.assertEqual(waits[0], 6)
        self.assertEqual(waits[-1], live, "every recorded event waits; the seal taken back does not")
        self.assertIn("待发送 %d 条" % live, out)

    # -- courier and lab -------------------------------------------------------------------

    def test_6_courier_lab(self):
        col, c = self.env.client("collector", "S3"), T.Clock()
        evs = []
        for i, tube in enumerate(("CL-TUBE1", "CL-TUBE2", "CL-TUBE3", "CL-TUBE4")):
            evs += [T.tube_open(c.at(i), tube, "R10"), T.sample_add(c.at(i), tube, T.person(self.persons(1)[0])),
                    T.tube_seal(c.at(i + 1), tube)]
        evs += [T.box_pack(c.at(10), "CL-BOX-1", ["CL-TUBE1", "CL-TUBE2", "CL-TUBE3"]), T.box_seal(c.at(11), "CL-BOX-1", "L1"),
                T.box_pack(c.at(10), "CL-BOX-2", ["CL-TUBE4"]), T.box_seal(c.at(11), "CL-BOX-2", "L1")]
        col.send_ok(evs)
        state = os.path.join(self.tmp, "state")
        xdg = {"XDG_STATE_HOME": state}   # the default journal, per server and token

        rc, out, err = self.cli("C1", ["courier", "pickup", "CL-BOX-1"], extra_env=xdg)
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"CL-BOX-1\s+box.pickup\s+已接收")
        rc, out, err = self.cli("C1", ["courier", "pickup"], "CL-BOX-2\nnot a box!\nCL-BOX-2\n", extra_env=xdg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("OK box.pickup CL-BOX-2", out)
        self.assertIn("拒绝：不是转运箱条码", out)
        self.assertIn("OK CL-BOX-2 已扫过", out)
        rc, out, err = self.cli("C1", ["courier", "deliver", "CL-BOX-1"], extra_env=xdg)
        self.assertEqual(rc, 2)
        self.assertIn("--lab", err)
        rc, out, err = self.cli("C1", ["--json", "courier", "deliver", "CL-BOX-1", "CL-BOX-2", "--lab", "L1"],
                                extra_env=xdg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual([(e["box"], e["status"]) for e in json.loads(out)["events"]],
                         [("CL-BOX-1", "accepted"), ("CL-BOX-2", "accepted")])
        b = self.env.admin.box("CL-BOX-1").json
        self.assertEqual((b["state"], b["courier"], b["delivered_lab"]), ("delivered", "C1", "L1"))
        files = os.listdir(os.path.join(state, "tubeloop"))
        self.assertEqual(len(files), 1, files)
        self.assertRegex(files[0], r"^journal-[0-9a-f]{16}\.log$")
        self.assertNotIn(self.secret["C1"][3:19], files[0])
        rc, out, err = self.cli("C1", ["sync"], extra_env=xdg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("待发送 0", out)

        # the lab scans two of the three tubes and one that was not in the box
        rc, out, err = self.cli("L1", ["lab", "receive", "CL-BOX-1", "--journal", self.journal("lab.log")],
                                "CL-TUBE1\nCL-TUBE2\nCL-TUBE2\nCL-XTUBE9\n\nignored after the empty line\n")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("OK CL-TUBE2 已扫过", out)
        self.assertRegex(out, r"缺失\s+1: CL-TUBE3")
        self.assertRegex(out, r"多出\s+1: CL-XTUBE9")
        self.assertRegex(out, r"清单\s+3: CL-TUBE1 CL-TUBE2 CL-TUBE3")
        rc, out, err = self.cli("L1", ["--json", "lab", "receive", "CL-BOX-2", "CL-TUBE4",
                                       "--journal", self.journal("lab.log")])
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)
        self.assertEqual((r["status"], r["missing"], r["unexpected"], r["received"]), ("accepted", [], [], ["CL-TUBE4"]))
        b = self.env.admin.box("CL-BOX-1").json
        self.assertEqual((b["state"], b["missing"], b["unexpected"]), ("received", ["CL-TUBE3"], ["CL-XTUBE9"]))
        types = {a["type"] for a in self.env.admin.anomalies(region=T.COUNTY) if a["subject"] in ("CL-TUBE3", "CL-XTUBE9")}
        self.assertEqual(types, {"tube_missing", "tube_unexpected"})

        rc, out, err = self.cli("L1", ["lab", "reject", "CL-TUBE1", "--reason", "bogus", "--journal", self.journal("lab.log")])
        self.assertEqual(rc, 2)
        self.assertIn("--reason", err)
        rc, out, err = self.cli("L1", ["--lang", "en", "lab", "reject", "CL-TUBE1", "--reason", "leak",
                                       "--journal", self.journal("lab.log")])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("reject CL-TUBE1 (leak): accepted", out)
        t = self.env.admin.tube("CL-TUBE1").json
        self.assertEqual((t["state"], t["reject_reason"]), ("rejected", "leak"))
        self.assertEqual(sorted(self.events_of("L1").values()), ["box.receive", "box.receive", "tube.reject"])

        # a refusal is told: a lab may not reject a tube another lab holds (here: a courier
        # token sending a lab event is refused as forbidden)
        rc, out, err = self.cli("C1", ["lab", "reject", "CL-TUBE2", "--reason", "leak", "--journal",
                                       self.journal("wrong.log")])
        self.assertEqual(rc, 1)
        self.assertIn("forbidden", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
