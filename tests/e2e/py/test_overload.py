#!/usr/bin/env python3
"""Overload (issue 6): more events than the daemon lets wait for group commit, or a wait longer
than it lets the oldest waiting batch have, are refused with 503 `overloaded` and Retry-After,
whole batches and nothing of them stored, instead of queueing work for minutes; the refused
batches go through when sent again.

Overload: the daemon runs with TUBELOOP_INGEST_QUEUE=300 (events waiting for group commit) and
no wait bound; sixteen collectors send a batch of 200 events each at the same moment, so at
most a couple of batches can wait while two groups are in the database.

MaxWait: the daemon runs with TUBELOOP_INGEST_MAX_WAIT=0.3 (seconds); a session holds the
events table so that no write can finish (LOCK TABLE ... IN SHARE MODE), two groups wait in
the database, one batch waits in the queue; once it has waited longer than 0.3 s a new batch
is refused at once, and after the lock goes everything waiting is stored and the refused
batch goes through when sent again. (With the bound off, the new batch waits behind the lock
too: the test then fails on its 30 s read timeout.) The refusal costs no database round trip:
the session also holds the tokens table when the new batch comes, and the refusal is still
immediate (a token lookup first would wait for the lock).

QueueFull: the same with the queue full in events (TUBELOOP_INGEST_QUEUE=5, no wait bound): a
batch that would overfill it is refused at once too, its events counted from the body's text
before any decoding.

AfterTokenLookup: the queue is asked again after the token lookup, before the decoding: a
batch that passed the first look and then waited for its token (the tokens table held by a
second session) while the queue went past its bound gets 503, not the 400 of its malformed
body.

SecondGroup: while one group is in the database, a second starts only for a queue worth it
(--ingest-second-group, default 32 events, or a batch waiting 20 ms): held the same way, a
single-event batch waits, a later arrival takes it along, and a batch of 40 starts at once.
GroupIsolation: a database error in a group of several batches fails none of them outright: the
group rolls back and each batch is tried alone, its events judged again by the rules on the
facts as stored. A trigger refuses one tube (a stand-in for any error the rules in C cannot
foresee), in the write or, deferred, at COMMIT; its batch shares a group with a batch of a
sampled person that its own seal had the rules refuse: that batch is accepted and stored
whole (the event body, the person with every encrypted field), the poisoned one gets 500 and
leaves nothing behind."""
import http.client
import json
import random
import re
import subprocess
import threading
import time
import unittest

import tubeloop_test as T

ROUND = "OV-R1"
SENDERS = 16


