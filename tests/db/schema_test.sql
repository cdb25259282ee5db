-- Database tests of the schema's second line of defence and of the set-based statements
-- (tl_load, tl_write, tl_refresh), run by schema_test.sh on a fresh, migrated database.
-- Each block raises an exception (and psql stops with ON_ERROR_STOP) when the database
-- accepts what it must refuse or derives the wrong thing.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

INSERT INTO regions (code, name, parent) VALUES ('23', 'p', NULL), ('2301', 'c', '23'),
  ('230126', '巴彦县', '2301'), ('230126101', '兴隆镇', '230126');
INSERT INTO sites VALUES ('S1', 'site', '230126101');
INSERT INTO labs VALUES ('L1', 'lab', '230126'), ('L2', 'lab2', '230126');
INSERT INTO rounds (code, name, region, day, pool_size) VALUES ('R1', 'r', '230126', '2021-10-08', 10);

CREATE FUNCTION must_fail(sql text, state text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RAISE EXCEPTION 'accepted but must fail (%): %', state, sql;
EXCEPTION WHEN OTHERS THEN
  IF SQLSTATE <> state THEN
    RAISE EXCEPTION 'failed with % instead of %: % (%)', SQLSTATE, state, sql, SQLERRM;
  END IF;
END $$;

-- registry
SELECT must_fail($$INSERT INTO regions VALUES ('2301261', 'x', '230126')$$, '23514');
SELECT must_fail($$INSERT INTO regions VALUES ('230127101', 'x', '230126')$$, '23514');
SELECT must_fail($$INSERT INTO regions VALUES ('230127', 'x', '9999')$$, '23514');
SELECT must_fail($$INSERT INTO sites VALUES ('S 2', 'x', '230126101')$$, '23514');
SELECT must_fail($$INSERT INTO sites VALUES ('S2', 'x', '230126')$$, '23514');
SELECT must_fail($$INSERT INTO sites VALUES ('S2', 'x', '230126999')$$, '23503');
SELECT must_fail($$INSERT INTO rounds (code, name, region, day, pool_size) VALUES ('R2', 'r', '230126', '2021-10-08', 7)$$, '23514');
SELECT must_fail($$INSERT INTO tokens (hash, role, scope) VALUES (repeat('a', 64), 'admin', 'S1')$$, '23514');
SELECT must_fail($$INSERT INTO tokens (hash, role) VALUES (repeat('a', 64), 'collector')$$, '23514');
SELECT must_fail($$INSERT INTO tokens (hash, role) VALUES ('not a hash', 'admin')$$, '23514');

-- custody facts
SELECT must_fail($$INSERT INTO tubes (code, region) VALUES ('T1', '230126')$$, '23514');
SELECT must_fail($$INSERT INTO tubes (code, region, round, site, capacity, opened_at, sampled)
  VALUES ('T00001', '230126101', 'R1', 'S1', 5, now(), 6)$$, '23514');
SELECT must_fail($$INSERT INTO tubes (code, region, round, site, capacity, opened_at, sealed_at)
  VALUES ('T00001', '230126101', 'R1', 'S1', 5, now(), now())$$, '23514');
SELECT must_fail($$INSERT INTO tubes (code, region, round, capacity) VALUES ('T00001', '230126101', 'R1', 5)$$, '23514');
SELECT must_fail($$INSERT INTO tubes (code, region, capacity, result) VALUES ('T00001', '230126', NULL, 'positive')$$, '23514');
SELECT must_fail($$INSERT INTO tubes (code, region, result, result_at) VALUES ('T00001', '230126', 'maybe', now())$$, '23514');
SELECT must_fail($$INSERT INTO boxes (code, region, sealed_at) VALUES ('B00001', '230126', now())$$, '23514');
SELECT must_fail($$INSERT INTO persons (hmac, id_type, id_enc, id_masked) VALUES (repeat('a', 64), 'resident_id', 'plaintext 110105', 'x')$$, '23514');
SELECT must_fail($$INSERT INTO anomalies (subject, subject_kind, type, region, state) VALUES ('T1', 'tube', 'custody_gap', '230126', 'resolved')$$, '23514');
INSERT INTO anomalies (subject, subject_kind, type, region) VALUES ('T9', 'tube', 'custody_gap', '230126');
SELECT must_fail($$INSERT INTO anomalies (subject, subject_kind, type, region) VALUES ('T9', 'tube', 'custody_gap', '230126')$$, '23505');
DELETE FROM anomalies;

-- the set-based ingest: a pooled positive through tl_write, as the daemon sends it
SELECT count(*) FROM tl_write($j${
  "events": [{"id": "00000000-0000-4000-8000-000000000001", "type": "tube.open", "at": "2021-10-08T01:00:00Z",
              "sender_role": "collector", "sender": "S1", "received_at": "2021-10-08T01:00:00Z",
              "digest": "0000000000000000000000000000000000000000000000000000000000000000",
              "tube": "T00001", "box": null, "body": {}, "anomalies": []}],
  "persons": [{"hmac": "1111111111111111111111111111111111111111111111111111111111111111", "id_type": "passport",
               "id_enc": "1:AAAA", "id_masked": "E1*****78", "updated_at": "2021-10-08T01:00:00Z"},
              {"hmac": "2222222222222222222222222222222222222222222222222222222222222222", "id_type": "passport",
               "id_enc": "1:AAAA", "id_masked": "E2*****78", "updated_at": "2021-10-08T01:00:00Z"}],
  "tubes": [{"code": "T00001", "region": "230126101", "round": "R1", "site": "S1", "capacity": 10,
             "opened_at": "2021-10-08T01:00:00Z", "sampled": 2, "sealed_at": "2021-10-08T01:05:00Z", "seal_count": 3,
             "result": "positive", "result_at": "2021-10-08T05:00:00Z", "result_lab": "L1"},
            {"code": "S00001", "region": "230126101", "round": "R1", "site": "S1", "capacity": 1,
             "opened_at": "2021-10-08T06:00:00Z", "sampled": 1}],
  "boxes": [], "receipts": [],
  "samples": [{"tube": "T00001", "person": "1111111111111111111111111111111111111111111111111111111111111111", "round": "R1", "site": "S1", "at": "2021-10-08T01:01:00Z", "event": "00000000-0000-4000-8000-000000000002"},
              {"tube": "T00001", "person": "2222222222222222222222222222222222222222222222222222222222222222", "round": "R1", "site": "S1", "at": "2021-10-08T01:02:00Z", "event": "00000000-0000-4000-8000-000000000003"},
              {"tube": "S00001", "person": "1111111111111111111111111111111111111111111111111111111111111111", "round": "R1", "site": "S1", "at": "2021-10-08T06:01:00Z", "event": "00000000-0000-4000-8000-000000000004"}],
  "attribution": [{"subject": "T00001", "event": "00000000-0000-4000-8000-000000000001", "etype": "tube.open", "ord": 0}]
}$j$::jsonb);

DO $$
BEGIN
  -- two persons of a pooled positive: two follow-ups; person 1 linked to its later single tube
  IF (SELECT count(*) FROM followups WHERE tube = 'T00001' AND kind = 'awaiting_recheck' AND state = 'open') <> 2 THEN
    RAISE EXCEPTION 'expected two open awaiting_recheck follow-ups: %', (SELECT json_agg(f) FROM followups f);
  END IF;
  IF (SELECT linked_tube FROM followups WHERE person LIKE '1%') IS DISTINCT FROM 'S00001' THEN
    RAISE EXCEPTION 'follow-up not linked to the single-tube sample';
  END IF;
  -- the seal counted 3, 2 are bound; the result has no receipt
  IF NOT EXISTS (SELECT 1 FROM anomalies WHERE subject = 'T00001' AND type = 'seal_count_mismatch' AND state = 'open'
                   AND opened_by = '00000000-0000-4000-8000-000000000001') THEN
    RAISE EXCEPTION 'seal_count_mismatch missing or not attributed';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM anomalies WHERE subject = 'T00001' AND type = 'custody_gap' AND state = 'open') THEN
    RAISE EXCEPTION 'custody_gap (result without receipt) missing';
  END IF;
