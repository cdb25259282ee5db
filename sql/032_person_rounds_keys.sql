-- 032: person_rounds keeps its two references by construction, not by a foreign-key check per
-- row.
--
-- person_rounds is derived: only tl_person_rounds_refresh (sql/024) writes it, one row per
-- person and round found in samples, in the transaction that wrote those samples or a later
-- one. Its foreign keys person → persons (hmac) and round → rounds (code) each ran a query per
-- written row, and the one to persons locked the person's row (FOR KEY SHARE: a change to a
-- heap page and a WAL record per person sampled in an earlier transaction). A group of ~1,650
-- persons re-derived by results spent about as much on the two checks as on everything else
-- it writes: 73-96 ms with the keys, 42-46 ms without (the same rows, in a transaction rolled
-- back each time, on a benchmark cluster; docs/PERFORMANCE.md, ninth update).
--
-- What the keys guarded holds without them, as for samples and follow-ups (sql/011, sql/030):
-- a sample's person is upserted in the sample's own transaction before it (tl_write,
-- tl_write_plain), a sample's round is its tube's, which the tube's own key ties to rounds,
-- and nothing ever deletes a person, a round, or changes their keys. db_citus checks after
-- real writes that every person_rounds row names a stored person and round.
ALTER TABLE person_rounds DROP CONSTRAINT person_rounds_person_fkey,
  DROP CONSTRAINT person_rounds_round_fkey;

UPDATE citus_distribution
SET why = 'keyed (person, round); derived from samples, its references kept by tl_write'
WHERE tbl = 'person_rounds';