class Overload(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("overload", extra_env={"TUBELOOP_INGEST_QUEUE": "300", "TUBELOOP_INGEST_MAX_WAIT": "0"})

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


class HeldWrites:
    """A daemon whose writes are held: a psql session holds the events table (LOCK TABLE ...
    IN SHARE MODE), so that every group waits in the database until it lets go."""

    def gauge(self, name):
        r = self.env.daemon.client(None).get("/metrics")
        self.assertEqual(r.status, 200)
        m = re.search(r"^%s ([0-9.]+)$" % name, r.text, re.M)
        self.assertTrue(m, name + " is not in /metrics")
        return float(m.group(1))

    def writes_waiting(self):
        return int(self.env.db.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                      " AND datname = current_database() AND query LIKE '%tl_write%'"))

    def hold(self, table="events", mode="SHARE"):
        holder = subprocess.Popen([T.PG_BIN + "/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                   "-d", self.env.db.conninfo], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        holder.stdin.write("BEGIN;\nLOCK TABLE %s IN %s MODE;\nSELECT 'held';\n" % (table, mode))
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline().strip(), "held")
        return holder

    def accepted(self, answers, keys):
        for k in keys:
            self.assertEqual(answers[k].status, 200, answers[k].text)
            self.assertEqual({x["status"] for x in answers[k].json["results"]}, {"accepted"})

    def sender(self, token, bodies, tokens=None):
        """start(k) posts bodies[k] from a thread of its own (with tokens[k] when given, else
        token); answers[k] is its answer, threads the threads started."""
        answers, threads = {}, []

        def send(k):
            answers[k] = self.env.daemon.client((tokens or {}).get(k, token)).post("/v1/events", bodies[k])

        def start(k):
            threads.append(threading.Thread(target=send, args=(k,)))
            threads[-1].start()
        return answers, threads, start

    def two_groups_stuck(self, start, keys):
        """start()s the batches of keys one by one, each until it is a group stuck in the
        database (the daemons of these tests let two in at once)."""
        for n, k in enumerate(keys, 1):
            start(k)
            T.wait_for(lambda: self.writes_waiting() == n, "%d stuck writes" % n, 20, 0.02)

    def let_go(self, holder):
        holder.stdin.write("ROLLBACK;\n")
        holder.stdin.close()
        holder.wait(20)
        holder.stdout.close()


class HeldQueue(HeldWrites):
    """The refusal before any database round trip, on a daemon whose writes are held: two
    groups wait in the database (the daemons of these tests start a second group for any
    waiting batch, --ingest-second-group 1), batch C waits in the queue until the bound acts;
    then the session also holds the tokens table, and batch D must still be refused at once (a
    token lookup first would wait for the lock). After the lock goes everything waiting is
    stored, and D goes through when sent again."""

    def refused_at_once(self, prefix, c_events, past_bound, what):
        env, clock = self.env, T.Clock()
        env.make_round(ROUND)
        token = env.make_token("collector", "S1")[1]
        batches = {k: [T.tube_open(clock.at(i), "%s-%s-01" % (prefix, k), ROUND)] for i, k in enumerate("ABD")}
        batches["C"] = [T.tube_open(clock.at(10 + i), "%s-C-%02d" % (prefix, i), ROUND) for i in range(c_events)]
        answers, threads, start = self.sender(token, {k: {"events": v} for k, v in batches.items()})

        holder = self.hold()
        try:
            # A and B: the two groups the daemon lets into the database at once, both stuck
            self.two_groups_stuck(start, ("A", "B"))
            # C waits in the queue until the bound acts
            start("C")
            T.wait_for(lambda: self.gauge("tubeloop_ingest_queued_events") == c_events, "C queued", 20, 0.02)
            T.wait_for(past_bound, what, 20, 0.02)
            # D must be refused without a database round trip: not even the token lookup,
            # which would now wait for the tokens table as long as it is held
            holder.stdin.write("LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE;\nSELECT 'tokens held';\n")
            holder.stdin.flush()
            self.assertEqual(holder.stdout.readline().strip(), "tokens held")
            d = env.daemon
            conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=30, context=d.ssl_context())
            t0 = time.monotonic()
            conn.request("POST", "/v1/events", body=json.dumps({"events": batches["D"]}).encode(),
                         headers={"Authorization": "Bearer " + token, "Content-Type": "application/json",
                                  "Host": "localhost"})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            self.assertLess(time.monotonic() - t0, 2.0, "the refusal was not immediate")
            conn.close()
            self.assertEqual((resp.status, body["error"]["code"]), (503, "overloaded"), body)
            self.assertTrue(int(resp.getheader("Retry-After") or 0) >= 1, resp.getheaders())
            self.assertEqual(answers, {}, "an answer came while the table was held")
        finally:
            self.let_go(holder)
        for th in threads:
            th.join(60)
        self.accepted(answers, "ABC")
        self.assertEqual(self.gauge("tubeloop_ingest_queued_events"), 0)
        self.assertEqual(env.db.count("events", "tube LIKE '%s-%%'" % prefix), 2 + c_events)
        env.daemon.client(token).send_ok(batches["D"])
        self.assertEqual(env.db.count("events", "tube LIKE '%s-D-%%'" % prefix), 1)


class MaxWait(HeldQueue, unittest.TestCase):
    """The queue full in time: C has waited longer than --ingest-max-wait (0.3 s). (With the
    bound off, D waits behind the lock too: the test then fails on its 30 s read timeout.)"""

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("maxwait", extra_env={"TUBELOOP_INGEST_MAX_WAIT": "0.3", "TUBELOOP_INGEST_SECOND_GROUP": "1"})

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def test_a_batch_behind_a_long_wait_is_refused_at_once(self):
        self.refused_at_once("MW", 1, lambda: self.gauge("tubeloop_ingest_oldest_wait_seconds") > 0.35,
                             "C's wait past 0.3 s")