END $$;

-- the single tube's result closes person 1's follow-up; amending the pooled result to
-- negative removes both; the receipt clears the custody gap
UPDATE tubes SET result = 'negative', result_at = '2021-10-08T08:00:00Z', result_lab = 'L1',
                 sealed_at = '2021-10-08T06:05:00Z' WHERE code = 'S00001';
SELECT count(*) FROM tl_refresh(ARRAY['S00001'], ARRAY[]::text[], ARRAY['S00001']);
DO $$
BEGIN
  IF (SELECT state || '/' || result FROM followups WHERE person LIKE '1%') <> 'closed/negative' THEN
    RAISE EXCEPTION 'follow-up not closed by the single tube: %', (SELECT json_agg(f) FROM followups f);
  END IF;
END $$;
UPDATE tubes SET result = 'negative', received_at = '2021-10-08T04:00:00Z', received_lab = 'L1' WHERE code = 'T00001';
SELECT count(*) FROM tl_refresh(ARRAY['T00001'], ARRAY[]::text[], ARRAY['T00001']);
DO $$
BEGIN
  IF (SELECT count(*) FROM followups) <> 0 THEN
    RAISE EXCEPTION 'amended result did not remove the follow-ups: %', (SELECT json_agg(f) FROM followups f);
  END IF;
  IF (SELECT state FROM anomalies WHERE subject = 'T00001' AND type = 'custody_gap') <> 'auto_resolved' THEN
    RAISE EXCEPTION 'custody_gap not auto-resolved after the receipt';
  END IF;
