#!/usr/bin/env python3
"""Overload (issue 6): more events than the daemon lets wait for group commit are refused with
503 `overloaded` and Retry-After, whole batches and nothing of them stored, instead of queueing
work for minutes; the refused batches go through when sent again.

The daemon runs with TUBELOOP_INGEST_QUEUE=300 (events waiting for group commit); sixteen
collectors send a batch of 200 events each at the same moment, so at most a couple of batches
can wait while two groups are in the database."""
import http.client
import json
import random
import threading
import unittest

import tubeloop_test as T

ROUND = "OV-R1"
SENDERS = 16


class Overload(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("overload", extra_env={"TUBELOOP_INGEST_QUEUE": "300"})

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def test_excess_is_refused_whole_and_retried(self):
        env, clock, rng = self.env, T.Clock(), random.Random(7)
        env.make_round(ROUND)
        token = env.make_token("collector", "S1")[1]
        batches = []
        for s in range(SENDERS):
            events = []
            for t in range(20):
                code = "OV-%02d-%02d" % (s, t)
                events.append(T.tube_open(clock.at(0), code, ROUND))
                events += [T.sample_add(clock.at(1 + i), code, T.person(T.resident_id(rng)))
                           for i in range(9)]
            batches.append(events)
        answers = [None] * SENDERS
        start = threading.Barrier(SENDERS)

        def send(i):
            d = env.daemon
            conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=120, context=d.ssl_context())
            body = json.dumps({"events": batches[i]}, ensure_ascii=False).encode()
            conn.connect()  # the TLS handshake before the barrier: the bodies arrive together
            start.wait()
            conn.request("POST", "/v1/events", body=body,
                         headers={"Authorization": "Bearer " + token, "Content-Type": "application/json",
                                  "Host": "localhost"})
            r = conn.getresponse()
            answers[i] = (r.status, r.getheader("Retry-After"), json.loads(r.read() or b"null"))
            conn.close()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(SENDERS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(180)
        self.assertTrue(all(a is not None for a in answers), answers)
        ok = [i for i, a in enumerate(answers) if a[0] == 200]
        refused = [i for i, a in enumerate(answers) if a[0] == 503]
        self.assertEqual(len(ok) + len(refused), SENDERS, [a[:2] for a in answers])
        self.assertTrue(ok, "no batch got through")
        self.assertTrue(refused, "nothing was refused: the queue bound did not act")
        for i in refused:
            status, retry, body = answers[i]
            self.assertEqual(body["error"]["code"], "overloaded", body)
            self.assertTrue(retry and int(retry) >= 1, retry)
        for i in ok:
            self.assertEqual({r["status"] for r in answers[i][2]["results"]}, {"accepted"})

        # exactly the accepted batches are stored: nothing of a refused one
        stored = {r[0] for r in env.db.psql("SELECT id FROM events")}
        for i, events in enumerate(batches):
            ids = {e["id"] for e in events}
            self.assertEqual(ids <= stored, i in ok, "batch %d: %d of %d events stored"
                             % (i, len(ids & stored), len(ids)))
            self.assertTrue(ids <= stored or not (ids & stored), "batch %d half stored" % i)

        # sent again one by one, the refused batches go through
        col = env.daemon.client(token)
        for i in refused:
            col.send_ok(batches[i])
        self.assertEqual(env.db.count("events"), SENDERS * 200)
        self.assertEqual(env.db.count("samples"), SENDERS * 180)


if __name__ == "__main__":
    unittest.main(verbosity=2)
