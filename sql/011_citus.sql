-- 011_citus: the schema kept ready for Citus (distributed PostgreSQL, DESIGN §8), and the map
-- of how each table would be distributed. docs/SCALING.md explains the map; tests/db/citus_test
-- checks Citus's rules against the live catalog with it. Plain PostgreSQL 15 runs this as it
-- is: nothing here needs the citus extension.
--
-- citus_distribution is the one place the distribution lives: one row per table of the schema
-- (a table missing here fails the test, so a migration that adds a table adds its row).
--   kind       'distributed' (hash-sharded by column), 'reference' (a full copy on every
--              node, for small tables read by every write), 'local' (stays on the coordinator)
--   colocation distributed tables in one group hash equal values to the same shard, so joins
--              and foreign keys on the distribution column stay inside one shard
-- With Citus installed, the rows become calls in this order (reference tables first, then each
-- group's anchor, then the rest with colocate_with the anchor):
--   SELECT create_reference_table(tbl) ... WHERE kind = 'reference';
--   SELECT create_distributed_table(tbl, dist_column, colocate_with => anchor) ...;
--   SELECT citus_add_local_table_to_metadata(tbl) ... WHERE kind = 'local';
CREATE TABLE citus_distribution (
  tbl          text PRIMARY KEY,
  kind         text NOT NULL CHECK (kind IN ('distributed', 'reference', 'local')),
  dist_column  text,
  colocation   text,
  why          text NOT NULL,
  CHECK ((kind = 'distributed') = (dist_column IS NOT NULL AND colocation IS NOT NULL))
);

INSERT INTO citus_distribution (tbl, kind, dist_column, colocation, why) VALUES
  -- The registry and the credentials: small (thousands of rows), read by nearly every write and
  -- every authorisation; a copy on every node keeps those joins local.
  ('regions',  'reference', NULL, NULL, 'GB/T 2260 tree, read by every scope check and roll-up'),
  ('sites',    'reference', NULL, NULL, 'sampling points (~20,000 in the largest city), joined by tubes, boxes, samples'),
  ('labs',     'reference', NULL, NULL, 'labs, joined by tubes, boxes, receipts'),
  ('couriers', 'reference', NULL, NULL, 'couriers, joined by boxes'),
  ('rounds',   'reference', NULL, NULL, 'screening rounds, joined by tubes, samples, stats'),
  ('tokens',   'reference', NULL, NULL, 'token hashes, looked up by every request'),
  -- Custody, keyed by the tube: a tube's row, its samples, its follow-ups and its anomalies are
  -- written together by one event and read together by a trace.
  ('tubes',     'distributed', 'code',    'custody', 'every custody event names its tube'),
  ('samples',   'distributed', 'tube',    'custody', 'written with its tube; FK to tubes stays inside the shard'),
  ('followups', 'distributed', 'tube',    'custody', 'opened by its tube''s result, keyed (tube, person)'),
  ('anomalies', 'distributed', 'subject', 'custody', 'keyed (subject, id): a tube''s anomalies live with the tube'),
  ('boxes',     'distributed', 'code',    'custody', 'box events name the box; its tubes hash elsewhere'),
  ('receipts',  'distributed', 'box',     'custody', 'written by box.receive with its box; FK to boxes stays inside the shard'),
  -- The event log: appended once per event, deduplicated by id.
  ('events',        'distributed', 'id',       'event', 'append-only, the duplicate check is by id'),
  ('chain_pending', 'distributed', 'event_id', 'event', 'filled by a trigger on events: beside the event'),
  -- Persons, keyed by the HMAC of the ID number: the person lookup is by that HMAC.
  ('persons',       'distributed', 'hmac',   'person', 'looked up by HMAC only'),
  ('person_rounds', 'distributed', 'person', 'person', 'keyed (person, round); FK to persons stays inside the shard'),
  -- Roll-ups, keyed by round: a dashboard reads a region''s row and its children''s of one round.
  ('stats',       'distributed', 'round', 'rollup', 'keyed (round, code): one round''s figures in one shard'),
  ('stats_delta', 'distributed', 'round', 'rollup', 'deltas folded into stats of the same round'),
  -- The custody chain needs one sequence per partition and one link per event at once
  -- (PRIMARY KEY (partition, seq) and UNIQUE (event_id)): no single distribution column serves
  -- both, and its one sealer at a time (advisory lock) writes it in order anyway.
  ('chain_links',       'local', NULL, NULL, 'two unique keys on different columns; written by one sealer'),
  ('chain_heads',       'local', NULL, NULL, 'one row per partition, written by the sealer'),
  ('chain_checkpoints', 'local', NULL, NULL, 'signed checkpoints, a few per partition and day'),
  -- Bookkeeping of `tubeloopd migrate` and this map.
  ('schema_migrations',  'local', NULL, NULL, 'migration bookkeeping, coordinator only'),
  ('citus_distribution', 'local', NULL, NULL, 'this map');

-- Citus refuses a foreign key between distributed tables that does not join on the distribution
-- column of both. samples and follow-ups are distributed by tube (they are written with it), the
-- persons by HMAC (they are looked up by it), so their person → persons (hmac) keys would cross
-- shards. They go; the application keeps what they guarded: tl_write (004) upserts the batch's
-- persons before its samples and follow-ups in the same transaction, and nothing ever deletes a
-- person or changes an HMAC (the key of persons). tests/db/citus_test.sql checks that no sample
-- or follow-up points at a missing person after a real write.
ALTER TABLE samples DROP CONSTRAINT samples_person_fkey;
ALTER TABLE followups DROP CONSTRAINT followups_person_fkey;