END $$;

-- the event log is append-only
DELETE FROM events;
DO $$ BEGIN
  IF (SELECT count(*) FROM events) <> 1 THEN RAISE EXCEPTION 'events can be deleted'; END IF;
END $$;

-- tl_load takes the locks and returns the facts
DO $$
DECLARE r jsonb;
BEGIN
  r := tl_load(ARRAY[3, 1, 2]::bigint[], ARRAY['00000000-0000-4000-8000-000000000001']::uuid[],
               ARRAY['T00001'], ARRAY[]::text[], ARRAY[]::text[], ARRAY['L1'], ARRAY[]::text[]);
  IF jsonb_array_length(r -> 'events') <> 1 OR jsonb_array_length(r -> 'tubes') <> 1
     OR jsonb_array_length(r -> 'samples') <> 2 OR r -> 'labs' <> '["L1"]'
     OR (r -> 'rounds' -> 0 ->> 'code') <> 'R1' THEN
    RAISE EXCEPTION 'tl_load returned %', r;
  END IF;
  -- three object locks, and one per person of tube T00001 (two)
  IF (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) <> 5 THEN
    RAISE EXCEPTION 'tl_load did not take the five advisory locks';
  END IF;
END $$;

-- sql/019: a person's samples in a round are probed through samples_person, not by reading
-- the whole round through samples_round_site, also before any statistics exist (the shape
-- of the probe in tl_delta_samples, sql/015).
DO $$
DECLARE
  plan text;
BEGIN
  FOR plan IN EXECUTE 'EXPLAIN (COSTS OFF) SELECT p.person, s.site, s.total'
    ' FROM (VALUES (''P1'', ''R1''), (''P2'', ''R1'')) p(person, round)'
    ' CROSS JOIN LATERAL (SELECT s.site, count(*) AS total FROM samples s'
    '   WHERE s.person = p.person AND s.round = p.round GROUP BY s.site) s' LOOP
    IF plan LIKE '%samples_round_site%' OR plan LIKE '%Seq Scan on samples%' THEN
      RAISE EXCEPTION 'the person probe reads the round: %', plan;
    END IF;
  END LOOP;
