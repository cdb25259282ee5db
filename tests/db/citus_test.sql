-- Citus's rules checked against the live schema (pg_constraint, pg_index, pg_attribute) with
-- the distribution map of sql/011_citus.sql (citus_distribution; docs/SCALING.md). Run by
-- citus_test.sh on a fresh, migrated database after schema_test.sql has written real rows
-- through tl_write. Each rule that fails raises an exception and psql stops (ON_ERROR_STOP).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

-- Every breach of the rules, one row each. The map (not this function) says how a table is
-- distributed; this function says whether Citus would accept it.
CREATE FUNCTION pg_temp.citus_violations() RETURNS TABLE (tbl text, problem text)
LANGUAGE sql AS $$
  WITH t AS (
    SELECT c.oid, c.relname::text AS tbl, m.kind, m.dist_column, m.colocation,
           a.attnum AS dist_attnum, a.atttypid AS dist_type, a.attnotnull AS dist_notnull
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
    LEFT JOIN citus_distribution m ON m.tbl = c.relname
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = m.dist_column AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  )
  -- every table is in the map
  SELECT tbl, 'not in citus_distribution: say how it is distributed' FROM t WHERE kind IS NULL
  UNION ALL
  -- the distribution column exists and is NOT NULL (Citus refuses a NULL shard key)
  SELECT tbl, format('distribution column %s does not exist', dist_column)
  FROM t WHERE kind = 'distributed' AND dist_attnum IS NULL
  UNION ALL
  SELECT tbl, format('distribution column %s may be NULL', dist_column)
  FROM t WHERE kind = 'distributed' AND NOT dist_notnull
  UNION ALL
  -- a co-location group hashes one type
  SELECT t1.tbl, format('group %s mixes types %s and %s', t1.colocation,
                        format_type(t1.dist_type, NULL), format_type(t2.dist_type, NULL))
  FROM t t1 JOIN t t2 ON t1.colocation = t2.colocation AND t1.dist_type <> t2.dist_type
  WHERE t1.kind = 'distributed' AND t2.kind = 'distributed'
  UNION ALL
  -- every primary key, unique constraint, exclusion constraint and unique index (partial ones
  -- too) of a distributed table includes the distribution column
  SELECT t.tbl, format('unique index %s does not include %s', i.indexrelid::regclass, t.dist_column)
  FROM t JOIN pg_index i ON i.indrelid = t.oid
  WHERE t.kind = 'distributed' AND (i.indisunique OR i.indisexclusion)
    AND NOT (t.dist_attnum = ANY (i.indkey::int2[]))
  UNION ALL
  -- foreign keys
  SELECT ch.tbl, format('%s: %s → %s', k.conname, coalesce(ch.kind, '?'), coalesce(pa.kind, '?')) ||
    CASE
      WHEN ch.kind = 'reference' THEN ': a reference table may only reference reference tables'
      WHEN ch.kind = 'local' THEN ': a coordinator-local table may not reference a distributed table'
      WHEN pa.kind = 'local' THEN ': a distributed table may not reference a coordinator-local table'
      WHEN ch.colocation IS DISTINCT FROM pa.colocation THEN ': tables of different co-location groups'
      ELSE ': does not join the distribution columns of both tables'
    END
  FROM pg_constraint k
  JOIN t ch ON ch.oid = k.conrelid
  JOIN t pa ON pa.oid = k.confrelid
  WHERE k.contype = 'f' AND NOT (
    pa.kind = 'reference'                                   -- anything may reference a copy on every node
    OR (ch.kind = 'local' AND pa.kind = 'local')
    OR (ch.kind = 'distributed' AND pa.kind = 'distributed' AND ch.colocation = pa.colocation
        AND EXISTS (SELECT 1 FROM unnest(k.conkey, k.confkey) AS p(c, f)
                    WHERE p.c = ch.dist_attnum AND p.f = pa.dist_attnum)))
  UNION ALL
  -- a map row for a table that is not there (a renamed or dropped table)
  SELECT m.tbl, 'in citus_distribution but not in the schema'
  FROM citus_distribution m
  WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.tbl = m.tbl)
$$;

-- The live schema passes. (Map rows of tables that other migrations have not created yet are
-- allowed: the map may be ahead of the schema, never behind it.)
DO $$
DECLARE
  r record;
  n int := 0;
