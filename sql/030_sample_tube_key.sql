-- 030: a sample's round and site are checked against its tube's, in one foreign key instead of
-- three.
--
-- samples had a foreign key per column: tube → tubes, round → rounds, site → sites. Each is a
-- query per inserted row. The one to sites cost ~9 µs a row, a sequential scan of a table too
-- small for the planner to use its index (1-2 µs for the other two), and the three together
-- ~1.3 of the ~24 s PostgreSQL spent on 134,000 batched events (pg_stat_statements on a
-- benchmark cluster, docs/PERFORMANCE.md, seventh update).
--
-- A sample's round and site are its tube's (lib/domain/custody.c copies them from the open tube
-- the sample goes into), and the tube's own foreign keys already tie those to rounds and sites.
-- One key over (tube, round, site) → tubes (code, round, site) says exactly that: a sample
-- names an existing tube, with that tube's round and site, which are therefore an existing
-- round and site. It is one query per row, by the tube's key, on a row the same transaction
-- has just written and locked. Stronger than before (a sample's site can no longer differ from
-- its tube's), and as cheap as the tube's key alone.
--
-- A tube's round and site never change once it has samples: the site that opened it owns it
-- (a second tube.open is refused), and tl_write writes the same values back. If one ever did,
-- the key would refuse the write rather than leave samples behind. The key includes the tube,
-- which is the distribution column of both tables under Citus (sql/011), so it stays legal
-- there; tests/db/citus_test.sql checks every key. Existing rows are checked once when the key
-- is validated (a read of samples and tubes; writers may go on meanwhile).
ALTER TABLE tubes ADD CONSTRAINT tubes_code_round_site UNIQUE (code, round, site);
ALTER TABLE samples DROP CONSTRAINT samples_tube_fkey, DROP CONSTRAINT samples_round_fkey,
  DROP CONSTRAINT samples_site_fkey;
ALTER TABLE samples ADD CONSTRAINT samples_tube_fkey FOREIGN KEY (tube, round, site)
  REFERENCES tubes (code, round, site) NOT VALID;
ALTER TABLE samples VALIDATE CONSTRAINT samples_tube_fkey;
