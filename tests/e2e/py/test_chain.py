#!/usr/bin/env python3
"""The tamper-evident custody log (docs/RELIABILITY.md §9) through the real daemon.

A few hundred events of two counties are sent over TLS; events of the previous day are added
behind the API (so there are four partitions: two counties × two days); the daemon's sealer
chains them and signs checkpoints of every head. `tubeloopd verify` passes. Then, each on a
fresh copy of that database and as the database superuser (the append-only rule and triggers
switched off for the tampering only), someone
  - flips a byte in one event's payload                → altered, naming the event
  - deletes one event                                  → missing, naming the event
  - cuts off the tail of a chain (events, links, head) → truncated (against the checkpoint)
  - rewrites a whole chain consistently, recomputing every link with the published algorithm
    but without the signing key                        → rewritten (against the checkpoint)
  - ... and also moves the checkpoints to the new links → bad_signature
  - inserts an event with the queue trigger off        → unchained
and verify names it and exits 1. Also: the database's encoding (tl_chain_canon) gives the same
link as the C unit test's vector; a keys file with another sign key fails every checkpoint.

The sealer hashes in C (sql/018) with the same code as verify, so verify alone would not see a
sealer that encodes wrongly: every stored link is also recomputed with the SQL encoding
(tl_chain_canon, written independently), and each chain must follow (received_at, id).
TwoDaemons: two daemons on one database seal one at a time (the advisory lock): while a third
session holds the lock nothing is sealed and nothing fails; then, with events coming in through
both, every event is chained exactly once and the chains verify.
"""
import os
import random
import re
import threading
import time
import unittest

# seal every second, sign a moved head after a second (set before the daemon starts)
os.environ["TUBELOOP_SEAL_INTERVAL"] = "1"
os.environ["TUBELOOP_CHECKPOINT_INTERVAL"] = "1"

import tubeloop_test as T  # noqa: E402
from tubeloop_test import person, sample_add, tube_open, tube_seal  # noqa: E402

ROUND_A, ROUND_B = "CH-A", "CH-B"


def send_tubes(client, site, rnd, clock, ntubes, first_minute=0):
    """ntubes tubes of ten samples (open, 10 × add, seal) from site, in batches of about 96."""
    rng = random.Random("%s-%s-%d" % (site, rnd, first_minute))
    minute = first_minute
    batch = []
    for t in range(ntubes):
        tube = "CH-%s-%s-%04d" % (site, rnd, first_minute + t)
        minute += 1
        batch.append(tube_open(clock.at(minute % 300), tube, rnd))
        for _ in range(10):
            batch.append(sample_add(clock.at(minute % 300), tube, person(T.resident_id(rng))))
        batch.append(tube_seal(clock.at(minute % 300), tube, 10))
        if len(batch) >= 96:
            client.send_ok(batch)
            batch = []
    if batch:
        client.send_ok(batch)


def links_against_sql(db):
    """Stored links that differ from the chain recomputed with the SQL encoding
    (tl_chain_canon + sha256, from link(0)), and links out of (received_at, id) order."""
    wrong = db.scalar("""SELECT count(*) FROM (
        SELECT l.link, tl_chain_agg(decode(repeat('00', 32), 'hex'),
                                    tl_chain_canon(l.partition, l.seq, e))
                 OVER (PARTITION BY l.partition ORDER BY l.seq ROWS UNBOUNDED PRECEDING) AS want
        FROM chain_links l JOIN events e ON e.id = l.event_id) x WHERE x.link IS DISTINCT FROM x.want""")
    unordered = db.scalar("""SELECT count(*) FROM (
        SELECT l.seq, row_number() OVER (PARTITION BY l.partition ORDER BY e.received_at, e.id) AS n
        FROM chain_links l JOIN events e ON e.id = l.event_id) x WHERE x.seq <> x.n""")
    return int(wrong), int(unordered)