class QueueFull(HeldQueue, unittest.TestCase):
    """The queue full in events: C's 5 events fill --ingest-queue 5 (no wait bound), and D is
    refused before its body is decoded, its events counted from the text."""

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("queuefull", extra_env={"TUBELOOP_INGEST_QUEUE": "5", "TUBELOOP_INGEST_MAX_WAIT": "0",
                                                "TUBELOOP_INGEST_SECOND_GROUP": "1"})

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def test_a_batch_that_would_overfill_the_queue_is_refused_at_once(self):
        self.refused_at_once("QF", 5, lambda: True, "C queued")


class AfterTokenLookup(HeldWrites, unittest.TestCase):
    """The queue is asked again after the token lookup, before the body is decoded. Held as in
    MaxWait (bound 1 s): A and B stuck in the database, C waiting in the queue; then a second
    session holds the tokens table, and E, sent while C has waited less than the bound, passes
    the first look and waits for its token. E's body is malformed. When the tokens table goes,
    C has waited past the bound: E must get 503 overloaded, not the 400 of its decoding (which
    is what it got when the queue was asked only before the lookup: in a burst that lookup
    waits behind the writes, and the decoding of each such batch was work for nothing). E has
    a token of its own, which the daemon has not seen: a token it has seen is answered from its
    cache, without a lookup to wait for (authcache.h)."""

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("aftertoken", extra_env={"TUBELOOP_INGEST_MAX_WAIT": "1", "TUBELOOP_INGEST_SECOND_GROUP": "1"})

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def lookups_waiting(self):
        return int(self.env.db.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                      " AND datname = current_database() AND query LIKE '%tokens%'"))

    def test_a_batch_is_refused_again_after_its_token_lookup(self):
        env, clock = self.env, T.Clock()
        env.make_round(ROUND)
        token = env.make_token("collector", "S1")[1]
        batches = {k: {"events": [T.tube_open(clock.at(i), "AT-%s-01" % k, ROUND)]} for i, k in enumerate("ABC")}
        batches["E"] = {"events": "not a list"}
        token_e = env.make_token("collector", "S1")[1]
        answers, threads, start = self.sender(token, batches, {"E": token_e})

        holder = self.hold()
        tokens = None
        try:
            self.two_groups_stuck(start, ("A", "B"))
            start("C")
            T.wait_for(lambda: self.gauge("tubeloop_ingest_queued_events") == 1, "C queued", 20, 0.02)
            tokens = self.hold("tokens", "ACCESS EXCLUSIVE")
            start("E")
            T.wait_for(lambda: self.lookups_waiting() == 1, "E's token lookup waiting", 20, 0.02)
            self.assertLess(self.gauge("tubeloop_ingest_oldest_wait_seconds"), 1.0,
                            "E came after the bound: the first look refused it already")
            T.wait_for(lambda: self.gauge("tubeloop_ingest_oldest_wait_seconds") > 1.05, "C's wait past 1 s", 20, 0.02)
            self.let_go(tokens)
            tokens = None
            T.wait_for(lambda: "E" in answers, "E's answer", 20, 0.02)
            e = answers["E"]
            self.assertEqual((e.status, e.error_code), (503, "overloaded"), e.text)
        finally:
            if tokens:
                self.let_go(tokens)
            self.let_go(holder)
        for th in threads:
            th.join(60)
        self.accepted(answers, "ABC")
        # the same body with room in the queue: its decoding answers
        e = env.daemon.client(token).post("/v1/events", batches["E"])
        self.assertEqual(e.status, 400, e.text)