END $$;

-- tl_analyze_grown (sql/017): a table that grew past what the planner knows is analyzed, once.
INSERT INTO tubes (code, region, round, site, capacity, opened_at)
  SELECT 'TG' || lpad(i::text, 5, '0'), '230126101', 'R1', 'S1', 10, now() FROM generate_series(1, 1500) i;
SELECT pg_stat_force_next_flush();  -- the counts reach pg_stat_user_tables when this session idles
DO $$
DECLARE
  n int;
BEGIN
  n := tl_analyze_grown();
  IF n < 1 THEN RAISE EXCEPTION 'tl_analyze_grown analyzed nothing after 1,500 new tubes'; END IF;
  IF (SELECT reltuples FROM pg_class WHERE oid = 'tubes'::regclass) < 1500 THEN
    RAISE EXCEPTION 'tubes still planned as % rows', (SELECT reltuples FROM pg_class WHERE oid = 'tubes'::regclass);
  END IF;
END $$;
SELECT pg_stat_force_next_flush();
DO $$
BEGIN
  IF tl_analyze_grown() <> 0 THEN RAISE EXCEPTION 'tl_analyze_grown analyzed again with nothing new'; END IF;
END $$;

-- tl_hist_p50_p90 (sql/027): nearest-rank p50 and p90 of a minute histogram, minutes in numeric
-- order (not the keys' text order), NULLs for an empty one.
DO $$
DECLARE
  c record;
  got int[];
BEGIN
  FOR c IN SELECT * FROM (VALUES
      ('{}'::jsonb, ARRAY[NULL, NULL]::int[]),
      ('{"5": 0}', ARRAY[5, 5]),
      ('{"7": 1}', ARRAY[7, 7]),
      ('{"10": 1, "9": 1}', ARRAY[9, 10]),             -- "10" < "9" as text
      ('{"30": 8, "2": 1, "10": 1}', ARRAY[30, 30]),
      ('{"1": 5, "2": 4, "3": 1}', ARRAY[1, 2]),       -- 5 of 10 reach p50 at 1; 9 of 10 at 2
      ('{"1": 4, "2": 1, "3": 5}', ARRAY[2, 3]),
      ('{"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1, "7": 1, "8": 1, "9": 1, "100": 1}', ARRAY[5, 9])
    ) AS t(h, want)
  LOOP
    got := tl_hist_p50_p90(c.h);
    IF got IS DISTINCT FROM c.want THEN
      RAISE EXCEPTION 'tl_hist_p50_p90(%) = %, want %', c.h, got, c.want;
    END IF;
  END LOOP;
END $$;

-- A sample's round and site are its tube's (sql/030): another existing site, or a round that
-- exists but is not the tube's, is refused like an unknown tube.
INSERT INTO sites VALUES ('S2', 'site 2', '230126101');
INSERT INTO rounds (code, name, region, day, pool_size) VALUES ('R2', 'r2', '230126', '2021-10-09', 10);
SELECT must_fail($$INSERT INTO samples (tube, person, round, site, at, event) VALUES ('S00001',
  repeat('2', 64), 'R1', 'S2', now(), gen_random_uuid())$$, '23503');
SELECT must_fail($$INSERT INTO samples (tube, person, round, site, at, event) VALUES ('S00001',
  repeat('2', 64), 'R2', 'S1', now(), gen_random_uuid())$$, '23503');
SELECT must_fail($$INSERT INTO samples (tube, person, round, site, at, event) VALUES ('X00009',
  repeat('2', 64), 'R1', 'S1', now(), gen_random_uuid())$$, '23503');
INSERT INTO samples (tube, person, round, site, at, event) VALUES ('S00001', repeat('2', 64), 'R1', 'S1',
  '2021-10-08T06:02:00Z', gen_random_uuid());
DELETE FROM samples WHERE tube = 'S00001' AND person = repeat('2', 64);

-- The format checks of sql/033 accept exactly what their regular expressions with bounded
-- repetitions did: each candidate is written into its column, and the check must refuse it
-- exactly when the old pattern does not match (nothing else may refuse it).
DO $$
DECLARE
  c record;
  refused boolean;
  which text;
  con text;
BEGIN
  FOR c IN
    SELECT 'hex' AS kind, x AS v FROM unnest(ARRAY[repeat('a', 64), repeat('0', 64),
      repeat('a', 63), repeat('a', 65), repeat('A', 64), repeat('a', 63) || 'g',
      repeat('a', 63) || 'é', repeat('a', 62) || 'é', repeat('a', 63) || E'\n', '']) x
    UNION ALL
    SELECT 'code', x FROM unnest(ARRAY['ABC-12', 'ABCDE', repeat('Z', 32), repeat('Z', 33),
      'T0000_1', 'T00001 ', 'T0000é1', E'T00001\n', '', '------']) x
  LOOP
    FOREACH which IN ARRAY CASE c.kind WHEN 'hex' THEN ARRAY['events', 'persons']
                                       ELSE ARRAY['tubes', 'boxes'] END LOOP
      BEGIN
        CASE which
          WHEN 'events' THEN
            INSERT INTO events (id, type, at, sender_role, sender, digest, body)
            VALUES (gen_random_uuid(), 'tube.open', now(), 'collector', 'S1', c.v, '{}');
          WHEN 'persons' THEN
            INSERT INTO persons (hmac, id_type, id_enc, id_masked) VALUES (c.v, 'passport', '1:AAAA', 'x');
          WHEN 'tubes' THEN INSERT INTO tubes (code, region) VALUES (c.v, '230126');
          ELSE INSERT INTO boxes (code, region) VALUES (c.v, '230126');
        END CASE;
        refused := false;
        RAISE EXCEPTION USING ERRCODE = 'P0005';  -- undo the row, keep the answer
      EXCEPTION
        WHEN check_violation THEN
          GET STACKED DIAGNOSTICS con = CONSTRAINT_NAME;
          IF con <> which || (CASE which WHEN 'events' THEN '_digest_check'
                                         WHEN 'persons' THEN '_hmac_check' ELSE '_code_check' END) THEN
            RAISE EXCEPTION 'refused by % instead of the format check', con;
          END IF;
          refused := true;
        WHEN SQLSTATE 'P0005' THEN NULL;
      END;
      IF refused = (c.v ~ (CASE c.kind WHEN 'hex' THEN '^[0-9a-f]{64}$'
                                       ELSE '^[A-Za-z0-9-]{6,32}$' END)) THEN
        RAISE EXCEPTION 'the format check of % %: %', which,
          CASE WHEN refused THEN 'refuses' ELSE 'accepts' END, quote_literal(c.v);
      END IF;
    END LOOP;
  END LOOP;
END $$;

-- The sealer's take names each event's partition as tl_chain_partition does (sql/039 joins
-- the registry instead of calling it): a collector, a courier and a lab of two counties, a
-- sender in no table ('000000'), and receipts on both sides of midnight in Asia/Shanghai.
INSERT INTO regions (code, name, parent) VALUES ('230127', 'o', '2301'), ('230127101', 't', '230127');
INSERT INTO sites VALUES ('S7', 'site7', '230127101');
INSERT INTO couriers VALUES ('C1', 'courier', '230127');
INSERT INTO labs VALUES ('L7', 'lab7', '230127');
DELETE FROM chain_pending;
INSERT INTO events (id, type, at, sender_role, sender, received_at, digest, body)
SELECT gen_random_uuid(), 'box.seal', y.at, x.role, x.sender, y.at, repeat('0', 64), '{}'
FROM (VALUES ('collector', 'S1'), ('collector', 'S7'), ('courier', 'C1'), ('lab', 'L1'),
             ('lab', 'L7'), ('courier', 'C9')) x(role, sender)
CROSS JOIN (VALUES ('2021-10-08T15:59:59Z'::timestamptz), ('2021-10-08T16:00:00Z')) y(at);
BEGIN;
DO $$
DECLARE
  n int;
  wrong int;
  parts text[];
BEGIN
  SELECT count(*),
         count(*) FILTER (WHERE t.partition IS DISTINCT FROM
                          tl_chain_partition((t.ev).sender_role, (t.ev).sender, (t.ev).received_at, 'Asia/Shanghai')),
         array_agg(DISTINCT t.partition ORDER BY t.partition)
    INTO n, wrong, parts
  FROM tl_chain_take(1000, 'Asia/Shanghai', false) t;
  IF n <> 12 OR wrong <> 0 OR parts <> ARRAY['000000/2021-10-08', '000000/2021-10-09', '230126/2021-10-08',
      '230126/2021-10-09', '230127/2021-10-08', '230127/2021-10-09'] THEN
    RAISE EXCEPTION 'take: % events, % partitions unlike tl_chain_partition, partitions %', n, wrong, parts;
  END IF;
END $$;
ROLLBACK;

-- tl_write_plain writes a group itself only when every check holds, and hands it to tl_write
-- whole otherwise (sql/025, sql/031, and sql/041's two passes): one group per check, each
-- rolled back; which way it went is told by the calls of tl_write in this transaction.
BEGIN;
SET LOCAL track_functions = 'pl';
INSERT INTO rounds (code, name, region, day, pool_size) VALUES ('R3', 'r3', '230126', '2021-10-09', 10);
-- person 2 (sampled in R1 only) has a follow-up; person 4 was sampled in R3 already
INSERT INTO followups (tube, person, round, region, kind, opened_at, state)
VALUES ('T00001', repeat('2', 64), 'R1', '230126', 'awaiting_recheck', '2021-10-08T05:00:00Z', 'open');
DO $$
DECLARE
  ev jsonb := '{"sender_role": "collector", "sender": "S1", "received_at": "2021-10-09T01:00:00Z",
               "digest": "0000000000000000000000000000000000000000000000000000000000000000",
               "box": null, "body": {}, "anomalies": []}';
  tube jsonb := '{"code": "TP0001", "region": "230126101", "round": "R3", "site": "S1", "capacity": 10,
                 "opened_at": "2021-10-09T01:00:00Z", "sampled": 1, "first_sample_at": "2021-10-09T01:01:00Z"}';
  g jsonb;
  c record;
  calls0 bigint;
  whole boolean;