class Chain(T.EnvCase):
    label = "chain"

    @classmethod
    def prepare(cls):
        e = cls.env
        clock = T.Clock(hours_back=6)
        e.make_round(ROUND_A, pool_size=10, day=clock.day())
        e.make_round(ROUND_B, pool_size=10, region=T.OTHER_COUNTY, day=clock.day())
        minute = 0
        for site, rnd, ntubes in (("S1", ROUND_A, 9), ("S3", ROUND_A, 6), ("S9", ROUND_B, 12)):
            send_tubes(e.client("collector", site), site, rnd, clock, ntubes, minute)
            minute += ntubes
        # The previous day's events, written behind the API (the queue trigger still sees them).
        e.db.psql("""INSERT INTO events SELECT gen_random_uuid(), type, at - interval '1 day',
                     sender_role, sender, received_at - interval '1 day', digest, tube, box, body,
                     anomalies FROM events ORDER BY id LIMIT 120""")
        cls.nevents = e.db.count("events")
        cls.wait_sealed(e.db, cls.nevents)
        cls.partitions = [r[0] for r in e.db.psql("SELECT partition FROM chain_heads ORDER BY 1")]
        # the daemon is stopped so that the database can be copied for each tampering
        cls.log = e.daemon.log_text()
        e.daemon.stop()
        e.db.close_session()
        cls.keys = e.daemon.keys

    @staticmethod
    def wait_sealed(db, nevents, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            links = db.count("chain_links")
            pending = db.count("chain_pending")
            unsigned = db.count("chain_heads", "checkpoint_seq <> seq")
            if links == nevents and pending == 0 and unsigned == 0:
                return
            time.sleep(0.3)
        raise AssertionError("not sealed in %ss: links=%s of %s pending=%s unsigned heads=%s"
                             % (timeout, links, nevents, pending, unsigned))

    def verify(self, db, *extra, keys=None):
        rc, out, err = T.run([T.need_env("TUBELOOPD"), "verify", "--db", db.conninfo,
                              "--keys", keys or self.keys] + list(extra), check=False)
        self.assertIn(rc, (0, 1), err + out)
        return rc, out

    def copy(self):
        db = T.Database("chain_copy", template=self.env.db.name)
        self.addCleanup(db.drop)
        return db

    def findings(self, out, kind):
        return [l for l in out.splitlines() if l.strip().startswith("finding kind=%s " % kind)]

    def chain_of(self, db, partition):
        """[(seq, event id)] of a partition."""
        return [(int(s), i) for s, i in db.psql(
            "SELECT seq, event_id FROM chain_links WHERE partition = '%s' ORDER BY seq" % partition)]

    # ----------------------------------------------------------------------------------------

    def test_01_sealed_and_verified(self):
        self.assertNotIn("chain_step_failed", self.log)
        # two counties × two days
        self.assertEqual(len(self.partitions), 4, self.partitions)
        self.assertEqual(sorted({p.split("/")[0] for p in self.partitions}), [T.COUNTY, T.OTHER_COUNTY])
        self.assertEqual(len({p.split("/")[1] for p in self.partitions}), 2)
        self.assertGreaterEqual(self.nevents, 400)
        db = self.env.db
        # every partition's chain is dense, every event is in exactly one
        self.assertEqual(db.scalar("SELECT count(DISTINCT event_id) FROM chain_links"), str(self.nevents))
        self.assertEqual(db.psql("SELECT partition FROM chain_links GROUP BY partition"
                                 " HAVING max(seq) <> count(*)"), [])
        rc, out = self.verify(db)
        self.assertEqual(rc, 0, out)
        self.assertIn("summary: 4 partition(s), %d links" % self.nevents, out)
        self.assertIn(" 0 finding(s)", out)
        # one partition only
        rc, out = self.verify(db, "--partition", self.partitions[0])
        self.assertEqual(rc, 0, out)
        self.assertIn("summary: 1 partition(s)", out)
        rc, out = self.verify(db, "--partition", "999999/2000-01-01")
        self.assertEqual(rc, 1, out)
        db.close_session()

    def test_01b_links_match_sql_encoding(self):
        """The sealer's links (C) are the links of the SQL encoding, in (received_at, id) order."""
        db = self.env.db
        self.assertEqual(db.count("chain_links"), self.nevents)
        self.assertEqual(links_against_sql(db), (0, 0))
        db.close_session()
        # and the test would see a wrong one: one link changed in a copy
        copy = self.copy()
        copy.psql("ALTER TABLE chain_links DISABLE TRIGGER chain_links_append_only")
        copy.psql("""UPDATE chain_links SET link = sha256(link)
                     WHERE (partition, seq) = (SELECT partition, max(seq) FROM chain_links
                                               GROUP BY partition ORDER BY 1 LIMIT 1)""")
        self.assertEqual(links_against_sql(copy), (1, 0))

    def test_02_sql_encoding_matches_c(self):
        """tl_chain_canon (the SQL encoding) gives test_chain.c's vector for the same row."""
        db = self.copy()
        link = db.scalar("""SELECT encode(sha256(decode(repeat('00', 32), 'hex') || tl_chain_canon(
            '230126/2021-10-08', 1, ROW('4f1c2b1e-8a8e-4c55-9d5a-0a1b2c3d4e5f', 'tube.open',
            'epoch'::timestamptz + 1633655523000000 * interval '1 microsecond', 'collector', 'S1',
            'epoch'::timestamptz + 1633655524123456 * interval '1 microsecond', repeat('ab', 32),
            'BY-T1A-0001', NULL, '{"tube": "BY-T1A-0001", "round": "R1"}', '{}')::events)), 'hex')""")
        self.assertEqual(link, "ac06dfe42ff96325024f934f24f263df2396710bdd5e689bee842ed089304412")

    def test_03_wrong_key(self):
        other = os.path.join(self.env.daemon.dir, "other-keys")
        old = os.umask(0o077)
        try:
            T.run([T.need_env("TUBELOOPD"), "gen-keys"], stdout_path=other)
        finally:
            os.umask(old)
        rc, out = self.verify(self.env.db, keys=other)
        self.env.db.close_session()
        self.assertEqual(rc, 1, out)
        self.assertTrue(self.findings(out, "bad_signature"), out)

    def test_04_flipped_byte(self):
        db = self.copy()
        part = self.partitions[1]
        seq, victim = self.chain_of(db, part)[40]
        body = db.scalar("SELECT body::text FROM events WHERE id = '%s'" % victim)
        i = body.index('"tube": "') + len('"tube": "') + 3
        flipped = body[:i] + chr(ord(body[i]) ^ 1) + body[i + 1:]
        db.psql("UPDATE events SET body = '%s'::jsonb WHERE id = '%s'" % (flipped, victim))
        rc, out = self.verify(db)
        self.assertEqual(rc, 1, out)
        altered = self.findings(out, "altered")
        self.assertEqual(len(altered), 1, out)
        self.assertIn("partition=%s seq=%d event=%s" % (part, seq, victim), altered[0])
        # the other partitions stay clean
        self.assertEqual(sum(1 for l in out.splitlines() if l.startswith("partition ") and ": ok:" in l), 3, out)

    def test_05_deleted_event(self):
        db = self.copy()
        part = self.partitions[2]
        seq, victim = self.chain_of(db, part)[17]
        db.psql("ALTER TABLE events DISABLE RULE events_no_delete")
        db.psql("DELETE FROM events WHERE id = '%s'" % victim)
        db.psql("ALTER TABLE events ENABLE RULE events_no_delete")
        self.assertEqual(db.count("events", "id = '%s'" % victim), 0)
        rc, out = self.verify(db)
        self.assertEqual(rc, 1, out)
        missing = self.findings(out, "missing")
        self.assertEqual(len(missing), 1, out)
        self.assertIn("partition=%s seq=%d event=%s" % (part, seq, victim), missing[0])

    def test_06_truncated_tail(self):
        db = self.copy()
        part = self.partitions[0]
        chain = self.chain_of(db, part)
        last = chain[-1][0]
        k = 5
        gone = [i for s, i in chain[-k:]]
        ids = ",".join("'%s'" % i for i in gone)
        db.psql("ALTER TABLE events DISABLE RULE events_no_delete")
        db.psql("ALTER TABLE chain_links DISABLE TRIGGER chain_links_append_only")
        db.psql("DELETE FROM events WHERE id IN (%s)" % ids)
        db.psql("DELETE FROM chain_links WHERE event_id IN (%s)" % ids)
        db.psql("DELETE FROM chain_heads WHERE partition = '%s'" % part)
        db.psql("ALTER TABLE chain_links ENABLE TRIGGER chain_links_append_only")
        db.psql("ALTER TABLE events ENABLE RULE events_no_delete")
        rc, out = self.verify(db)
        self.assertEqual(rc, 1, out)
        truncated = self.findings(out, "truncated")
        self.assertEqual(len(truncated), 1, out)
        self.assertIn("partition=%s seq=%d" % (part, last - k + 1), truncated[0])
        self.assertIn("the chain ends at seq %d" % (last - k), truncated[0])
        self.assertIn("the last at seq %d" % last, truncated[0])
        # a consistent head (the tamperer sets it to the new end) changes nothing
        db.psql("INSERT INTO chain_heads (partition, seq, link) SELECT partition, seq, link"
                " FROM chain_links WHERE partition = '%s' ORDER BY seq DESC LIMIT 1" % part)
        rc, out = self.verify(db, "--partition", part)
        self.assertEqual(rc, 1, out)
        self.assertEqual(len(self.findings(out, "truncated")), 1, out)

    def rewrite(self, db, part):
        """Changes every event of the partition and recomputes its links and head with the
        published algorithm (the database's own functions), as a tamperer without the key."""
        db.psql("ALTER TABLE chain_links DISABLE TRIGGER chain_links_append_only")
        db.psql("""UPDATE events e SET body = jsonb_set(e.body, '{tube}', to_jsonb(e.tube || 'X'))
                   FROM chain_links l WHERE l.event_id = e.id AND l.partition = '%s'""" % part)
        db.psql("""DO $$ DECLARE prev bytea := decode(repeat('00', 32), 'hex'); r record; BEGIN
                   FOR r IN SELECT l.seq, e FROM chain_links l JOIN events e ON e.id = l.event_id
                            WHERE l.partition = '%s' ORDER BY l.seq LOOP
                     prev := sha256(prev || tl_chain_canon('%s', r.seq, r.e));
                     UPDATE chain_links SET link = prev WHERE partition = '%s' AND seq = r.seq;
                   END LOOP;
                   UPDATE chain_heads SET link = prev WHERE partition = '%s'; END $$""" % ((part,) * 4))
        db.psql("ALTER TABLE chain_links ENABLE TRIGGER chain_links_append_only")

    def test_07_rewritten_chain(self):
        db = self.copy()
        part = self.partitions[3]
        self.rewrite(db, part)
        rc, out = self.verify(db)
        self.assertEqual(rc, 1, out)
        # every link is consistent with its event: only the signed checkpoints tell
        self.assertEqual(self.findings(out, "altered"), [], out)
        rewritten = self.findings(out, "rewritten")
        self.assertEqual(len(rewritten), 1, out)
        self.assertIn("partition=%s" % part, rewritten[0])

    def test_08_rewritten_chain_and_checkpoints(self):
        db = self.copy()
        part = self.partitions[3]
        self.rewrite(db, part)
        db.psql("ALTER TABLE chain_checkpoints DISABLE TRIGGER chain_checkpoints_append_only")
        db.psql("""UPDATE chain_checkpoints c SET link = l.link FROM chain_links l
                   WHERE l.partition = c.partition AND l.seq = c.seq AND c.partition = '%s'""" % part)
        db.psql("ALTER TABLE chain_checkpoints ENABLE TRIGGER chain_checkpoints_append_only")
        rc, out = self.verify(db)
        self.assertEqual(rc, 1, out)
        bad = self.findings(out, "bad_signature")
        self.assertTrue(bad, out)
        self.assertTrue(all("partition=%s" % part in l for l in bad), out)

    def test_09_unchained_event(self):
        db = self.copy()
        db.psql("ALTER TABLE events DISABLE TRIGGER events_chain_enqueue")
        new = db.scalar("""INSERT INTO events SELECT gen_random_uuid(), type, at, sender_role, sender,
                           received_at, digest, tube, box, body, anomalies FROM events
                           ORDER BY id LIMIT 1 RETURNING id""")
        db.psql("ALTER TABLE events ENABLE TRIGGER events_chain_enqueue")
        rc, out = self.verify(db)
        self.assertEqual(rc, 1, out)
        unchained = self.findings(out, "unchained")
        self.assertEqual(len(unchained), 1, out)
        self.assertIn("event=%s" % new, unchained[0])


class TwoDaemons(T.EnvCase):
    label = "chain2"
    log_level = "debug"  # chain_sealed lines count the events each daemon chained

    @classmethod
    def prepare(cls):
        e = cls.env
        cls.other = T.Daemon(e.db, "chain2b", log_level="debug", keys_from=e.daemon.keys).start()
        cls.clock = T.Clock(hours_back=6)
        e.make_round(ROUND_A, pool_size=10, day=cls.clock.day())
        e.make_round(ROUND_B, pool_size=10, region=T.OTHER_COUNTY, day=cls.clock.day())
        cls.a = e.client("collector", "S1")
        cls.b = cls.other.client(e.make_token("collector", "S9")[1])

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "other", None):
            cls.other.cleanup()
        super().tearDownClass()

    def sealed_by(self, daemon):
        return sum(int(n) for n in re.findall(r"msg=chain_sealed events=(\d+)", daemon.log_text()))

    def test_one_sealer_at_a_time(self):
        db = self.env.db
        # a third session holds the sealer's lock: neither daemon seals, neither fails
        db.psql("BEGIN")
        db.psql("SELECT pg_advisory_xact_lock(7420264)")
        send_tubes(self.a, "S1", ROUND_A, self.clock, 4)
        send_tubes(self.b, "S9", ROUND_B, self.clock, 4)
        held = db.count("events")
        time.sleep(3.5)  # three ticks of each sealer
        self.assertEqual(db.count("chain_links"), 0)
        self.assertEqual(db.count("chain_pending"), held)
        db.psql("COMMIT")
        # both send at once, both seal
        threads = [threading.Thread(target=send_tubes, args=(c, site, rnd, self.clock, 24, 100))
                   for c, site, rnd in ((self.a, "S1", ROUND_A), (self.b, "S9", ROUND_B))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        n = db.count("events")
        Chain.wait_sealed(db, n)
        self.assertEqual(db.scalar("SELECT count(DISTINCT event_id) FROM chain_links"), str(n))
        self.assertEqual(db.psql("SELECT partition FROM chain_links GROUP BY partition"
                                 " HAVING max(seq) <> count(*)"), [])
        self.assertEqual(links_against_sql(db), (0, 0))
        db.close_session()
        for d in (self.env.daemon, self.other):
            self.assertNotIn("chain_step_failed", d.log_text())
        # every event chained by exactly one of them
        self.assertEqual(self.sealed_by(self.env.daemon) + self.sealed_by(self.other), n)
        rc, out, err = T.run([T.need_env("TUBELOOPD"), "verify", "--db", db.conninfo,
                              "--keys", self.env.daemon.keys], check=False)
        self.assertEqual(rc, 0, err + out)

    def test_requeued_event_chained_once(self):
        """An event queued again by hand after it was chained (sql/036): the fast take does not
        look, so its seal fails on chain_links' unique event_id and rolls back; the careful
        take that follows skips it. Nothing is chained twice and the queue drains."""
        db = self.env.db
        send_tubes(self.a, "S1", ROUND_A, self.clock, 2, 200)
        Chain.wait_sealed(db, db.count("events"))
        again = [r[0] for r in db.psql("SELECT event_id FROM chain_links ORDER BY seq LIMIT 3")]
        db.psql("INSERT INTO chain_pending (event_id) SELECT unnest(ARRAY[%s]::uuid[])"
                % ",".join("'%s'" % i for i in again))
        send_tubes(self.b, "S9", ROUND_B, self.clock, 2, 200)
        n = db.count("events")
        Chain.wait_sealed(db, n)
        self.assertEqual(db.count("chain_links"), n)
        self.assertEqual(db.scalar("SELECT count(DISTINCT event_id) FROM chain_links"), str(n))
        self.assertEqual(db.psql("SELECT partition FROM chain_links GROUP BY partition"
                                 " HAVING max(seq) <> count(*)"), [])
        db.close_session()
        logs = self.env.daemon.log_text() + self.other.log_text()
        self.assertRegex(logs, r"msg=chain_step_failed step=append .*sqlstate=23505")
        rc, out, err = T.run([T.need_env("TUBELOOPD"), "verify", "--db", db.conninfo,
                              "--keys", self.env.daemon.keys], check=False)
        self.assertEqual(rc, 0, err + out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
