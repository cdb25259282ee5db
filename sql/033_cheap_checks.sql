-- 033: the format checks that run for every written event, person, tube and box, without
-- bounded repetitions in their regular expressions.
--
-- PostgreSQL's regular expressions expand a bounded repetition such as [0-9a-f]{64} into that
-- many states, and matching a 64-character digest against it cost 7-9 µs per row, where
-- [0-9a-f]* and a length test cost ~0.6 µs (a count over 200,000-500,000 stored rows on a
-- benchmark cluster, docs/PERFORMANCE.md, ninth update). Every event's digest, every person's
-- HMAC and every written tube or box code is checked this way, and a tube's or box's row again
-- at each update: together ~15 µs of PostgreSQL's ~175 µs per batched event.
--
-- Each check is replaced by the same predicate written as a length test and an unbounded
-- class: a string of only [0-9a-f] (ASCII) has as many bytes as characters, so
-- "octet_length(x) = 64 AND x ~ '^[0-9a-f]*$'" accepts exactly what '^[0-9a-f]{64}$' did, and
-- "char_length(x) BETWEEN 6 AND 32 AND x ~ '^[A-Za-z0-9-]*$'" what '^[A-Za-z0-9-]{6,32}$' did
-- (NULL passes both, as before). The names stay, so a violation reads as it did. Existing rows
-- are checked again once, under the lock the replacement holds (a read of each table).
-- The registry's checks (sites, labs, couriers, rounds, tokens, regions) and chain_links'
-- partition are written rarely or cost ~1 µs; they stay as they are.
ALTER TABLE events DROP CONSTRAINT events_digest_check,
  ADD CONSTRAINT events_digest_check
    CHECK (octet_length(digest) = 64 AND digest ~ '^[0-9a-f]*$') NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_digest_check;

ALTER TABLE persons DROP CONSTRAINT persons_hmac_check,
  ADD CONSTRAINT persons_hmac_check
    CHECK (octet_length(hmac) = 64 AND hmac ~ '^[0-9a-f]*$') NOT VALID;
ALTER TABLE persons VALIDATE CONSTRAINT persons_hmac_check;

ALTER TABLE tubes DROP CONSTRAINT tubes_code_check,
  ADD CONSTRAINT tubes_code_check
    CHECK (char_length(code) BETWEEN 6 AND 32 AND code ~ '^[A-Za-z0-9-]*$') NOT VALID;
ALTER TABLE tubes VALIDATE CONSTRAINT tubes_code_check;

ALTER TABLE boxes DROP CONSTRAINT boxes_code_check,
  ADD CONSTRAINT boxes_code_check
    CHECK (char_length(code) BETWEEN 6 AND 32 AND code ~ '^[A-Za-z0-9-]*$') NOT VALID;
ALTER TABLE boxes VALIDATE CONSTRAINT boxes_code_check;