class SecondGroup(HeldWrites, unittest.TestCase):
    """While one group is in the database, a second starts only for a queue worth it (default
    --ingest-second-group 32 events, or a batch that has waited 20 ms when another arrives or a
    group ends): a trickle of single scans goes one group at a time, in bigger groups, instead
    of paying a group's fixed cost twice as often. With the writes held: a single-event batch
    behind the stuck group waits in the queue; the next one, arriving when that one has waited
    longer than 20 ms, takes both into a second group; and a batch of 40 events starts a second
    group at once. (With a second group for any waiting batch, the first check fails.)"""

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("secondgroup")

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def test_a_second_group_only_for_a_queue_worth_it(self):
        env, clock = self.env, T.Clock()
        env.make_round(ROUND)
        token = env.make_token("collector", "S1")[1]
        batches = {k: [T.tube_open(clock.at(i), "SG-%s-01" % k, ROUND)] for i, k in enumerate("ABCD")}
        batches["E"] = [T.tube_open(clock.at(10 + i), "SG-E-%02d" % i, ROUND) for i in range(40)]
        answers, threads, start = self.sender(token, {k: {"events": v} for k, v in batches.items()})

        def queued():
            return self.gauge("tubeloop_ingest_queued_events")

        holder = self.hold()
        try:
            start("A")
            T.wait_for(lambda: self.writes_waiting() == 1, "A's group stuck", 20, 0.02)
            start("B")
            T.wait_for(lambda: queued() == 1, "B queued", 20, 0.02)
            time.sleep(0.5)
            self.assertEqual((self.writes_waiting(), queued()), (1, 1),
                             "a single-event batch started a second group")
            start("C")
            T.wait_for(lambda: self.writes_waiting() == 2 and queued() == 0, "B and C in a second group", 20, 0.02)
            self.assertEqual(answers, {}, "an answer came while the table was held")
        finally:
            self.let_go(holder)
        for th in threads:
            th.join(60)
        holder = self.hold()
        try:
            start("D")
            T.wait_for(lambda: self.writes_waiting() == 1, "D's group stuck", 20, 0.02)
            start("E")
            T.wait_for(lambda: self.writes_waiting() == 2 and queued() == 0, "E in a second group", 20, 0.02)
        finally:
            self.let_go(holder)
        for th in threads:
            th.join(60)
        self.accepted(answers, "ABCDE")
        self.assertEqual(env.db.count("events", "tube LIKE 'SG-%'"), 44)
        # /metrics shows where the time went: five batches queued, four groups (A, B + C, D,
        # E) through every step (BEGIN sent with the load, COMMIT with the write: no group
        # sent a COMMIT alone), B's half second in the queue, A's in the write held
        text = env.daemon.client(None).get("/metrics").text
        seen = {}
        for kind, step, value in re.findall(r'^tubeloop_ingest_step_seconds_(count|sum)\{step="(\w+)"\} (\S+)$',
                                            text, re.M):
            seen[(kind, step)] = float(value)
        steps = ("acquire", "load", "rules", "write")
        self.assertEqual({k: seen.get(("count", k)) for k in ("queue",) + steps + ("commit", "begin")},
                         dict([("queue", 5.0)] + [(k, 4.0) for k in steps] + [("commit", 0.0), ("begin", None)]),
                         text)
        self.assertGreater(seen[("sum", "queue")], 0.5)
        self.assertGreater(seen[("sum", "write")], 0.5)
        self.assertLess(seen[("sum", "load")], seen[("sum", "write")])


