#!/usr/bin/env python3
"""Several daemon processes on one port (issue 6): `tubeloopd serve --workers 2`.

The daemon runs with TUBELOOP_WORKERS=2: a supervisor and two workers, each listening on the
same port with SO_REUSEPORT. New connections reach both workers (`tubeloop_process_info` in
/metrics names the process that answered); the same batch sent at once through both is stored
exactly once; a worker killed with SIGKILL is replaced and the port keeps answering; SIGTERM
to the supervisor stops every worker cleanly (exit status 0). The tests run in order."""
import collections
import http.client
import json
import os
import re
import signal
import threading
import unittest

import tubeloop_test as T

ROUND = "WK-R1"
CONNECTIONS = 40


class Workers(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("workers", extra_env={"TUBELOOP_WORKERS": "2"})

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def request(self, method, path, token=None, body=None):
        """One request on a connection of its own (so the kernel picks a worker for it)."""
        d = self.env.daemon
        conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=60, context=d.ssl_context())
        headers = {"Host": "localhost"}
        if token:
            headers["Authorization"] = "Bearer " + token
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def answering(self):
        """How many of CONNECTIONS fresh connections each process answered, by pid."""
        seen = collections.Counter()
        for _ in range(CONNECTIONS):
            status, text = self.request("GET", "/metrics")
            self.assertEqual(status, 200)
            m = re.search(r'^tubeloop_process_info\{pid="(\d+)"\} 1$', text, re.M)
            self.assertTrue(m, "no tubeloop_process_info in /metrics")
            seen[int(m.group(1))] += 1
        return seen

    def supervisor(self):
        return self.env.daemon.proc.pid

    def parent_of(self, pid):
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])

    def test_a_both_workers_answer_on_one_port(self):
        seen = self.answering()
        self.assertEqual(len(seen), 2, seen)
        for pid in seen:
            self.assertNotEqual(pid, self.supervisor())
            self.assertEqual(self.parent_of(pid), self.supervisor(), "pid %d is not a worker" % pid)

    def test_b_one_batch_through_both_workers_is_stored_once(self):
        env, clock = self.env, T.Clock()
        env.make_round(ROUND)
        token = env.make_token("collector", "S1")[1]
        batch = [T.tube_open(clock.at(i), "WKT-%03d" % i, ROUND) for i in range(20)]
        answers = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def send():
            start.wait()
            status, text = self.request("POST", "/v1/events", token, {"events": batch})
            with lock:
                answers.append((status, json.loads(text)))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        self.assertEqual([a[0] for a in answers], [200] * 8, answers)
        accepted = collections.Counter()
        for _, body in answers:
            for e, r in zip(batch, body["results"]):
                self.assertIn(r["status"], ("accepted", "duplicate"), r)
                accepted[e["id"]] += r["status"] == "accepted"
        self.assertEqual(set(accepted.values()), {1}, "each event accepted by exactly one answer")
        self.assertEqual(env.db.count("events", "tube LIKE 'WKT-%'"), len(batch))

    def test_c_a_killed_worker_is_replaced(self):
        before = set(self.answering())
        victim = min(before)
        os.kill(victim, signal.SIGKILL)

        def replaced():
            try:
                now = set(self.answering())
            except ConnectionError:
                # a connection the kernel had queued for the killed worker's socket is reset
                # (a client sends it again); net.ipv4.tcp_migrate_req = 1 would move it
                return False
            return len(now) == 2 and victim not in now
        T.wait_for(replaced, "a new worker in place of %d" % victim, 20, 0.2)
        self.assertIn("msg=worker_exited pid=%d signal=9 restart=1" % victim, self.env.daemon.log_text())
        self.assertEqual(self.request("GET", "/readyz")[0], 200)

    def test_d_sigterm_stops_every_worker(self):
        workers = set(self.answering())
        self.assertEqual(len(workers), 2, workers)
        self.assertEqual(self.env.daemon.stop(), 0, self.env.daemon.log_tail())
        for pid in workers:
            with self.assertRaises(ProcessLookupError, msg="worker %d outlived the stop" % pid):
                os.kill(pid, 0)
        self.assertEqual(self.env.daemon.log_text().count("msg=stopped"), 2)
        self.assertIn("msg=workers_stopped status=0", self.env.daemon.log_text())


if __name__ == "__main__":
    unittest.main(verbosity=2)