BEGIN
  -- a new tube of R3 opened and sampled by person 3 (new): the plain group
  g := jsonb_build_object(
    'events', jsonb_build_array(
      ev || '{"id": "00000000-0000-4000-8000-000000000101", "type": "tube.open", "at": "2021-10-09T01:00:00Z", "tube": "TP0001"}',
      ev || '{"id": "00000000-0000-4000-8000-000000000102", "type": "sample.add", "at": "2021-10-09T01:01:00Z", "tube": "TP0001"}'),
    'persons', jsonb_build_array(jsonb_build_object('hmac', repeat('3', 64), 'id_type', 'passport',
      'id_enc', '1:AAAA', 'id_masked', 'E3*****78', 'updated_at', '2021-10-09T01:01:00Z')),
    'tubes', jsonb_build_array(tube),
    'boxes', '[]'::jsonb, 'receipts', '[]'::jsonb, 'attribution', '[]'::jsonb,
    'samples', jsonb_build_array(jsonb_build_object('tube', 'TP0001', 'person', repeat('3', 64), 'round', 'R3',
      'site', 'S1', 'at', '2021-10-09T01:01:00Z', 'event', '00000000-0000-4000-8000-000000000102')));
  -- person 4's earlier sample in R3, written plain and kept
  PERFORM * FROM tl_write_plain(jsonb_set(jsonb_set(jsonb_set(jsonb_set(jsonb_set(jsonb_set(jsonb_set(g,
    '{tubes,0,code}', '"TP0009"'), '{events,0,tube}', '"TP0009"'), '{events,1,tube}', '"TP0009"'),
    '{events,0,id}', '"00000000-0000-4000-8000-000000000901"'), '{events,1,id}', '"00000000-0000-4000-8000-000000000902"'),
    '{samples,0}', g -> 'samples' -> 0 || jsonb_build_object('tube', 'TP0009', 'person', repeat('4', 64),
                                                            'event', '00000000-0000-4000-8000-000000000902')),
    '{persons,0,hmac}', to_jsonb(repeat('4', 64))));
  IF NOT EXISTS (SELECT 1 FROM samples WHERE person = repeat('4', 64) AND round = 'R3') THEN
    RAISE EXCEPTION 'the plain write did not write person 4''s sample';
  END IF;
  FOR c IN SELECT * FROM (VALUES
      ('the plain group', g, false),
      ('an event that is not tube.open or sample.add', jsonb_set(g, '{events,1,type}', '"tube.seal"'), true),
      ('a sealed tube', g #- '{tubes,0,first_sample_at}'
                          || jsonb_build_object('tubes', jsonb_build_array(tube || '{"sealed_at": "2021-10-09T01:05:00Z"}')), true),
      ('an existing tube changed in another column than its count',
       jsonb_set(jsonb_set(jsonb_set(jsonb_set(g, '{tubes,0}', (SELECT to_jsonb(t) FROM tubes t WHERE t.code = 'TP0009')
                                                              || '{"sampled": 2, "capacity": 5}'),
                 '{samples,0,tube}', '"TP0009"'), '{events,1,tube}', '"TP0009"'), '{events}', (g -> 'events') - 0), true),
      ('the same tube, changed only in its count',
       jsonb_set(jsonb_set(jsonb_set(jsonb_set(g, '{tubes,0}', (SELECT to_jsonb(t) FROM tubes t WHERE t.code = 'TP0009')
                                                              || '{"sampled": 2}'),
                 '{samples,0,tube}', '"TP0009"'), '{events,1,tube}', '"TP0009"'), '{events}', (g -> 'events') - 0), false),
      ('a person sampled twice in the group',
       jsonb_set(g, '{samples}', (g -> 'samples') || jsonb_build_array(g -> 'samples' -> 0 || '{"tube": "TP0009"}')), true),
      ('a person sampled before in the round', jsonb_set(jsonb_set(g, '{samples,0,person}', to_jsonb(repeat('4', 64))),
                                                       '{persons,0,hmac}', to_jsonb(repeat('4', 64))), true),
      ('a person with a follow-up', jsonb_set(jsonb_set(g, '{samples,0,person}', to_jsonb(repeat('2', 64))),
                                              '{persons,0,hmac}', to_jsonb(repeat('2', 64))), true)
    ) v(what, grp, whole)
  LOOP
    calls0 := coalesce((SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = 'tl_write'), 0);
    BEGIN
      PERFORM * FROM tl_write_plain(c.grp);
      whole := coalesce((SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = 'tl_write'), 0) > calls0;
      RAISE EXCEPTION USING ERRCODE = 'P0005';  -- undo the group, keep the answer
    EXCEPTION WHEN SQLSTATE 'P0005' THEN NULL;
    END;
    IF whole <> c.whole THEN
      RAISE EXCEPTION '%: written %, should be %', c.what,
        CASE WHEN whole THEN 'by tl_write' ELSE 'plain' END, CASE WHEN c.whole THEN 'by tl_write' ELSE 'plain' END;
    END IF;
  END LOOP;
END $$;
ROLLBACK;

SELECT 'schema tests passed' AS result;