BEGIN
  FOR r IN SELECT * FROM pg_temp.citus_violations() WHERE problem <> 'in citus_distribution but not in the schema' LOOP
    RAISE WARNING 'citus: %: %', r.tbl, r.problem;
    n := n + 1;
  END LOOP;
  IF n > 0 THEN
    RAISE EXCEPTION '% breach(es) of Citus''s rules (above)', n;
  END IF;
END $$;

-- The map is what docs/SCALING.md describes: every core table is there with its decision.
DO $$
BEGIN
  IF (SELECT count(*) FROM citus_distribution
      WHERE (tbl, kind, coalesce(dist_column, ''), coalesce(colocation, '')) IN (
        ('tubes', 'distributed', 'code', 'custody'), ('samples', 'distributed', 'tube', 'custody'),
        ('persons', 'distributed', 'hmac', 'person'), ('stats', 'distributed', 'round', 'rollup'),
        ('regions', 'reference', '', ''), ('tokens', 'reference', '', ''))) <> 6 THEN
    RAISE EXCEPTION 'citus_distribution lost a core decision';
  END IF;
END $$;

-- The foreign keys that 011 and 032 dropped are kept by the application: after
-- schema_test.sql's real writes through tl_write, every sample, follow-up and person_rounds
-- row names a stored person, and every person_rounds row a stored round.
DO $$
BEGIN
  IF (SELECT count(*) FROM samples) = 0 OR (SELECT count(*) FROM person_rounds) = 0 THEN
    RAISE EXCEPTION 'no samples or person_rounds to check (schema_test.sql wrote none?)';
  END IF;
  IF EXISTS (SELECT 1 FROM samples s WHERE NOT EXISTS (SELECT 1 FROM persons p WHERE p.hmac = s.person))
     OR EXISTS (SELECT 1 FROM followups f WHERE NOT EXISTS (SELECT 1 FROM persons p WHERE p.hmac = f.person))
     OR EXISTS (SELECT 1 FROM person_rounds r WHERE NOT EXISTS (SELECT 1 FROM persons p WHERE p.hmac = r.person)) THEN
    RAISE EXCEPTION 'a sample, follow-up or person_rounds row names a person that is not stored';
  END IF;
  IF EXISTS (SELECT 1 FROM person_rounds r WHERE NOT EXISTS (SELECT 1 FROM rounds x WHERE x.code = r.round)) THEN
    RAISE EXCEPTION 'a person_rounds row names a round that is not stored';
  END IF;
END $$;

-- Negative controls: each rule must catch its breach (inside a transaction that is rolled back).
BEGIN;
CREATE TABLE citus_probe_unmapped (x int);
CREATE TABLE citus_probe_uk (tube text NOT NULL, other text, UNIQUE (other));
CREATE TABLE citus_probe_fk (person text NOT NULL REFERENCES persons (hmac), tube text NOT NULL);
CREATE TABLE citus_probe_ref (tube text REFERENCES tubes (code));
CREATE TABLE citus_probe_null (tube text);
CREATE TABLE citus_probe_type (tube int NOT NULL);
INSERT INTO citus_distribution VALUES
  ('citus_probe_uk', 'distributed', 'tube', 'custody', 'probe'),
  ('citus_probe_fk', 'distributed', 'tube', 'custody', 'probe'),
  ('citus_probe_ref', 'reference', NULL, NULL, 'probe'),
  ('citus_probe_null', 'distributed', 'tube', 'custody', 'probe'),
  ('citus_probe_type', 'distributed', 'tube', 'custody', 'probe'),
  ('citus_probe_gone', 'reference', NULL, NULL, 'probe');
DO $$
DECLARE
  want text[] := ARRAY[
    'citus_probe_unmapped|not in citus_distribution',
    'citus_probe_uk|unique index citus_probe_uk_other_key does not include tube',
    'citus_probe_fk|citus_probe_fk_person_fkey: distributed → distributed: tables of different co-location groups',
    'citus_probe_ref|citus_probe_ref_tube_fkey: reference → distributed: a reference table may only reference reference tables',
    'citus_probe_null|distribution column tube may be NULL',
    'citus_probe_type|group custody mixes types integer and text',
    'citus_probe_gone|in citus_distribution but not in the schema'];
  w text;
BEGIN
  FOREACH w IN ARRAY want LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_temp.citus_violations() v
                   WHERE v.tbl = split_part(w, '|', 1) AND v.problem LIKE split_part(w, '|', 2) || '%') THEN
      RAISE EXCEPTION 'the check missed: %', w;
    END IF;
  END LOOP;
END $$;
ROLLBACK;

SELECT 'citus tests passed' AS result;