class GroupIsolation(HeldWrites, unittest.TestCase):
    """One request's database error does not spill onto the requests of its group. Two groups
    are held in the database, the first opening tube <p>-A-01 with a person in it. Behind them
    wait batch P (it seals <p>-A-01, then opens the tube a trigger refuses) and batch A (a
    person sampled into <p>-A-01, name and phone given); they go into one group when the hold
    ends. There P's seal makes the rules refuse A's sample (the tube is sealed), and then the
    group fails on P's second tube: in its write (a row trigger) or at COMMIT (a deferred
    constraint trigger). Each batch is tried alone on the facts as stored: A's sample is
    accepted (the seal was never stored) and stored whole, as if A had been alone from the
    start; P is answered 500 with nothing of it stored."""

    @classmethod
    def setUpClass(cls):
        cls.env = T.Env("isolation", extra_env={"TUBELOOP_INGEST_SECOND_GROUP": "1"})
        cls.env.make_round(ROUND)
        cls.env.db.psql("CREATE FUNCTION gi_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                        " RAISE EXCEPTION 'a tube this test refuses'; END $$")
        cls.env.db.psql("CREATE TRIGGER gi_poison BEFORE INSERT OR UPDATE ON tubes FOR EACH ROW"
                        " WHEN (NEW.code = 'GI-POISON') EXECUTE FUNCTION gi_poison()")
        cls.env.db.psql("CREATE CONSTRAINT TRIGGER gc_poison AFTER INSERT OR UPDATE ON tubes"
                        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                        " WHEN (NEW.code = 'GC-POISON') EXECUTE FUNCTION gi_poison()")

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def test_a_group_failing_in_its_write_is_retried_batch_by_batch(self):
        self.isolated("GI", "write", 61)

    def test_a_group_failing_at_commit_is_retried_batch_by_batch(self):
        self.isolated("GC", "commit", 62)

    def isolated(self, prefix, step, seed):
        env, clock = self.env, T.Clock()
        token = env.make_token("collector", "S1")[1]
        rng = random.Random(seed)
        rid, first = T.resident_id(rng), T.resident_id(rng)
        tube, poison = prefix + "-A-01", prefix + "-POISON"
        batches = {"X1": [T.tube_open(clock.at(0), tube, ROUND), T.sample_add(clock.at(1), tube, T.person(first))],
                   "X2": [T.tube_open(clock.at(2), prefix + "-X2-01", ROUND)],
                   "P": [T.tube_seal(clock.at(3), tube), T.tube_open(clock.at(4), poison, ROUND)],
                   "A": [T.sample_add(clock.at(5), tube, T.person(rid, "王小明", "13800138000"))]}
        answers, threads, start = self.sender(token, {k: {"events": v} for k, v in batches.items()})

        holder = self.hold()
        try:
            self.two_groups_stuck(start, ("X1", "X2"))
            start("P")
            T.wait_for(lambda: self.gauge("tubeloop_ingest_queued_events") == 2, "P queued", 20, 0.02)
            start("A")
            T.wait_for(lambda: self.gauge("tubeloop_ingest_queued_events") == 3, "A queued", 20, 0.02)
        finally:
            self.let_go(holder)
        for th in threads:
            th.join(60)
        self.accepted(answers, ("X1", "X2", "A"))
        p = answers["P"]
        self.assertEqual((p.status, p.error_code), (500, "internal"), p.text)
        # the group of P and A failed once at that step, then each went alone
        self.assertEqual(len(re.findall(r"ingest_failed step=%s .*batches=2 " % step, env.daemon.log_text())), 1,
                         env.daemon.log_tail())
        # nothing of P: the tube is open, not sealed, and the refused one does not exist
        self.assertEqual(env.db.count("events", "tube = '%s' OR (tube = '%s' AND type = 'tube.seal')"
                                      % (poison, tube)), 0)
        self.assertEqual(env.db.count("tubes", "code = '%s'" % poison), 0)
        self.assertEqual(env.db.psql("SELECT sealed_at IS NULL, sampled FROM tubes WHERE code = '%s'" % tube),
                         [["t", "2"]])
        # all of A: the event with its body, the sample, the person with every field
        body = env.db.json("SELECT body FROM events WHERE id = '%s'" % batches["A"][0]["id"])
        self.assertEqual((body["tube"], body["person"]["id_masked"]), (tube, T.mask_rid(rid)))
        hmac = body["person"]["hmac"]
        self.assertEqual(env.db.count("samples", "tube = '%s' AND person = '%s'" % (tube, hmac)), 1)
        self.assertEqual(env.db.psql("SELECT id_enc IS NOT NULL, name_enc IS NOT NULL, phone_enc IS NOT NULL,"
                                     " name_masked, phone_masked FROM persons WHERE hmac = '%s'" % hmac),
                         [["t", "t", "t", T.mask_name("王小明"), T.mask_phone("13800138000")]])
        found = env.client("viewer", T.COUNTY).lookup(rid)
        self.assertEqual(found.status, 200, found.text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
